"""Per-stage times of one DAG run, read from the task instances in the Airflow metadata DB.

Tasks outside the known groups (for example a task added to the DAG later) are their own stage.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

DAG_ID = "customer_segmentation"
STAGES: tuple[str, ...] = (
    "ingest", "validate_raw", "dbt_transform", "score", "dbt_assemble", "audit", "publish", "docs",
)
_PREFIX_STAGE = {"prepare": "ingest", "ingest": "ingest", "transform": "dbt_transform", "assemble": "dbt_assemble"}


def stage_of(task_id: str) -> str:
    head = task_id.split(".", 1)[0]
    return _PREFIX_STAGE.get(head, head)


def _ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value and value != "None" else None


def task_times(airflow_db: Path, as_of_date: dt.date) -> list[dict[str, object]]:
    """Every task instance of the latest run for ``as_of_date``: id, stage, seconds, state, tries."""
    with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as con:
        run = con.execute(
            "select run_id from dag_run where dag_id = ? and as_of_date like ? order by id desc limit 1",
            (DAG_ID, f"{as_of_date.isoformat()}%"),
        ).fetchone()
        if run is None:
            return []
        rows = con.execute(
            "select task_id, start_date, end_date, duration, state, try_number from task_instance "
            "where dag_id = ? and run_id = ? order by start_date",
            (DAG_ID, run[0]),
        ).fetchall()
    return [
        {"task_id": t, "stage": stage_of(t), "start": s, "end": e, "seconds": round(float(d or 0.0), 2),
         "state": st, "tries": n}
        for t, s, e, d, st, n in rows
    ]


def stage_summary(tasks: list[dict[str, object]], wall_s: float | None = None) -> dict[str, float]:
    """Seconds per stage (sum of its task durations), the tasks' span, and the rest of the process wall.

    ``outside_tasks`` is the child's wall time minus the summed task time: interpreter and Airflow
    start-up, DAG parsing (importing the DAG file and the steps), and scheduling gaps.
    """
    out = dict.fromkeys(STAGES, 0.0)
    for task in tasks:
        stage = str(task["stage"])
        out[stage] = out.get(stage, 0.0) + float(task["seconds"])  # type: ignore[arg-type]
    out = {k: round(v, 2) for k, v in out.items()}
    in_tasks = sum(out.values())
    starts = [_ts(str(t["start"])) for t in tasks if t["start"]]
    ends = [_ts(str(t["end"])) for t in tasks if t["end"]]
    if starts and ends:
        out["task_span"] = round((max(e for e in ends if e) - min(s for s in starts if s)).total_seconds(), 2)
    if wall_s is not None:
        out["outside_tasks"] = round(wall_s - in_tasks, 2)
    out["dbt_tasks"] = float(sum(1 for t in tasks if str(t["stage"]).startswith("dbt")))
    return out


_RUN_AUDIT_SQL = (
    "select task_id, started_at, ended_at, duration_seconds, status, try_number, rows_in, rows_out "
    "from ops.run_audit where dag_id = '{dag}' and as_of_date = '{day}' and run_id = "
    "(select max(run_id) from ops.run_audit where dag_id = '{dag}' and as_of_date = '{day}') "
    "order by started_at"
)


def run_audit_times(warehouse: str, duckdb_path: Path, postgres_url: str | None,
                    as_of_date: dt.date) -> list[dict[str, object]]:
    """Task times from the pipeline's own ``ops.run_audit`` (one row per task try), if it exists."""
    sql = _RUN_AUDIT_SQL.format(dag=DAG_ID, day=as_of_date.isoformat())
    try:
        if warehouse == "duckdb":
            import duckdb

            with duckdb.connect(str(duckdb_path), read_only=True) as con:
                rows = con.execute(sql).fetchall()
        else:
            import psycopg

            with psycopg.connect(str(postgres_url)) as con:
                rows = con.execute(sql).fetchall()  # type: ignore[arg-type]
    except Exception:  # no such table (older pipeline) or no warehouse: fall back to the Airflow DB
        return []
    return [
        {"task_id": t, "stage": stage_of(t), "start": str(s) if s else None, "end": str(e) if e else None,
         "seconds": round(float(d or 0.0), 2), "state": st, "tries": n, "rows_in": ri, "rows_out": ro}
        for t, s, e, d, st, n, ri, ro in rows
    ]


def task_at(tasks: list[dict[str, object]], moment: str) -> str | None:
    """The task that was running at ``moment`` ("YYYY-MM-DD HH:MM:SS", UTC), if any."""
    if not moment:
        return None
    when = dt.datetime.fromisoformat(moment)
    for task in tasks:
        start, end = _ts(str(task["start"] or "")), _ts(str(task["end"] or ""))
        if start and end and start.replace(tzinfo=None) <= when <= end.replace(tzinfo=None):
            return str(task["task_id"])
    return None


def with_rss(tasks: list[dict[str, object]], samples: tuple[tuple[str, float], ...]) -> list[dict[str, object]]:
    """Each task with the child's sampled RSS (MB) at its start, its highest during it, and at its end.

    The run is one process, so a task's start RSS is what the earlier tasks left behind: a task
    whose end stays far above its start kept its memory (or the allocator did).
    """
    points = [(dt.datetime.fromisoformat(at), mb) for at, mb in samples]
    out = []
    for task in tasks:
        start, end = _ts(str(task["start"] or "")), _ts(str(task["end"] or ""))
        if not (start and end and points):
            out.append(task)
            continue
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
        during = [mb for at, mb in points if start <= at <= end]
        before = [mb for at, mb in points if at <= start] or [points[0][1]]
        after = [mb for at, mb in points if at >= end] or [points[-1][1]]
        out.append({**task, "rss_start_mb": round(before[-1]), "rss_peak_mb": round(max(during or [before[-1]])),
                    "rss_end_mb": round(after[0])})
    return out
