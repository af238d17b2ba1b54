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
  (``fnmatch`` patterns such as ``ingest.*`` fail every task of a group);
  ``CUSTSEG_FAIL_IN_PUBLISH=1`` raises, and ``CUSTSEG_KILL_IN_PUBLISH=1`` kills the process with
  ``os._exit``, inside the publish transaction right after the first table was replaced.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from custseg.clock import utc_now
from custseg.config import load_settings, task_retries
from custseg.dbt import release_dbt_duckdb
from custseg.ops import progress
from custseg.ops.faults import fault_injection_hook
from custseg.ops.notify import failure_summary, notify_failure
from custseg.ops.task_context import error_text, task_id
from custseg.warehouse import connect

if TYPE_CHECKING:
    from custseg.warehouse import Warehouse

log = logging.getLogger(__name__)


RUN_AUDIT_COLUMNS = ("run_id", "dag_id", "task_id", "as_of_date", "try_number", "status", "started_at",
                     "ended_at", "duration_seconds", "rows_in", "rows_out", "error", "recorded_at")


_frozen = False  # this process froze its long-lived objects (a forked child inherits the flag with them)


def freeze_long_lived_objects() -> None:
    """Keep the objects alive when a process starts its first task out of every later collection.

    A full ``gc.collect()`` walks every object of the process: what Airflow, dbt, pandas and GX made at
    import and, under ``dag.test()`` (``custseg run``), the in-process execution API, ~1.3M objects,
    ~0.5 s each. (Cosmos, which ran the dbt tasks until issue 27, called one after every dbt command;
    Python's own full collections still walk them.)
    ``gc.freeze()`` moves the objects alive now into a permanent generation that collections skip;
    collecting first means no garbage is frozen with them. Once per process: objects frozen later
    would include what a finished task still holds.
    """
    global _frozen
    # not gc.get_freeze_count(): it counts the frozen objects one by one, ~0.25 s a task (1.3M objects)
    if _frozen:
        return
    gc.collect()
    gc.freeze()
    _frozen = True


def release_long_lived_objects() -> None:
    """Undo the freeze when a command that ran DAGs in-process ends (`custseg run`, `custseg demo`).

    Frozen objects are never collected, not even at exit; DuckDB's bindings (nanobind) then report every DuckDB
    object still alive as a leak, some 45 lines on stderr after the command finished. Unfreezing, closing
    dbt-duckdb's connection and collecting frees them before the interpreter ends."""
    global _frozen
    if not _frozen:
        return
    gc.unfreeze()
    _frozen = False
    release_dbt_duckdb()
    gc.collect()


def before_task(context: Mapping[str, Any]) -> None:
    """``pre_execute`` hook of every task of both DAGs (set in ``default_args``)."""
    freeze_long_lived_objects()
    progress.task_event(task_id(context), "started")
    fault_injection_hook(context)


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
    ended = utc_now()
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    as_of_date = logical.date() if isinstance(logical, dt.datetime) else None
    if as_of_date is None and context.get("ds"):
        as_of_date = dt.date.fromisoformat(str(context["ds"]))
    rows_in, rows_out = rows_in_out(result)
    return {
        "run_id": str(context.get("run_id") or getattr(ti, "run_id", "") or ""),
        "dag_id": str(getattr(ti, "dag_id", "") or getattr(dag_run, "dag_id", "") or ""),
        "task_id": task_id(context),
        "as_of_date": as_of_date,
        "try_number": _int(getattr(ti, "try_number", None)),
        "status": status,
        "started_at": started,
        "ended_at": ended,
        "duration_seconds": (ended - started).total_seconds() if started else None,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "error": error_text(error),
        "recorded_at": ended,
    }


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
    result = _return_value(context)
    progress.task_event(task_id(context), "done", rows_in_out(result)[1])
    _record(context, "success", None, result)


def record_retry(context: Mapping[str, Any]) -> None:
    """``on_retry_callback``: the failed try is recorded as ``up_for_retry``."""
    _record(context, "up_for_retry", context.get("exception"), None)


def record_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: log a clear summary, record it, notify if configured."""
    error = context.get("exception")
    log.error("%s", failure_summary(context))
    progress.task_event(task_id(context), "FAILED")
    _record(context, "failed", error, None)
    notify_failure(context)


#: DAG start_date. Airflow skips every task of a run whose logical date is before the DAG's
#: start_date and still marks the run successful, so a start date in the pipeline's own past
#: would silently do nothing for history that users legitimately run (an order export as of
#: 1997, a backfill). With catchup=False an early start date schedules nothing extra.
EARLIEST_LOGICAL_DATE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def default_args(**overrides: Any) -> dict[str, Any]:
    """Owner, retries with exponential backoff and the run-audit callbacks; per-DAG overrides win.

    Retries: CUSTSEG_TASK_RETRIES (default 2) and CUSTSEG_TASK_RETRY_DELAY_SECONDS (default 120, doubling up
    to 20 minutes); tasks whose failure a retry cannot fix (bad data, failed tests) set ``retries=0`` themselves."""
    retries, retry_delay = task_retries()
    return {
        "owner": "data-engineering",
        "retries": retries,
        "retry_delay": retry_delay,
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
