"""Run dbt in-process (outside Airflow: CLI, docs, tests). Inside the DAG, Cosmos runs it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence

from custseg.config import DBT_PROJECT_DIR, Settings

log = logging.getLogger(__name__)


class DbtError(RuntimeError):
    pass


def dbt_vars(as_of: dt.date) -> dict[str, str]:
    """The vars every run passes: the as-of date, and scored_at = the end of that day (UTC)."""
    return {"as_of_date": as_of.isoformat(), "scored_at": f"{as_of + dt.timedelta(days=1)} 00:00:00"}


def run_dbt(settings: Settings, args: Sequence[str], variables: dict[str, str] | None = None) -> None:
    """Invoke a dbt command against the configured warehouse; raise DbtError when it fails."""
    from dbt.cli.main import dbtRunner

    settings.export_dbt_env()
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    cli = [
        *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", settings.dbt_target,
    ]
    if variables:
        cli += ["--vars", json.dumps(variables)]
    result = dbtRunner().invoke(cli)
    if not result.success:
        raise DbtError(f"dbt {' '.join(args)} failed: {result.exception or 'see the dbt log above'}")


def release_dbt_duckdb() -> None:
    """Close the DuckDB database that dbt-duckdb keeps open in this process after a dbt run.

    Under ``custseg run`` (``dag.test()``) every task runs in one process, and dbt-duckdb (whose
    ``keep_open`` defaults to true in 1.11) keeps its connection open after Cosmos's dbt tasks end.
    The database instance, with DuckDB's buffer pool (up to ``CUSTSEG_DUCKDB_MEMORY_LIMIT``), then
    outlives them, and the score task's frames came on top of it. The next dbt task opens a new
    one. ``keep_open: false`` in profiles.yml would close it after every dbt connection instead,
    with a cold buffer cache for each model; closing it before the Python tasks that hold millions
    of rows is enough. A deployed Airflow runs each task in a process of its own and has nothing
    to release. The attributes are dbt-duckdb's own (pinned in pyproject.toml).
    """
    connections = sys.modules.get("dbt.adapters.duckdb.connections")
    if connections is None:  # dbt has not run in this process
        return
    manager = connections.DuckDBConnectionManager
    with manager._LOCK:
        if manager._ENV is not None:
            manager._ENV.close()
            manager._ENV = None
