"""Fault injection: fail every task of the nightly DAG in turn, and kill the process inside publish.

After every injected failure the published tables must be byte-identical to before (checksums of their
sorted contents), and carrying on from the failed task (what clearing it in Airflow, or rerunning the
date, does) must end with exactly the tables of a run that never failed.

Running ~40 full DAG runs would take an hour, so the test is built to stay fast:

* The task list comes from the real DAG (imported in-process), in dependency order; every ``@task``
  task runs its *real* callable from the DAG file (same settings, same code), without Airflow's runner.
* Every task of the DAG, the two dbt tasks included, is failed before its work through
  ``custseg.ops.check_fault`` with ``CUSTSEG_FAIL_TASK``, exactly what the DAG's ``pre_execute`` hook
  calls. Each task is also failed *after* its work (the harder case: side effects already written);
  for the dbt tasks (``transform``, ``assemble``) that is the group's whole ``dbt build`` then the
  failure: every table it writes is in the build schema, which nothing reads before publish. Publish
  is failed inside its transaction after the
  first table was replaced, once with an exception and once by killing the process
  (``CUSTSEG_KILL_IN_PUBLISH``).
* After each case the failed task is rerun and the run carries on (what clearing the failed task in
  Airflow does); the published tables must equal a run that never failed once publish succeeds. The
  warehouse the killed publish left is copied before that rerun, and at the end the copy is answered
  by rerunning the whole date from ``prepare`` instead.
* One real ``custseg run`` (Airflow + the DAG's ``pre_execute`` hook and callbacks) proves the hook,
  ``ops.run_audit`` and the failure summary work in Airflow, and that no Asset event is emitted.

DuckDB here; the PostgreSQL subset that covers publish (exception, kill, concurrency, grants, views) is
in ``tests/test_publish.py``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import email
import importlib.util
import inspect
import json
import logging
import os
import re
import shutil
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from custseg.config import PROJECT_DIR, PUBLISHED_TABLES, load_settings
from custseg.dbt import release_dbt_duckdb
from custseg.ops.faults import (
    FAIL_IN_PUBLISH_ENV,
    FAIL_TASK_ENV,
    KILL_EXIT_CODE,
    KILL_IN_PUBLISH_ENV,
    InjectedFault,
    check_fault,
)
from custseg.ops.notify import NOTIFY_CONN_ENV, notify_failure
from custseg.ops.run_audit import before_task, record_failure, record_success
from custseg.ops.status import status_report
from custseg.steps.ingest import source_names
from custseg.warehouse import connect
from tests.conftest import E2E_END, run_cli, warehouse_env

pytestmark = pytest.mark.e2e

YESTERDAY = E2E_END - dt.timedelta(days=1)


@dataclass
class Step:
    task_id: str  # a DAG task id
    run: Callable[[dt.date], object]
    task_ids: list[str]  # the real DAG task(s) this step stands for; each is failed by the DAG's hook


def run_then_fail(step: Step, day: dt.date) -> None:
    """The task's work is done (and written), then the task fails."""
    step.run(day)
    raise InjectedFault(f"injected failure at the end of {step.task_id}")


