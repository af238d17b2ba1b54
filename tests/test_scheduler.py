"""The nightly DAG run the way a deployment runs it: Airflow's scheduler and a Celery worker, not ``dag.test()``.

One Airflow with the CeleryExecutor on this machine's Redis and its own PostgreSQL metadata database:
api-server, scheduler, dag-processor, triggerer and a Celery worker, as subprocesses sharing a JWT secret and
the execution API's URL. The warehouse is PostgreSQL, and its connection lives only in Airflow's metadata
database (`airflow connections add`): the tasks find it through Airflow's connection API. In order:

1. a run triggered with the CLI for the date E-3 publishes exactly what a ``dag.test()`` run of E-3 publishes;
2. a run for a date with no export fails before publish, emits no Asset event, and starts no activation;
3. ``airflow backfill create --max-active-runs 1`` for E-2..E (the scheduler runs it) gives the same
   segment_history, and the same published tables, as daily ``dag.test()`` runs of those dates;
4. ``activate_audiences``, scheduled on the published Asset, ran after the successful publishes only.

The run for a date with no export is the latest complete daily interval (yesterday, UTC), triggered before
the DAG is unpaused: the scheduler would otherwise start that run by itself on unpausing (catchup=False), so
triggering it first also keeps the order of the runs in the test's hands.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from custseg.config import DAGS_DIR, PUBLISHED_TABLES, load_settings
from custseg.warehouse import connect
from tests.conftest import E2E_END, PG_ADMIN_URL, run_cli, warehouse_env

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

NIGHTLY = "customer_segmentation"
ACTIVATION = "activate_audiences"
TRIGGERED = E2E_END - dt.timedelta(days=3)
BACKFILLED = [E2E_END - dt.timedelta(days=n) for n in (2, 1, 0)]
REDIS_URL = os.environ.get("CUSTSEG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
#: a night under the scheduler: ~17 task processes, each importing Airflow and custseg on a 2-core machine
RUN_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_ping(url: str) -> None:
    """Redis's PING over a socket (the redis client comes with the Celery provider; this needs nothing)."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(b"PING\r\n")
        reply = sock.recv(64)
    if not reply.startswith(b"+PONG"):
        raise ConnectionError(f"Redis at {url} answered {reply!r}")


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(sql)


