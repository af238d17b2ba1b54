"""Operational plumbing for the nightly DAG: run audit, failure summaries and notifications, fault
injection hooks for tests, and the `custseg status` report.

Everything here is small and defensive: a callback that cannot reach the warehouse logs the problem
and never masks the task's own outcome.

* ``ops.run_audit`` gets one row per task try (run, task, start, end, rows in/out, status, error),
  written by ``record_success`` / ``record_failure``, the task callbacks installed in the DAG.
* ``notify_failure`` logs a clear summary and, when ``CUSTSEG_NOTIFY_CONN_ID`` names an Airflow
  connection, sends it through ``FailureNotifier`` (a webhook for ``http``/``https`` connections,
  e-mail through the SMTP provider's notifier for ``smtp`` connections). Off by default.
* ``before_task``, the ``pre_execute`` hook of every task, freezes the objects alive at a process's
  first task out of later garbage collections (``freeze_long_lived_objects``), then applies the
  fault injection below.
* Fault injection (tests and drills only, off unless the variables are set):
  ``CUSTSEG_FAIL_TASK=<task_id>[,<task_id>...]`` fails those tasks before they execute
  (``fnmatch`` patterns such as ``transform.*`` fail every Cosmos dbt task of a group);
  ``CUSTSEG_FAIL_IN_PUBLISH=1`` raises, and ``CUSTSEG_KILL_IN_PUBLISH=1`` kills the process with
  ``os._exit``, inside the publish transaction right after the first table was replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fnmatch
import gc
import json
import logging
import os
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from custseg.config import Settings
    from custseg.warehouse import Warehouse

log = logging.getLogger(__name__)

FAIL_TASK_ENV = "CUSTSEG_FAIL_TASK"
FAIL_IN_PUBLISH_ENV = "CUSTSEG_FAIL_IN_PUBLISH"
KILL_IN_PUBLISH_ENV = "CUSTSEG_KILL_IN_PUBLISH"
PUBLISH_PAUSE_ENV = "CUSTSEG_PUBLISH_PAUSE_SECONDS"
NOTIFY_CONN_ENV = "CUSTSEG_NOTIFY_CONN_ID"
KILL_EXIT_CODE = 137  # what a SIGKILL-ed process reports

RUN_AUDIT_COLUMNS = ("run_id", "dag_id", "task_id", "logical_date", "try_number", "status", "started_at",
                     "ended_at", "duration_seconds", "rows_in", "rows_out", "error", "recorded_at")


class InjectedFault(RuntimeError):
    """A failure injected on purpose (CUSTSEG_FAIL_TASK / CUSTSEG_FAIL_IN_PUBLISH)."""


def _utc_now() -> dt.datetime:
    """Operational timestamps only (when something happened), never computed values."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# -- fault injection ------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def should_fail(task_id: str, env: Mapping[str, str] | None = None) -> bool:
    """True when ``CUSTSEG_FAIL_TASK`` lists ``task_id`` (comma-separated ids or fnmatch patterns)."""
    spec = (os.environ if env is None else env).get(FAIL_TASK_ENV, "")
    return any(fnmatch.fnmatchcase(task_id, p.strip()) for p in spec.split(",") if p.strip())


def check_fault(task_id: str) -> None:
    """Raise ``InjectedFault`` if this task is to fail. The DAG's pre_execute hook and the test harness
    call this same function, so both inject faults the same way."""
    if should_fail(task_id):
        raise InjectedFault(f"injected failure in task {task_id!r} ({FAIL_TASK_ENV})")


def fault_injection_hook(context: Mapping[str, Any]) -> None:
    """Fails the task when asked to; called by ``before_task``, the ``pre_execute`` hook of every task.

    Raises ``AirflowFailException`` so an injected failure is final (no retry), like bad data."""
    task_id = _task_id(context)
    if task_id and should_fail(task_id):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"injected failure in task {task_id!r} ({FAIL_TASK_ENV})")


def freeze_long_lived_objects() -> None:
    """Keep the objects alive when a process starts its first task out of every later collection.

    Cosmos runs a full ``gc.collect()`` after each dbt command (astronomer-cosmos#2334), which walks
    every object of the process: what Airflow, dbt, pandas and GX made at import and, under
    ``dag.test()`` (``custseg run``), the in-process execution API, ~1.3M objects, ~0.5 s a dbt task.
    ``gc.freeze()`` moves the objects alive now into a permanent generation that collections skip;
    collecting first means no garbage is frozen with them. Once per process: objects frozen later
    would include what a finished task still holds.
    """
    if gc.get_freeze_count():  # this process froze already (or Airflow did, before forking it)
        return
    gc.collect()
    gc.freeze()


