"""Run dbt in-process (outside Airflow: CLI, docs, tests). Inside the DAG, Cosmos runs it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
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
