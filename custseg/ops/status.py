"""`custseg status`: the last runs, their tasks and the latest failure with its likely fix, read
from `ops.run_audit` and `ops.load_audit`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from custseg.config import PUBLISHED_TABLES
from custseg.ops.task_context import AFTER_PUBLISH_TASKS
from custseg.warehouse import connect
from custseg.warehouse.sql import qualified

if TYPE_CHECKING:
    from custseg.config import Settings
    from custseg.warehouse import Warehouse


def status_report(settings: Settings, runs: int = 5, failures: int = 20) -> str:
    """The last runs (from ``ops.run_audit``), what is published now, and recent quality failures."""
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
                "select run_id, max(as_of_date), min(started_at), max(ended_at), count(distinct task_id), "
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
                        out.extend(_failed_dbt_nodes(wh, run_id, task_id))
        else:
            out.append("  (ops.run_audit does not exist yet)")
        out.append("")
        out.append(f"published ({settings.publish_schema}):")
        pub = settings.publish_schema
        for table in PUBLISHED_TABLES:
            if not wh.table_exists(pub, table):
                out.append(f"  {table:<20} (not published yet)")
                continue
            rel = f"{qualified(pub, table)}"
            count = wh.fetchall(f"select count(*) from {rel}")[0][0]
            as_of_date = ""
            if "as_of_date" in wh.columns(pub, table):
                as_of_date = f"  as of {wh.fetchall(f'select max(as_of_date) from {rel}')[0][0]}"
            out.append(f"  {table:<20} {count:>10,} rows{as_of_date}")
        if wh.table_exists("ops", "run_audit"):
            last = wh.fetchall(
                "select run_id, as_of_date, ended_at, rows_out from ops.run_audit "
                "where task_id = 'publish' and status = 'success' order by ended_at desc limit 1"
            )
            if last:
                run_id, logical, ended, rows_out = last[0]
                out.append(f"  last publish: as of {logical} at {ended} UTC, {rows_out} rows, run {run_id}")
        out.append("")
        out.append("quality failures (latest run of each suite):")
        if wh.table_exists("ops", "quality_results"):
            has_check = "check_description" in wh.columns("ops", "quality_results")
            check = "q.check_description" if has_check else "cast(null as text)"
            rows = wh.fetchall(
                "with latest as (select suite_name, max(recorded_at) as at from ops.quality_results "
                "group by suite_name) "
                "select q.as_of_date, q.suite_name, q.severity, q.expectation, q.column_name, q.observed_value, "
                # a warehouse of an earlier release gets the column at its next run; status only reads
                f"q.run_id, {check} from ops.quality_results q join latest l "
                "on q.suite_name = l.suite_name and q.recorded_at = l.at "
                "where not q.success order by q.severity, q.suite_name, q.expectation limit %s",
                (failures,),
            )
            if not rows:
                out.append("  none")
            for logical, suite, severity, expectation, column, observed, run_id, check in rows:
                # the check with its band (rows recorded before check_description existed: name and column)
                check = check or (f"{expectation}({column})" if column else expectation)
                out.append(f"  {logical} [{severity}] {suite}: {check}: observed {observed}  ({run_id})")
        else:
            out.append("  (ops.quality_results does not exist yet)")
    return "\n".join(out)


def _failed_dbt_nodes(wh: Warehouse, run_id: str, task_id: str, limit: int = 10) -> list[str]:
    """The models, seeds and tests a failed dbt task (transform, assemble) reported failing, from its latest try."""
    if not wh.table_exists("ops", "dbt_node_results"):
        return []
    rows = wh.fetchall(
        "select resource_type, node_name, status, failures, message from ops.dbt_node_results "
        "where run_id = %s and task_id = %s and status in ('error', 'fail') and try_number = "
        "(select max(try_number) from ops.dbt_node_results where run_id = %s and task_id = %s) "
        "order by node_name limit %s", (run_id, task_id, run_id, task_id, limit))
    return [f"        {kind} {name}: {status}" + (f" ({failures} rows)" if failures else "")
            + (f": {message[:120]}" if message and status == "error" else "")
            for kind, name, status, failures, message in rows]


@dataclasses.dataclass(frozen=True)
class RunFailure:
    """The task whose failure stopped a DAG run (its first failed task), from ``ops.run_audit``."""
    run_id: str
    dag_id: str
    task_id: str
    as_of_date: dt.date | None
    error: str

    @property
    def reason(self) -> str:
        """The error's first line; a quality gate's message needs no exception name before it."""
        first = next((line.strip() for line in self.error.splitlines() if line.strip()), "no error recorded")
        return first.removeprefix("QualityGateError: ")

    def describe(self) -> str:
        when = f" as of {self.as_of_date}" if self.as_of_date else ""
        return f"{self.dag_id}{when} failed in task {self.task_id}: {self.reason} (run {self.run_id})"

    def fix(self) -> str:
        if self.dag_id != "customer_segmentation":
            return "fix the cause and rerun the DAG"
        if self.task_id in AFTER_PUBLISH_TASKS:
            return (f"the analytics tables were published, only the {self.task_id} task failed: fix the cause, "
                    "then `custseg docs` (the docs sites and the run report)")
        return ("the published analytics tables were not changed by it; fix the cause and rerun the date"
                + (f" (custseg run --as-of {self.as_of_date})" if self.as_of_date else ""))


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
        "select dag_id, task_id, as_of_date, error from ops.run_audit where run_id = %s and status = 'failed' "
        f"{where} order by ended_at, recorded_at limit 1",
        (run_id, *params),
    )[0]
    if isinstance(logical, dt.datetime):
        logical = logical.date()
    return RunFailure(str(run_id), str(dag_id), str(task_id), logical, str(error or ""))
