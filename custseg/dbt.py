"""Run dbt in-process: the DAG's transform and assemble tasks (custseg/steps/transform.py), docs, the CLI, tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from custseg.config import DBT_PROJECT_DIR, Settings

if TYPE_CHECKING:
    from dbt.cli.main import dbtRunnerResult
    from dbt_common.events.base_types import EventMsg


class DbtError(RuntimeError):
    pass


#: The environment variables that carry a run's date into dbt (dbt_project/macros/as_of_date.sql). Not
#: --vars: a changed --vars value makes dbt re-parse the whole project (2-4 s, in the first dbt task
#: of each task group and in docs), while parsing reads neither variable, so a new date re-parses nothing.
AS_OF_DATE_ENV = "CUSTSEG_AS_OF_DATE"
SCORED_AT_ENV = "CUSTSEG_SCORED_AT"


def as_of_date_env(as_of_date: str, scored_at: str) -> dict[str, str]:
    """The environment of a dbt command for one run (the DAG passes Jinja templates of the dates)."""
    return {AS_OF_DATE_ENV: as_of_date, SCORED_AT_ENV: scored_at}


def dbt_run_env(as_of_date: dt.date) -> dict[str, str]:
    """:func:`as_of_date_env` of ``as_of_date``: scored_at is the end of that day (UTC)."""
    return as_of_date_env(as_of_date.isoformat(), f"{as_of_date + dt.timedelta(days=1)} 00:00:00")


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    run_env: dict[str, str] | None = None,
    *,
    variables: dict[str, str] | None = None,
    callbacks: Sequence[Callable[[EventMsg], None]] = (),
    check: bool = True,
) -> dbtRunnerResult:
    """Invoke a dbt command against the configured warehouse and return dbt's result.

    ``run_env`` (:func:`dbt_run_env`) is set in the environment for the command only; ``variables``
    become ``--vars`` (a changed ``--vars`` makes dbt re-parse the whole project: the nightly tasks pass
    none, and settings reach dbt through the environment); ``callbacks`` receive dbt's events. With
    ``check`` (the default) a failed command raises DbtError; without it the caller reads the result's
    per-node outcomes.
    """
    # imported here: dbt-core (3.3 s) (tests/test_architecture.py LAZY)
    from dbt.cli.main import dbtRunner

    settings.export_dbt_env()
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    cli = [
        *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", settings.dbt_target,
        # per data directory, never inside the project (Settings.dbt_target_dir)
        "--target-path", str(settings.dbt_target_dir),
        "--log-path", str(settings.data_dir / "logs" / "dbt"),
    ]
    if variables:
        cli += ["--vars", json.dumps(variables)]
    with _environment(run_env or {}):
        result = dbtRunner(callbacks=list(callbacks)).invoke(cli)
    if check and not result.success:
        raise DbtError(f"dbt {' '.join(args)} failed: {result.exception or 'see the dbt log above'}")
    return result


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def release_dbt_duckdb() -> None:
    """Close the DuckDB database that dbt-duckdb keeps open in this process after a dbt run.

    Under ``custseg run`` (``dag.test()``) every task runs in one process, and dbt-duckdb (whose
    ``keep_open`` defaults to true in 1.11) keeps its connection open after the dbt tasks end.
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