def _import_dag():
    """Import the DAG file as a fresh module; its module-level settings come from the current environment."""
    path = PROJECT_DIR / "dags" / "customer_segmentation.py"
    spec = importlib.util.spec_from_file_location("custseg_dag_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ordered_tasks(dag) -> list:
    """Tasks in dependency order (ties in declaration order)."""
    order, done, tasks = [], set(), list(dag.tasks)
    while len(order) < len(tasks):
        ready = [t for t in tasks if t.task_id not in done and t.upstream_task_ids <= done]
        assert ready, "the DAG has a cycle"
        order.append(ready[0])
        done.add(ready[0].task_id)
    return order


def build_steps(module) -> list[Step]:
    steps: list[Step] = []
    for task in _ordered_tasks(module.dag):
        callable_ = getattr(task, "python_callable", None)
        assert callable_ is not None, f"don't know how to run task {task.task_id} ({type(task).__name__})"
        params = inspect.signature(callable_).parameters

        def run(day: dt.date, fn=callable_, params=params, task=task) -> object:
            # outlet_events: where publish puts its Asset events' extra (Airflow's accessor, outside Airflow);
            # ti: the dbt tasks read their task id (the group to build) and try number from it
            kwargs = {"ds": day.isoformat(), "run_id": f"harness__{day}",
                      "outlet_events": collections.defaultdict(SimpleNamespace),
                      "ti": SimpleNamespace(task_id=task.task_id, try_number=1)}
            try:
                return fn(**{k: v for k, v in kwargs.items() if k in params})
            finally:
                release_dbt_duckdb()  # the dbt and docs tasks run dbt in-process

        steps.append(Step(task.task_id, run, [task.task_id]))
    return steps


def published(settings) -> dict[str, str]:
    with connect(settings) as wh:
        return {t: wh.table_checksum(settings.publish_schema, t) for t in PUBLISHED_TABLES}


def kill_in_publish(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real publish in its own process, killed (os._exit) inside the transaction after one table."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSEG_")} | env
    full[KILL_IN_PUBLISH_ENV] = "1"
    code = ("from custseg.config import load_settings; from custseg.steps.publish import publish\n"
            "publish(load_settings())")
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=300)


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _copy_warehouse(src: Path, dst: Path) -> None:
    for suffix in ("", ".wal"):
        target = Path(str(dst) + suffix)
        target.unlink(missing_ok=True)
        if Path(str(src) + suffix).exists():
            shutil.copy2(str(src) + suffix, target)