def before_task(context: Mapping[str, Any]) -> None:
    """``pre_execute`` hook of every task of both DAGs (set in ``default_args``)."""
    freeze_long_lived_objects()
    fault_injection_hook(context)


def publish_fault_point(table: str, replaced: int) -> None:
    """Called inside the publish transaction after each table was replaced (``replaced`` so far)."""
    if replaced != 1:
        return
    pause = os.environ.get(PUBLISH_PAUSE_ENV)
    if pause:
        log.warning("publish paused for %s s inside the transaction (%s)", pause, PUBLISH_PAUSE_ENV)
        time.sleep(float(pause))
    if _truthy(os.environ.get(KILL_IN_PUBLISH_ENV)):
        log.error("killing the process inside the publish transaction after replacing %s (%s)",
                  table, KILL_IN_PUBLISH_ENV)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(KILL_EXIT_CODE)
    if _truthy(os.environ.get(FAIL_IN_PUBLISH_ENV)):
        raise InjectedFault(f"injected failure inside the publish transaction after replacing {table}")


# -- run audit ------------------------------------------------------------------------------------


def _task_id(context: Mapping[str, Any]) -> str:
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    return str(getattr(ti, "task_id", None) or getattr(task, "task_id", "") or "")


def _naive_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    return None


def rows_in_out(result: Any) -> tuple[int | None, int | None]:
    """Rows in and out from a step's return value (the dicts the pipeline steps return)."""
    if not isinstance(result, Mapping):
        return None, None
    if "rows_read" in result or "rows_loaded" in result:  # ingest
        return _int(result.get("rows_read")), _int(result.get("rows_loaded"))
    if "rows_in" in result or "rows_out" in result:
        return _int(result.get("rows_in")), _int(result.get("rows_out"))
    if "customers" in result:  # score
        return None, _int(result.get("customers"))
    values = list(result.values())
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):  # publish: table -> rows
        total = sum(values)
        return total, total
    return None, None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def audit_row(context: Mapping[str, Any], status: str, error: BaseException | str | None = None,
              result: Any = None) -> dict[str, Any]:
    """One ``ops.run_audit`` row from an Airflow task context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    started = _naive_utc(getattr(ti, "start_date", None))
    ended = _utc_now()
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    logical_date = logical.date() if isinstance(logical, dt.datetime) else None
    if logical_date is None and context.get("ds"):
        logical_date = dt.date.fromisoformat(str(context["ds"]))
    rows_in, rows_out = rows_in_out(result)
    return {
        "run_id": str(context.get("run_id") or getattr(ti, "run_id", "") or ""),
        "dag_id": str(getattr(ti, "dag_id", "") or getattr(dag_run, "dag_id", "") or ""),
        "task_id": _task_id(context),
        "logical_date": logical_date,
        "try_number": _int(getattr(ti, "try_number", None)),
        "status": status,
        "started_at": started,
        "ended_at": ended,
        "duration_seconds": (ended - started).total_seconds() if started else None,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "error": _error_text(error),
        "recorded_at": ended,
    }


def _error_text(error: BaseException | str | None, limit: int = 4000) -> str | None:
    if error is None:
        return None
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:limit]


def write_run_audit(wh: Warehouse, row: Mapping[str, Any]) -> None:
    """Insert one row into ``ops.run_audit`` (replacing the same run/task/try, so retries of a callback
    never double-count)."""
    cols = ", ".join(RUN_AUDIT_COLUMNS)
    with wh.transaction():
        wh.execute(
            "delete from ops.run_audit where run_id = %s and task_id = %s and try_number is not distinct from %s",
            (row["run_id"], row["task_id"], row["try_number"]),
        )
        wh.execute(
            f"insert into ops.run_audit ({cols}) values ({', '.join(['%s'] * len(RUN_AUDIT_COLUMNS))})",
            tuple(row.get(c) for c in RUN_AUDIT_COLUMNS),
        )


def _record(context: Mapping[str, Any], status: str, error: BaseException | str | None, result: Any) -> None:
    from custseg.config import load_settings
    from custseg.warehouse import connect

    row = audit_row(context, status, error, result)
    try:
        with connect(load_settings()) as wh:
            if not wh.table_exists("ops", "run_audit"):
                wh.bootstrap()
            write_run_audit(wh, row)
    except Exception as exc:  # the audit must never mask the task's own outcome
        log.warning("could not write ops.run_audit for %s/%s: %s", row["run_id"], row["task_id"], exc)


def _return_value(context: Mapping[str, Any]) -> Any:
    ti = context.get("ti")
    if ti is None:
        return None
    try:
        return ti.xcom_pull(task_ids=ti.task_id, key="return_value")
    except Exception:  # rows are best effort
        return None


def record_success(context: Mapping[str, Any]) -> None:
    """``on_success_callback``: one ``success`` row in ``ops.run_audit`` with the task's row counts."""
    _record(context, "success", None, _return_value(context))


