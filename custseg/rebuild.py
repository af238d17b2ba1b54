"""`custseg rebuild`: recompute an existing warehouse from `raw`, history included.

Needed whenever published values change for past dates: a new hash key (CUSTSEG_HASH_KEY rotated,
so every customer_id and published reference changes), or a code change to ids or scores
(CHANGELOG.md says when an upgrade needs it). The result is what a fresh warehouse would publish
after nightly runs over the same dates with the current key and code:

1. the dates are the distinct `as_of_date`s of the published `segment_history` (plus those of an
   interrupted rebuild, kept in `ops.rebuild_dates`, whose history rows were already cleared);
2. the derived state is cleared in one transaction: the build schema (dbt's tables and its
   incremental state), the identity map and its state in `raw`, and the published history rows
   (`segment_history`, `segment_migration`); approved models are retired (status `retired`), since
   their training data hash holds the old ids and a fresh warehouse fits its own first model
   (`keep_models` scores with them instead);
3. the real `customer_segmentation` DAG runs for each date in order with the param `from_raw`: the
   ingest tasks read no landing file (the files may be gone; `raw` holds every row) and record a
   `from_raw` load in `ops.load_audit`; everything else (identity resolution, dbt, scoring, audit,
   publish) runs as on any night, and each date's publish replaces that date's history rows.

The run lock is held for the whole rebuild, so no nightly run interleaves. BI users see the history
fill up date by date while it runs: run it in a maintenance window. A failed date stops the rebuild;
`custseg rebuild` again starts over with the same dates.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from custseg.clock import utc_now
from custseg.config import PUBLISHED_BY_DATE, Settings
from custseg.ops.dag_runs import run_dag
from custseg.ops.locks import run_lock
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import qualified, quote_ident

#: the published dates of a rebuild under way: its history rows are cleared, so a rebuild that
#: failed half-way finds its dates here instead of in segment_history
PLAN_DDL = "create table if not exists ops.rebuild_dates (as_of_date date not null, planned_at timestamp not null)"
#: raw tables derived from the landed rows (custseg/steps/identity.py) that a rebuild recomputes
IDENTITY_TABLES = ("identity_map", "identity_state", "identity_phone_crm")
RETIRED = "retired"


class RebuildError(RuntimeError):
    """The rebuild cannot start or a date failed; the message says what to do."""


@dataclass(frozen=True)
class RebuildSummary:
    dates: list[dt.date]
    seconds: float
    models_retired: int


def _as_date(value: object) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value  # type: ignore[return-value]


def planned_dates(wh: Warehouse, settings: Settings) -> list[dt.date]:
    """The published history's dates, and those of an interrupted rebuild, in order."""
    wh.execute(PLAN_DDL)
    dates = {_as_date(d) for (d,) in wh.fetchall("select distinct as_of_date from ops.rebuild_dates")}
    if wh.table_exists(settings.publish_schema, "segment_history"):
        history = f"{qualified(settings.publish_schema, 'segment_history')}"
        dates |= {_as_date(d) for (d,) in wh.fetchall(f"select distinct as_of_date from {history}")}
    return sorted(dates)


def clear_derived_state(wh: Warehouse, settings: Settings, dates: list[dt.date], keep_models: bool) -> int:
    """Record the plan and clear what the runs recompute, in one transaction; returns models retired."""
    retired = 0
    with wh.transaction():
        wh.execute("delete from ops.rebuild_dates")
        now = utc_now()
        for day in dates:
            wh.execute("insert into ops.rebuild_dates (as_of_date, planned_at) values (%s, %s)", (day, now))
        # dbt's tables, the ML labels and dbt's incremental state (dbt_incremental_state): all rebuilt
        wh.execute(f"drop schema if exists {quote_ident(settings.build_schema)} cascade")
        wh.execute(f"create schema {quote_ident(settings.build_schema)}")
        for table in IDENTITY_TABLES:
            if wh.table_exists("raw", table):
                wh.execute(f"delete from raw.{quote_ident(table)}")
        for table in PUBLISHED_BY_DATE:
            if wh.table_exists(settings.publish_schema, table):
                wh.execute(f"delete from {qualified(settings.publish_schema, table)}")
        if not keep_models:
            # as in a fresh warehouse, the first date fits its own model; the old ones stay as history
            retired = int(wh.fetchall(
                "select count(*) from ml.model_runs where status is null or status = 'approved'")[0][0])
            wh.execute("update ml.model_runs set status = %s, decision_reason = %s "
                       "where status is null or status = 'approved'",
                       (RETIRED, f"retired by custseg rebuild at {now:%Y-%m-%d %H:%M:%S} UTC"))
    return retired


def rebuild(settings: Settings, *, keep_models: bool = False,
            run: Callable[[dt.date, dict], str] | None = None,
            echo: Callable[[str], None] = print) -> RebuildSummary:
    """Recompute every published date from `raw` with the current key and code (module docstring).

    `run` runs the DAG for a date with a conf (default: :func:`custseg.ops.dag_runs.run_dag`, the real
    DAG in-process); `echo` receives one line per date.
    """
    run = run or run_dag
    t0 = time.perf_counter()
    with run_lock(settings):
        # the current key goes into raw.pii_salt before anything is recomputed with it
        prepare_warehouse(settings)
        with connect(settings) as wh:
            dates = planned_dates(wh, settings)
            if not dates:
                raise RebuildError(f"nothing to rebuild: {settings.publish_schema}.segment_history holds no "
                                   "published date; run `custseg run --as-of DATE` first")
            retired = clear_derived_state(wh, settings, dates, keep_models)
        for day in dates:
            started = time.perf_counter()
            state = run(day, {"from_raw": True})
            echo(f"rebuilt as of {day}: {state} ({time.perf_counter() - started:.0f}s)")
            if state != "success":
                raise RebuildError(f"rebuild stopped: the run as of {day} ended {state}; see `custseg status`, "
                                   "fix the cause and run `custseg rebuild` again (it starts over with the same dates)")
        with connect(settings) as wh:
            wh.execute("delete from ops.rebuild_dates")
    return RebuildSummary(dates, time.perf_counter() - t0, retired)