def test_every_task_fails_in_turn_without_touching_published_tables(demo_data, airflow_home, session_dir) -> None:
    data_dir = session_dir / "fault_injection"
    wh_path = data_dir / "warehouse.duckdb"
    env = warehouse_env("duckdb", data_dir, duckdb_path=wh_path, landing_dir=demo_data.landing_dir)
    with environment(env):
        module = _import_dag()
        settings = module.settings
        assert settings.duckdb_path == wh_path
        # every task of the DAG (the dbt tasks included) carries the fault hook and the run-audit callbacks
        for task in module.dag.tasks:
            assert task._pre_execute_hook is before_task, task.task_id
            assert record_failure in task.on_failure_callback, task.task_id
            assert record_success in task.on_success_callback, task.task_id
        # Assets come from publish only, and Airflow emits outlets only when that task succeeds
        assert [t.task_id for t in module.dag.tasks if t.outlets] == ["publish"]
        # retries where they can help (I/O, a busy warehouse), none where they cannot (bad data, dbt tests)
        retries = {t.task_id: t.retries for t in module.dag.tasks}
        assert retries["validate_raw"] == retries["audit"] == 0
        assert retries["transform"] == retries["assemble"] == 0
        assert retries["publish"] >= 1 and retries["prepare"] >= 1
        assert module.dag.get_task("publish").retry_exponential_backoff
        steps = build_steps(module)
        ids = [s.task_id for s in steps]
        assert ids[0] == "prepare" and ids[-3:] == ["publish", "docs", "report"], ids
        assert {"validate_raw", "transform", "score", "assemble", "audit"} <= set(ids), ids
        # one ingest task per source declared in config/sources.yml
        assert sorted(i.removeprefix("ingest.") for i in ids if i.startswith("ingest.")) == sorted(
            source_names(settings)), ids
        # docs and the report do not touch the warehouse tables
        work = [s for s in steps if s.task_id not in ("docs", "report")]

        # yesterday published normally; keep a copy of that warehouse
        for step in work:
            step.run(YESTERDAY)
        before = published(settings)
        saved = data_dir / "after_yesterday.duckdb"
        killed_in_publish = data_dir / "killed_in_publish.duckdb"
        _copy_warehouse(wh_path, saved)

        # today without any failure: the reference result
        for step in work:
            step.run(E2E_END)
        reference = published(settings)
        assert reference != before

        # back to yesterday's state, then today again with every task failing once, in order
        _copy_warehouse(saved, wh_path)
        assert published(settings) == before
        expected = before  # what BI must see: yesterday's tables until today's publish succeeds
        failures: list[str] = []
        for step in steps:
            if step.task_id == "publish":
                # an exception inside the publish transaction, after the first table was replaced
                os.environ[FAIL_IN_PUBLISH_ENV] = "1"
                with pytest.raises(InjectedFault):
                    step.run(E2E_END)
                del os.environ[FAIL_IN_PUBLISH_ENV]
                assert published(settings) == expected, "publish: an exception inside the transaction leaked"
                # the process killed inside the publish transaction
                killed = kill_in_publish(env)
                assert killed.returncode == KILL_EXIT_CODE, killed.stderr[-3000:]
                assert published(settings) == expected, "publish: a killed publish leaked"
                # kept for the whole-date rerun below: today's work up to publish done, publish killed
                _copy_warehouse(wh_path, killed_in_publish)
                failures += ["publish", "publish (killed)"]
            else:
                # the injection point the DAG's pre_execute hook uses, before the task's work: every
                # real task in turn ...
                for task_id in step.task_ids:
                    os.environ[FAIL_TASK_ENV] = task_id
                    with pytest.raises(InjectedFault):
                        check_fault(task_id)
                    check_fault(f"{task_id}_not_this_one")  # only the named task fails
                    del os.environ[FAIL_TASK_ENV]
                    assert published(settings) == expected, f"{task_id}: published tables changed"
                    failures.append(task_id)
                if step.task_id != "docs":
                    # ... and a failure after the work was written (the rerun then runs on top of it)
                    with pytest.raises(InjectedFault):
                        run_then_fail(step, E2E_END)
                    assert published(settings) == expected, f"{step.task_id}: a failed task changed published tables"
            # the rerun: clear the failed task and carry on (Airflow reruns the task and what follows it)
            step.run(E2E_END)
            if step.task_id == "publish":
                assert published(settings) == reference, "the rerun after failures differs from a run that never failed"
                expected = reference
        assert published(settings) == reference
        assert (settings.docs_dir / "gx" / "audit" / "index.html").is_file(), "GX Data Docs were not built"
        assert (settings.docs_dir / "gx" / "raw" / "quality.html").is_file()

        # The worst case once more, answered by rerunning the whole date instead of the failed task:
        # everything up to publish done, then the process killed inside the publish transaction (the
        # warehouse as the killed publish above left it, copied before its task was rerun).
        _copy_warehouse(killed_in_publish, wh_path)
        assert work[-1].task_id == "publish"
        assert published(settings) == before, "a killed publish leaked"
        for step in work:
            step.run(E2E_END)
        assert published(settings) == reference, "a full rerun after a killed publish differs from a clean run"
    dag_task_ids = {t.task_id for t in module.dag.tasks}
    assert set(failures) >= dag_task_ids, sorted(dag_task_ids - set(failures))