def record_retry(context: Mapping[str, Any]) -> None:
    """``on_retry_callback``: the failed try is recorded as ``up_for_retry``."""
    _record(context, "up_for_retry", context.get("exception"), None)


def record_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: log a clear summary, record it, notify if configured."""
    error = context.get("exception")
    log.error("%s", failure_summary(context))
    _record(context, "failed", error, None)
    notify_failure(context)


# -- failure summary and notification -------------------------------------------------------------


def failure_summary(context: Mapping[str, Any]) -> str:
    """A short, complete account of a failed task for logs, chat and e-mail."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    first_line = (_error_text(error) or "unknown error").strip()
    lines = [
        f"custseg: task {_task_id(context)!r} of DAG {getattr(ti, 'dag_id', '?')!r} FAILED",
        f"  run: {context.get('run_id') or getattr(ti, 'run_id', '?')}, logical date: {context.get('ds', '?')}, "
        f"try {getattr(ti, 'try_number', '?')}",
        "  the published analytics tables were not changed by this run (publish happens last, atomically)"
        if _task_id(context) != "docs" else "  the analytics tables were already published; only the docs failed",
        f"  error: {first_line[:2000]}",
    ]
    if isinstance(error, BaseException) and error.__traceback__ is not None:
        where = traceback.extract_tb(error.__traceback__)[-1]
        lines.append(f"  at: {where.filename}:{where.lineno} in {where.name}")
    url = getattr(ti, "log_url", None)
    if url:
        lines.append(f"  log: {url}")
    lines.append("  fix the cause and rerun the same date (`custseg run --as-of <date>` or clear the run)")
    return "\n".join(lines)


def _notifier_base() -> type:
    try:
        from airflow.sdk import BaseNotifier

        return BaseNotifier
    except ImportError:  # pragma: no cover - outside Airflow
        return object


class FailureNotifier(_notifier_base()):  # type: ignore[misc]
    """Send the failure summary through an Airflow connection: a webhook (``http``/``https``; JSON
    ``{"text": ..., "dag_id": ..., ...}`` POSTed to the connection's URL, or ``extra.url``) or e-mail
    (``smtp``; recipients in the connection's ``extra.to``), through the SMTP provider's notifier."""

    template_fields = ()

    def __init__(self, conn_id: str, timeout: float = 10.0):
        super().__init__()
        self.conn_id = conn_id
        self.timeout = timeout

    def notify(self, context: Mapping[str, Any]) -> None:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        summary = failure_summary(context)
        conn_type = (conn.conn_type or "").lower()
        extra = conn.extra_dejson or {}
        if conn_type in {"http", "https", "webhook"}:
            self._post(webhook_url(conn), summary, context)
        elif conn_type in {"smtp", "email"}:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            to = extra.get("to") or conn.login
            SmtpNotifier(
                to=to, smtp_conn_id=self.conn_id, from_email=extra.get("from_email"),
                subject=f"custseg: {_task_id(context)} failed ({context.get('ds', '')})",
                html_content=f"<pre>{summary}</pre>",
            ).notify(context)  # fmt: skip
        else:
            raise ValueError(f"connection {self.conn_id!r} has type {conn_type!r}; use http(s) or smtp")

    def _post(self, url: str, summary: str, context: Mapping[str, Any]) -> None:
        import urllib.request

        ti = context.get("ti") or context.get("task_instance")
        body = json.dumps({
            "text": summary,
            "dag_id": getattr(ti, "dag_id", None),
            "task_id": _task_id(context),
            "run_id": context.get("run_id"),
            "logical_date": context.get("ds"),
        }).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # the operator's own connection
            response.read()


def webhook_url(conn: Any) -> str:
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{conn.host}{port}{path}"


def notify_failure(context: Mapping[str, Any]) -> bool:
    """Notify through ``CUSTSEG_NOTIFY_CONN_ID`` when set (off by default). Never raises."""
    conn_id = os.environ.get(NOTIFY_CONN_ENV, "").strip()
    if not conn_id:
        return False
    try:
        FailureNotifier(conn_id).notify(context)
        return True
    except Exception as exc:
        log.warning("failure notification through connection %r failed: %s", conn_id, exc)
        return False


