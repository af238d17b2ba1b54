"""Point-in-time history: running day 1, then day 2, then day 3 as the data lands equals
backfilling days 1-3 after everything has landed. Runs the pipeline's real steps (ingest, dbt,
ML scoring) without the Airflow scheduler, on DuckDB."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from custseg import pipeline
from custseg.config import load_settings
from custseg.dbt import dbt_vars, run_dbt
from custseg.warehouse import connect
from tests.conftest import E2E_END

DAYS = [E2E_END - dt.timedelta(days=2), E2E_END - dt.timedelta(days=1), E2E_END]


def _settings(root: Path, landing: Path):
    return load_settings({
        "CUSTSEG_DATA_DIR": str(root),
        "CUSTSEG_LANDING_DIR": str(landing),
        "CUSTSEG_DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "CUSTSEG_DOCS_DIR": str(root / "docs"),
    })


def _prepare(settings) -> None:
    pipeline.prepare_warehouse(settings)
    run_dbt(settings, ["seed"])


def _ingest(settings, day: dt.date, run_id: str) -> None:
    for source in pipeline.source_names(settings):
        pipeline.ingest(settings, source, day, run_id)


def _build(settings, day: dt.date, run_id: str) -> None:
    run_dbt(settings, ["run", "--exclude", "tag:scored"], dbt_vars(day))
    pipeline.score(settings, day, run_id)
    run_dbt(settings, ["run", "--select", "tag:scored"], dbt_vars(day))


def _land_until(source_landing: Path, target_landing: Path, day: dt.date) -> None:
    """Copy the landing files dated on or before `day`: what had arrived by then."""
    for path in source_landing.rglob("*.*"):
        if dt.date.fromisoformat(path.stem) <= day:
            dest = target_landing / path.relative_to(source_landing)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


INCREMENTAL_STAGING = ("stg_web__sessions", "stg_marketing__email_events", "stg_shop__orders", "stg_pos__sales",
                       "stg_crm__customers")


def _staging(settings) -> dict[str, list[tuple]]:
    with connect(settings) as wh:
        return {t: sorted(wh.fetchall(f"select * from analytics_build.{t}"), key=repr) for t in INCREMENTAL_STAGING}


def _history(settings) -> list[tuple]:
    with connect(settings) as wh:
        return wh.fetchall(
            "select customer_id, as_of_date, rfm_segment, lifecycle_stage, r_score, f_score, m_score, "
            "value_tier, cluster_id, churn_risk_band, round(churn_probability, 9), monetary, model_version "
            "from analytics_build.segment_history order by as_of_date, customer_id"
        )


@pytest.mark.e2e
def test_daily_runs_equal_a_backfill(demo_data, tmp_path: Path) -> None:
    # daily: each day runs when only the files landed by then exist
    daily_landing = tmp_path / "daily_landing"
    daily = _settings(tmp_path / "daily", daily_landing)
    _prepare(daily)
    for day in DAYS:
        _land_until(demo_data.landing_dir, daily_landing, day)
        _ingest(daily, day, f"daily_{day}")
        _build(daily, day, f"daily_{day}")

    # backfill: everything has landed (including days after DAYS[-1]'s successors), then days 1-3
    backfill = _settings(tmp_path / "backfill", demo_data.landing_dir)
    _prepare(backfill)
    _ingest(backfill, DAYS[-1], "backfill")
    for day in DAYS:
        _build(backfill, day, f"backfill_{day}")

    daily_rows, backfill_rows = _history(daily), _history(backfill)
    assert {row[1] for row in daily_rows} == set(DAYS)
    assert len(daily_rows) == len(backfill_rows) > 0
    assert daily_rows == backfill_rows

    with connect(backfill) as wh:
        moves = wh.fetchall(
            "select comparison, sum(customers) from analytics_build.segment_migration "
            "where as_of_date = %s and segment_type = 'rfm_segment' group by 1", (DAYS[-1],)
        )
    # day 3 compares with day 2 (previous run); there is no as-of date a week earlier
    assert dict(moves) == {"previous_run": len({r[0] for r in backfill_rows if r[1] == DAYS[-1]})}

    # The daily staging tables were extended night by night; a rebuild from every landed row
    # (a rerun of the date rebuilds) must hold exactly the same rows.
    extended = _staging(daily)
    assert all(extended.values())
    run_dbt(daily, ["run", "--select", "path:models/staging", "--exclude", "tag:scored"], dbt_vars(DAYS[-1]))
    assert _staging(daily) == extended

    # A late file for an old day, loaded after the nights that read that day, makes the next
    # night rebuild (extending would miss it): its row is there the next night.
    late = DAYS[0]
    with connect(daily) as wh:
        wh.execute("insert into raw.web_sessions (session_id, started_at, platform, _partition_date, _source_file, "
                   "_source_line, _run_id) values ('WS-LATE-FILE', %s, 'web', %s, 'late.jsonl', 1, 'late')",
                   (dt.datetime.combine(late, dt.time(9)), late))
        wh.execute("insert into ops.load_audit (run_id, logical_date, source, partition_date, source_file, rows_read, "
                   "rows_loaded, rows_quarantined, status, recorded_at) "
                   "values ('late', %s, 'web_sessions', %s, 'late.jsonl', 1, 1, 0, 'success', %s)",
                   (DAYS[-1], late, dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    run_dbt(daily, ["run", "--select", "stg_web__sessions"], dbt_vars(DAYS[-1] + dt.timedelta(days=1)))
    with connect(daily) as wh:
        assert wh.fetchall("select landed_date from analytics_build.stg_web__sessions "
                           "where session_id = 'WS-LATE-FILE'") == [(late,)]