@dataclass
class AirflowStack:
    home: Path
    env: dict[str, str]
    meta_url: str
    #: the CLI's view of the same warehouse (a plain URL), for reading the published tables
    warehouse_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def airflow(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([str(Path(sys.executable).with_name("airflow")), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def start(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), *args],
                                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def meta(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.meta_url) as con:
            return con.execute(sql, params).fetchall()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}"
                         for path in sorted(self.home.glob("*.log")))

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"Airflow components exited: {dead}\n{self.logs()}"

    def wait_for(self, what: str, probe, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = probe()
            if found:
                return found
            time.sleep(2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.meta("select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id))
        return rows[0][0] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, expected: str) -> None:
        state = self.wait_for(f"{dag_id} {run_id} to finish",
                              lambda: self.run_state(dag_id, run_id) in ("success", "failed")
                              and self.run_state(dag_id, run_id), RUN_TIMEOUT_S)
        failed = self.meta("select task_id, state from task_instance where dag_id = %s and run_id = %s "
                           "and state not in ('success', 'skipped')", (dag_id, run_id))
        assert state == expected, f"{dag_id} {run_id}: {state}, tasks {failed}\n{self.logs()}"

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def reference(demo_data, airflow_home: Path, session_dir: Path) -> Iterator[dict]:
    """Daily ``dag.test()`` runs (``custseg run``) of E-3 .. E on a PostgreSQL warehouse: the published tables'
    checksums after E-3, after E, and segment_history."""
    name = f"custseg_test_ref_{uuid.uuid4().hex[:8]}"
    _admin(f'create database "{name}"')
    env = warehouse_env("postgres", session_dir / "scheduler_reference",
                        pg_url=f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", landing_dir=demo_data.landing_dir)
    try:
        after, seconds = {}, {}
        for day in [TRIGGERED, *BACKFILLED]:
            started = time.monotonic()
            result = run_cli(["run", "--as-of", day.isoformat()], env, airflow_home)
            seconds[day] = time.monotonic() - started
            assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
            after[day] = _published(env)
        yield {"after": after, "history": _history(env), "seconds": seconds}
    finally:
        _admin(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def stack(demo_data, session_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    try:
        _redis_ping(REDIS_URL)
    except OSError as exc:
        # .ci/run starts Redis when it is down; without it, a developer's run says why and stops here
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}): start it with `redis-server --daemonize yes`")
    home = tmp_path_factory.mktemp("airflow-celery")
    suffix = uuid.uuid4().hex[:8]
    meta_db, warehouse_db = f"custseg_test_af_{suffix}", f"custseg_test_wh_{suffix}"
    for name in (meta_db, warehouse_db):
        _admin(f'create database "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    meta_url = f"{base}/{meta_db}"
    api_port = _free_port()
    # a Redis database of its own (0 is the default of every other user of this Redis), emptied afterwards
    redis_db = 11
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTSEG_", "AIRFLOW_", "AIRFLOW__"))}
    env.update(warehouse_env("postgres", session_dir / "scheduler_celery", landing_dir=demo_data.landing_dir))
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        # psycopg 3, the driver custseg already uses, for Airflow's sync and async engines
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url.replace("postgresql://", "postgresql+psycopg://", 1),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": meta_url.replace("postgresql://", "postgresql+psycopg_async://",
                                                                      1),
        "AIRFLOW__CELERY__BROKER_URL": f"{REDIS_URL}/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url.replace("postgresql://", "postgresql+psycopg://", 1),
        # the PostgreSQL warehouse may run tasks side by side (the DAG's max_active_tasks is 8 there)
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        # the DAG files do not change during the test: parse them once, not every 30 s
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        # a failed task fails its run now, not after two retries minutes apart (custseg.ops.run_audit)
        "CUSTSEG_TASK_RETRIES": "0",
    })
    # the warehouse is only an Airflow connection in the metadata database: no URL in the environment
    env.pop("CUSTSEG_POSTGRES_URL", None)
    stack = AirflowStack(home=home, env=env, meta_url=meta_url)
    try:
        stack.airflow("db", "migrate", timeout=600)
        stack.airflow("connections", "add", "custseg_warehouse", "--conn-uri", f"{base}/{warehouse_db}")
        stack.start("api-server", "api-server", "--port", str(api_port), "--host", "127.0.0.1")
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        stack.start("triggerer", "triggerer", "--skip-serve-logs")
        stack.start("worker", "celery", "worker", "--concurrency", "2", "--skip-serve-logs")
        stack.wait_for("the DAGs to be parsed", lambda: len(stack.meta(
            "select dag_id from serialized_dag where dag_id in (%s, %s)", (NIGHTLY, ACTIVATION))) == 2, 300)
        import_errors = stack.meta("select filename, stacktrace from import_error")
        assert not import_errors, import_errors
        stack.warehouse_env = {**env, "CUSTSEG_POSTGRES_URL": f"{base}/{warehouse_db}"}
        yield stack
    finally:
        stack.stop()
        for name in (meta_db, warehouse_db):
            _admin(f'drop database if exists "{name}" with (force)')
        subprocess.run(["redis-cli", "-u", f"{REDIS_URL}/{redis_db}", "flushdb"], capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _published(env: dict[str, str]) -> dict[str, str]:
    with connect(load_settings(env)) as wh:
        return {table: wh.table_checksum("analytics", table) for table in PUBLISHED_TABLES}


def _history(env: dict[str, str]) -> list[tuple]:
    with connect(load_settings(env)) as wh:
        return wh.fetchall(
            "select customer_id, as_of_date, rfm_segment, lifecycle_stage, r_score, f_score, m_score, value_tier, "
            "cluster_id, churn_risk_band, round(cast(churn_probability as numeric), 9), monetary, model_version "
            "from analytics.segment_history order by as_of_date, customer_id")


def _logical(day: dt.date) -> str:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).isoformat()


def test_the_scheduler_and_a_celery_worker_run_trigger_backfill_and_activation(reference: dict,
                                                                               stack: AirflowStack) -> None:
    # 1. a run triggered with the CLI, and a run of the latest interval that has no export, both queued
    # while the DAG is paused (the scheduler would otherwise start the latest interval itself on unpausing)
    latest_interval = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    stack.airflow("dags", "trigger", NIGHTLY, "--logical-date", _logical(TRIGGERED), "--run-id", "cli_triggered")
    stack.airflow("dags", "trigger", NIGHTLY, "--logical-date", _logical(latest_interval), "--run-id", "no_export")
    stack.airflow("dags", "unpause", NIGHTLY)
    stack.airflow("dags", "unpause", ACTIVATION)
    stack.wait_for_run(NIGHTLY, "cli_triggered", "success")
    assert _published(stack.warehouse_env) == reference["after"][TRIGGERED]

    # 2. no export for the date: ingest fails, nothing is published, no Asset event, no activation
    stack.wait_for_run(NIGHTLY, "no_export", "failed")
    publish = stack.meta("select state from task_instance where dag_id = %s and run_id = 'no_export' "
                         "and task_id = 'publish'", (NIGHTLY,))
    assert publish in ([], [(None,)], [("upstream_failed",)]), publish
    failed_at = stack.meta("select end_date from dag_run where dag_id = %s and run_id = 'no_export'", (NIGHTLY,))[0][0]
    assert _published(stack.warehouse_env) == reference["after"][TRIGGERED], "a failed night changed analytics"

    # 3. a backfill the Airflow way: backfill create only makes the runs; the scheduler runs them, one at a time
    stack.airflow("backfill", "create", "--dag-id", NIGHTLY, "--from-date", BACKFILLED[0].isoformat(),
                  "--to-date", BACKFILLED[-1].isoformat(), "--max-active-runs", "1")
    runs = stack.wait_for("the backfill's runs", lambda: stack.meta(
        "select run_id, logical_date from dag_run where dag_id = %s and run_type = 'backfill' order by logical_date",
        (NIGHTLY,)) or None, 120)
    assert [logical.date() for _, logical in runs] == BACKFILLED
    for run_id, _ in runs:
        stack.wait_for_run(NIGHTLY, run_id, "success")
    # one at a time, in date order: each started after the one before it ended
    spans = stack.meta("select start_date, end_date from dag_run where dag_id = %s and run_type = 'backfill' "
                       "order by logical_date", (NIGHTLY,))
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    assert _history(stack.warehouse_env) == reference["history"]
    assert {row[1] for row in reference["history"]} == {TRIGGERED, *BACKFILLED}
    assert _published(stack.warehouse_env) == reference["after"][BACKFILLED[-1]]

    # 4. the Asset: events for the successful publishes only, and activation runs only from them
    asset_uri = "custseg://postgres/analytics/customer_segments"
    events = stack.meta(
        "select e.extra, e.timestamp from asset_event e join asset a on a.id = e.asset_id where a.uri = %s "
        "order by e.timestamp", (asset_uri,))
    published_dates = [json.loads(extra)["as_of_date"] if isinstance(extra, str) else extra["as_of_date"]
                       for extra, _ in events]
    assert published_dates == [d.isoformat() for d in (TRIGGERED, *BACKFILLED)]
    stack.wait_for("the activation runs to finish", lambda: stack.meta(
        "select count(*) from dag_run where dag_id = %s and state in ('queued', 'running')", (ACTIVATION,)
    )[0][0] == 0 and stack.meta("select count(*) from dag_run where dag_id = %s", (ACTIVATION,))[0][0] > 0, 600)
    activations = stack.meta("select run_id, state, queued_at from dag_run where dag_id = %s order by queued_at",
                             (ACTIVATION,))
    assert activations and all(state == "success" for _, state, _ in activations), activations
    # the first publish started one before the failed night; between the failure and the backfill's first
    # publish, nothing started one
    first_backfill_event = events[1][1]
    assert activations[0][2] < failed_at
    assert not [run for run in activations if failed_at < run[2] < first_backfill_event], activations
    # every activation run consumed events of successful publishes only
    consumed = stack.meta(
        "select r.run_id, e.extra from dag_run r join dagrun_asset_event d on d.dag_run_id = r.id "
        "join asset_event e on e.id = d.event_id where r.dag_id = %s", (ACTIVATION,))
    assert consumed and {json.loads(x)["as_of_date"] if isinstance(x, str) else x["as_of_date"]
                         for _, x in consumed} <= set(published_dates)
    # the closing note's figure: the same nights under the scheduler and Celery and under dag.test()
    for run_id, day in [("cli_triggered", TRIGGERED), *zip([r for r, _ in runs], BACKFILLED, strict=True)]:
        start, end = stack.meta("select start_date, end_date from dag_run where dag_id = %s and run_id = %s",
                                (NIGHTLY, run_id))[0]
        print(f"\n[scheduler] {day}: {(end - start).total_seconds():.0f} s under the scheduler and Celery, "
              f"{reference['seconds'][day]:.0f} s under dag.test() (custseg run)")