# -- concurrency ----------------------------------------------------------------------------------


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse (DuckDB: one writer per file)."""


def explain_lock_error(settings: Settings, exc: BaseException) -> BaseException:
    """Turn DuckDB's file-lock error into a clear one; other errors pass through unchanged."""
    text = str(exc)
    if settings.warehouse == "duckdb" and "lock" in text.lower():
        return WarehouseBusyError(
            f"the DuckDB warehouse {settings.duckdb_path} is being written by another process (another custseg "
            f"run or task?); DuckDB allows one writer per file, so this step stopped without changing anything. "
            f"Rerun it when the other run has finished. DuckDB said: {text.splitlines()[0]}"
        )
    return exc


@contextlib.contextmanager
def run_lock(settings: Settings, name: str = "customer_segmentation") -> Iterator[None]:
    """Hold an exclusive, process-wide lock for a whole run; a second holder is rejected at once with a
    clear error. PostgreSQL: a session advisory lock (released if the process dies). DuckDB: an
    ``fcntl`` lock on ``<warehouse>.run.lock`` beside the file (released by the OS if the process dies)."""
    if settings.warehouse == "postgres":
        import psycopg

        assert settings.postgres is not None
        conn = psycopg.connect(settings.postgres.url, autocommit=True)
        try:
            got = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (f"custseg:{name}",)).fetchone()
            if not got or not got[0]:
                raise WarehouseBusyError(f"another {name} run holds the warehouse lock; not starting a second one")
            yield
        finally:
            conn.close()
        return
    import fcntl

    path = settings.duckdb_path.with_name(settings.duckdb_path.name + ".run.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise WarehouseBusyError(f"another {name} run holds {path}; not starting a second one") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- status ---------------------------------------------------------------------------------------


def status_report(settings: Settings, runs: int = 5, failures: int = 20) -> str:
    """The last runs (from ``ops.run_audit``), what is published now, and recent quality failures."""
    from custseg.config import PUBLISHED_TABLES
    from custseg.warehouse import connect, quote_ident

    out: list[str] = []
    with connect(settings, read_only=True) as wh:
        out.append(f"warehouse: {settings.warehouse}"
                   + (f" ({settings.duckdb_path})" if settings.warehouse == "duckdb" else ""))
        failure = latest_failure(wh) if wh.table_exists("ops", "run_audit") else None
        if failure is not None:
            out.append(f"latest failed run: {failure.describe()}")
            out.append(f"  {failure.fix()}")
        else:
            out.append("latest failed run: none recorded")
        out.append("")
        out.append(f"last {runs} runs (ops.run_audit):")
        if wh.table_exists("ops", "run_audit"):
            rows = wh.fetchall(
                "select run_id, max(logical_date), min(started_at), max(ended_at), count(distinct task_id), "
                "sum(case when status = 'failed' then 1 else 0 end), "
                "max(case when task_id = 'publish' and status = 'success' then 1 else 0 end), max(recorded_at) "
                "from ops.run_audit group by run_id order by max(recorded_at) desc limit %s",
                (runs,),
            )
            if not rows:
                out.append("  (none recorded yet)")
            for run_id, logical, started, ended, tasks, failed, published, _ in rows:
                state = ("FAILED after publish" if published else "FAILED") if failed else (
                    "published" if published else "incomplete")
                out.append(f"  {logical}  {state:<20} {tasks:>3} tasks  {started} .. {ended}  {run_id}")
                if failed:
                    for task_id, error in wh.fetchall(
                        "select task_id, error from ops.run_audit where run_id = %s and status = 'failed' "
                        "order by ended_at", (run_id,),
                    ):  # fmt: skip
                        out.append(f"      failed: {task_id}: {(error or '').splitlines()[0][:160] if error else ''}")
        else:
            out.append("  (ops.run_audit does not exist yet)")
        out.append("")
        out.append(f"published ({settings.publish_schema}):")
        pub = settings.publish_schema
        for table in PUBLISHED_TABLES:
            if not wh.table_exists(pub, table):
                out.append(f"  {table:<20} (not published yet)")
                continue
            rel = f"{quote_ident(pub)}.{quote_ident(table)}"
            count = wh.fetchall(f"select count(*) from {rel}")[0][0]
            as_of = ""
            if "as_of_date" in wh.columns(pub, table):
                as_of = f"  as of {wh.fetchall(f'select max(as_of_date) from {rel}')[0][0]}"
            out.append(f"  {table:<20} {count:>10,} rows{as_of}")
        if wh.table_exists("ops", "run_audit"):
            last = wh.fetchall(
                "select run_id, logical_date, ended_at, rows_out from ops.run_audit "
                "where task_id = 'publish' and status = 'success' order by ended_at desc limit 1"
            )
            if last:
                run_id, logical, ended, rows_out = last[0]
                out.append(f"  last publish: as of {logical} at {ended} UTC, {rows_out} rows, run {run_id}")
        out.append("")
        out.append("quality failures (latest run of each suite):")
        if wh.table_exists("ops", "quality_results"):
            rows = wh.fetchall(
                "with latest as (select suite_name, max(recorded_at) as at from ops.quality_results "
                "group by suite_name) "
                "select q.logical_date, q.suite_name, q.severity, q.expectation, q.column_name, q.observed_value, "
                "q.run_id from ops.quality_results q join latest l "
                "on q.suite_name = l.suite_name and q.recorded_at = l.at "
                "where not q.success order by q.severity, q.suite_name, q.expectation limit %s",
                (failures,),
            )
            if not rows:
                out.append("  none")
            for logical, suite, severity, expectation, column, observed, run_id in rows:
                col = f"({column})" if column else ""
                out.append(f"  {logical} [{severity}] {suite}: {expectation}{col}: {observed}  ({run_id})")
        else:
            out.append("  (ops.quality_results does not exist yet)")
    return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class RunFailure:
    """The task whose failure stopped a DAG run (its first failed task), from ``ops.run_audit``."""

    run_id: str
    dag_id: str
    task_id: str
    logical_date: dt.date | None
    error: str

    @property
    def reason(self) -> str:
        """The error's first line; a quality gate's message needs no exception name before it."""
        first = next((line.strip() for line in self.error.splitlines() if line.strip()), "no error recorded")
        return first.removeprefix("QualityGateError: ")

    def describe(self) -> str:
        when = f" as of {self.logical_date}" if self.logical_date else ""
        return f"{self.dag_id}{when} failed in task {self.task_id}: {self.reason} (run {self.run_id})"

    def fix(self) -> str:
        if self.dag_id != "customer_segmentation":
            return "fix the cause and rerun the DAG"
        if self.task_id == "docs":  # the one task after publish
            return "the analytics tables were published, only the docs failed: fix the cause, then `custseg docs`"
        return ("the published analytics tables were not changed by it; fix the cause and rerun the date"
                + (f" (custseg run --as-of {self.logical_date})" if self.logical_date else ""))


def latest_failure(wh: Warehouse, since: dt.datetime | None = None) -> RunFailure | None:
    """The latest run with a failed task (recorded at or after ``since``, UTC, when given), and its
    first failed task: the cause; the tasks after it did not run."""
    where, params = ("and recorded_at >= %s", (since,)) if since is not None else ("", ())
    latest = wh.fetchall(
        f"select run_id from ops.run_audit where status = 'failed' {where} order by recorded_at desc limit 1",
        params,
    )
    if not latest:
        return None
    run_id = latest[0][0]
    dag_id, task_id, logical, error = wh.fetchall(
        "select dag_id, task_id, logical_date, error from ops.run_audit where run_id = %s and status = 'failed' "
        f"{where} order by ended_at, recorded_at limit 1",
        (run_id, *params),
    )[0]
    if isinstance(logical, dt.datetime):
        logical = logical.date()
    return RunFailure(str(run_id), str(dag_id), str(task_id), logical, str(error or ""))


# -- what both DAGs share -------------------------------------------------------------------------

#: DAG start_date. Airflow skips every task of a run whose logical date is before the DAG's
#: start_date and still marks the run successful, so a start date in the pipeline's own past
#: would silently do nothing for history that users legitimately run (an order export as of
#: 1997, a backfill). With catchup=False an early start date schedules nothing extra.
EARLIEST_LOGICAL_DATE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def default_args(**overrides: Any) -> dict[str, Any]:
    """Owner, retries with exponential backoff and the run-audit callbacks; per-DAG overrides win."""
    return {
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=20),
        # operational record (ops.run_audit), failure summary and optional notifier
        "on_success_callback": record_success,
        "on_failure_callback": record_failure,
        "on_retry_callback": record_retry,
        # gc.freeze once per process, and fault injection for tests and drills
        # (CUSTSEG_FAIL_TASK=<task_id>; a no-op unless set)
        "pre_execute": before_task,
        **overrides,
    }