def test_the_dag_hook_fails_a_task_records_it_and_emits_no_asset(demo_data, airflow_home, session_dir) -> None:
    """The real DAG in Airflow: CUSTSEG_FAIL_TASK fails the first task through its pre_execute hook; the
    failure callback records it in ops.run_audit with a clear summary; nothing downstream runs, nothing is
    published, and no Asset event is emitted."""
    data_dir = session_dir / "fault_injection_dag"
    env = warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb",
                        landing_dir=demo_data.landing_dir)
    settings = load_settings(env)
    assets = [f"custseg://duckdb/{settings.publish_schema}/{t}" for t in PUBLISHED_TABLES]

    def asset_events() -> int:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import func, select

        with create_session() as session:
            return session.scalar(select(func.count()).select_from(AssetEvent).join(
                AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri.in_(assets))) or 0

    events_before = asset_events()
    result = run_cli(["run", "--as-of", E2E_END.isoformat()], {**env, FAIL_TASK_ENV: "prepare"}, airflow_home)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"as of {E2E_END}: failed" in result.stdout, output[-4000:]
    # the terminal gets the one-line error; the task's failure summary is in the run's log file
    assert "injected failure in task 'prepare'" in result.stderr.strip().splitlines()[-1], output[-4000:]
    [log_file] = re.findall(r"^logs \(Airflow, dbt\): (\S+)$", result.stdout, re.M)
    log_text = Path(log_file).read_text(encoding="utf-8", errors="replace")
    assert "custseg: task 'prepare' of DAG 'customer_segmentation' FAILED" in log_text, log_text[-4000:]
    assert "custseg: task 'prepare'" not in output
    assert asset_events() == events_before
    with connect(settings) as wh:
        rows = wh.fetchall("select task_id, status, error, started_at, ended_at from ops.run_audit")
        assert [(r[0], r[1]) for r in rows] == [("prepare", "failed")]
        assert "AirflowFailException: injected failure in task 'prepare'" in rows[0][2]
        assert rows[0][3] is not None and rows[0][4] >= rows[0][3]
        for table in PUBLISHED_TABLES:
            assert not wh.table_exists(settings.publish_schema, table)
    status = run_cli(["status"], env, airflow_home)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "FAILED" in status.stdout and "failed: prepare: AirflowFailException" in status.stdout, status.stdout
    assert "customer_segments" in status.stdout and "(not published yet)" in status.stdout


# -- operational record: run audit, failure summary, notifier, status --------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (no TLS, no AUTH) to receive what Airflow's SMTP notifier sends."""

    messages: ClassVar[list[str]] = []

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self._reply("220 localhost test SMTP")
        data: list[bytes] | None = None
        while line := self.rfile.readline():
            if data is not None:
                if line.rstrip(b"\r\n") == b".":
                    type(self).messages.append(b"".join(data).decode())
                    data = None
                    self._reply("250 queued")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self._reply("250-localhost")
                self._reply("250 8BITMIME")
            elif verb == b"DATA":
                data = []
                self._reply("354 end with <CRLF>.<CRLF>")
            elif verb == b"QUIT":
                self._reply("221 bye")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self._reply("250 ok")


def test_failure_notification_by_email_through_an_smtp_connection(monkeypatch) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Smtp.messages = []
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CUSTSEG_MAIL", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": server.server_address[1],
            "extra": {"to": "data-oncall@example.com", "from_email": "custseg@example.com",
                      "disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 1},
        }))
        monkeypatch.setenv(NOTIFY_CONN_ENV, "custseg_mail")
        assert notify_failure(_context("score", ValueError("labels out of range"))) is True
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Smtp.messages) == 1
    message = email.message_from_string(_Smtp.messages[0])
    assert message["To"] == "data-oncall@example.com" and message["From"] == "custseg@example.com"
    assert message["Subject"] == "custseg: score failed (2026-10-31)"
    body = "".join(part.get_payload(decode=True).decode() for part in message.walk()
                   if part.get_content_type() == "text/html")
    assert "ValueError: labels out of range" in body and "rerun the same date" in body


def _context(task_id: str, error: BaseException | None = None, result: object = None) -> dict:
    ti = SimpleNamespace(
        task_id=task_id, dag_id="customer_segmentation", run_id="scheduled__2026-10-31", try_number=2,
        start_date=dt.datetime(2026, 11, 1, 1, 0, tzinfo=dt.UTC), log_url="http://airflow/log",
        xcom_pull=lambda **kwargs: result,
    )  # fmt: skip
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "ds": "2026-10-31",
            "as_of_date": dt.datetime(2026, 10, 31, tzinfo=dt.UTC), "exception": error}


def test_callbacks_write_run_audit_and_notify_through_a_webhook(tmp_path: Path, monkeypatch, caplog) -> None:
    env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        # off by default: nothing is sent
        monkeypatch.delenv(NOTIFY_CONN_ENV, raising=False)
        assert notify_failure(_context("score", ValueError("boom"))) is False

        monkeypatch.setenv("AIRFLOW_CONN_CUSTSEG_NOTIFY", f"http://127.0.0.1:{server.server_port}/hooks/custseg")
        monkeypatch.setenv(NOTIFY_CONN_ENV, "custseg_notify")
        record_success(_context("ingest.shop_orders", result={"rows_read": 12, "rows_loaded": 10}))
        record_success(_context("publish", result={"customer_segments": 400, "segment_summary": 30}))
        with caplog.at_level(logging.ERROR, logger="custseg.ops"):
            record_failure(_context("score", ValueError("labels out of range")))
        assert "custseg: task 'score' of DAG 'customer_segmentation' FAILED" in caplog.text
        assert "ValueError: labels out of range" in caplog.text and "http://airflow/log" in caplog.text
        assert len(_Hook.received) == 1
        body = _Hook.received[0]
        assert body["task_id"] == "score" and body["as_of_date"] == "2026-10-31"
        assert "ValueError: labels out of range" in body["text"] and "rerun the same date" in body["text"]

        # a broken notifier never masks the task's outcome
        monkeypatch.setenv("AIRFLOW_CONN_CUSTSEG_NOTIFY", "http://127.0.0.1:9/nowhere")
        assert notify_failure(_context("score", ValueError("x"))) is False
    finally:
        server.shutdown()

    settings = load_settings(env)
    with connect(settings) as wh:
        rows = wh.query_df("select task_id, status, try_number, rows_in, rows_out, error, started_at, ended_at "
                           "from ops.run_audit order by task_id").set_index("task_id")
    assert rows.loc["ingest.shop_orders", ["rows_in", "rows_out"]].tolist() == [12, 10]
    assert rows.loc["publish", ["rows_in", "rows_out"]].tolist() == [430, 430]
    assert rows.loc["score", "status"] == "failed" and rows.loc["score", "error"] == "ValueError: labels out of range"
    assert (rows["try_number"] == 2).all() and (rows["ended_at"] >= rows["started_at"]).all()
    # a second callback for the same try replaces its row instead of double counting
    record_failure(_context("score", ValueError("labels out of range")))
    with connect(settings) as wh:
        assert wh.fetchall("select count(*) from ops.run_audit where task_id = 'score'")[0][0] == 1

    report = status_report(settings)
    assert "FAILED after publish" in report and "failed: score: ValueError: labels out of range" in report
    assert "customer_segments" in report and "(not published yet)" in report


FREEZE_PROBE = """
import gc, weakref
from custseg.ops.run_audit import before_task

gc.disable()  # only explicit collections: the probe's cycle must not be freed by chance

class Node:
    pass

def cycle():  # garbage that only the cyclic collector frees
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

garbage = cycle()
assert gc.get_freeze_count() == 0
before_task({})  # the first task of this process
frozen = gc.get_freeze_count()
after_first = garbage() is None
before_task({})  # a later task: frozen already, nothing more is frozen
print(frozen > 0, after_first, gc.get_freeze_count() == frozen)
"""


def test_the_first_task_freezes_live_objects_once_and_collects_garbage_first() -> None:
    # in its own interpreter: a freeze is for the life of the process, and pytest's must not be frozen
    result = subprocess.run([sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, cwd=PROJECT_DIR,
                            env={**os.environ, FAIL_TASK_ENV: ""}, timeout=120, check=True)
    frozen, garbage_collected, frozen_once = result.stdout.split()
    assert frozen == "True"             # live objects moved out of later collections
    assert garbage_collected == "True"  # the cycle was freed, not frozen with them
    assert frozen_once == "True"        # later tasks freeze nothing more
