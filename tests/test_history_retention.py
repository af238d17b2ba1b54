"""segment_history's retention (CUSTSEG_HISTORY_DAILY_DAYS, CUSTSEG_HISTORY_THINNING): every date of a recent
window, one date per week or month before it, applied by publish to the published and the build table in one
transaction; the migration of every date inside the window is what it was with the full history.

A synthetic history of 120 customers over ten weeks keeps this fast (no DAG run); the real segment_migration
model is built by dbt over it before and after the thinning."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from custseg.config import ConfigError, HistoryRetention, load_settings
from custseg.dbt import dbt_run_env, release_dbt_duckdb, run_dbt
from custseg.warehouse import connect

LATEST = dt.date(2026, 10, 31)  # a Saturday
DATES = [LATEST - dt.timedelta(days=n) for n in range(70, -1, -1)]
SEGMENTS = ("Champions", "Loyal", "At Risk", "Lost", None)
STAGES = ("active", "at_risk", "churned", "prospect")


def _history_rows() -> list[tuple]:
    rng = random.Random(11)
    rows = []
    for day in DATES:
        for n in range(120):
            if n >= 100 and day < DATES[30]:  # twenty customers arrive later
                continue
            rows.append((f"c{n:03d}", day, rng.choice(SEGMENTS), rng.choice(STAGES), round(rng.uniform(0, 500), 2)))
    return rows


def _create_history(wh, schema: str, rows: list[tuple]) -> None:
    wh.execute(f"create schema if not exists {schema}")
    wh.execute(f"drop table if exists {schema}.segment_history")
    wh.execute(f"create table {schema}.segment_history (customer_id text, as_of_date date, rfm_segment text, "
               "lifecycle_stage text, net_revenue_12m numeric(18, 2))")
    for start in range(0, len(rows), 2000):
        chunk = rows[start:start + 2000]
        wh.execute(f"insert into {schema}.segment_history values "
                   + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk)), [v for row in chunk for v in row])


def _expected_dates(daily_days: int, unit: str) -> set[dt.date]:
    """From the retention's definition: every date of the window; before it, the dates that are the latest
    of their ISO week or month (a week or month that ends inside the window keeps nothing older)."""
    cutoff = LATEST - dt.timedelta(days=daily_days)
    latest_of: dict[tuple, dt.date] = {}
    for day in DATES:
        key = tuple(day.isocalendar()[:2]) if unit == "weekly" else (day.year, day.month)
        latest_of[key] = max(latest_of.get(key, day), day)
    return {d for d in DATES if d >= cutoff} | {d for d in latest_of.values() if d < cutoff}


def _dates(wh, schema: str) -> set[dt.date]:
    return {row[0] for row in wh.fetchall(f"select distinct as_of_date from {schema}.segment_history")}


def _migration(settings) -> list[tuple]:
    run_dbt(settings, ["run", "--select", "segment_migration", "--full-refresh"], dbt_run_env(LATEST))
    release_dbt_duckdb()
    with connect(settings) as wh:
        return wh.fetchall("select as_of_date, comparison, compared_to_date, segment_type, from_segment, "
                           "to_segment, customers, net_revenue_12m from analytics_build.segment_migration "
                           "order by 1, 2, 3, 4, 5, 6")


def test_settings_check_the_retention_before_work_starts() -> None:
    assert load_settings({}).history_retention is None  # unset: every date is kept
    assert load_settings({"CUSTSEG_HISTORY_DAILY_DAYS": "400"}).history_retention == HistoryRetention(400, "month_end")
    assert load_settings({"CUSTSEG_HISTORY_DAILY_DAYS": "35", "CUSTSEG_HISTORY_THINNING": "weekly"}
                         ).history_retention == HistoryRetention(35, "weekly")
    for bad in ({"CUSTSEG_HISTORY_DAILY_DAYS": "7"}, {"CUSTSEG_HISTORY_DAILY_DAYS": "a year"},
                {"CUSTSEG_HISTORY_DAILY_DAYS": "30", "CUSTSEG_HISTORY_THINNING": "yearly; drop table x"}):
        with pytest.raises(ConfigError, match="CUSTSEG_HISTORY_"):
            load_settings(bad)


def test_publish_thins_both_histories_and_the_window_keeps_its_migration(tmp_path: Path) -> None:
    settings = load_settings({"CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
                              "CUSTSEG_HISTORY_DAILY_DAYS": "14", "CUSTSEG_HISTORY_THINNING": "weekly"})
    rows = _history_rows()
    with connect(settings) as wh:
        wh.bootstrap()
        _create_history(wh, "analytics_build", rows)
        _create_history(wh, "analytics", [r for r in rows if r[1] < LATEST])  # last night not published yet
        # the alias rows segment_migration reads (no merges here)
        wh.execute("create table analytics_build.customer_identity (customer_id text, source text, "
                   "source_customer_ref text, first_seen_date date)")
    full = _migration(settings)

    with connect(settings) as wh:
        counts = wh.publish(("segment_history",), LATEST, retention=settings.history_retention)
        assert counts == {"segment_history": 120}  # the night's rows
        expected = _expected_dates(14, "weekly")
        assert _dates(wh, "analytics") == _dates(wh, "analytics_build") == expected
        assert len(expected) == 15 + 8  # the window's days, and one Sunday (or the latest day) per earlier week
        assert all(d.isoweekday() == 7 for d in expected if d < LATEST - dt.timedelta(days=14))
        kept = wh.fetchall("select count(*) from analytics.segment_history")[0][0]
        assert kept == sum(1 for r in rows if r[1] in expected)
        # idempotent: the next publish of the same night removes nothing more
        assert wh.prune_history("analytics", "segment_history", settings.history_retention) == []
    thinned = _migration(settings)

    # Inside the window (a week-ago date still kept) every comparison is what the full history gave; before
    # it, 'previous_run' compares with the previous kept date instead.
    window = LATEST - dt.timedelta(days=14 - 7)
    assert [r for r in thinned if r[0] >= window] == [r for r in full if r[0] >= window]
    assert {r[1] for r in thinned if r[0] >= window} == {"previous_run", "week_ago"}
    assert [r for r in thinned if r[0] < window] != [r for r in full if r[0] < window]


def test_month_end_thinning_on_postgres(pg_database: str) -> None:
    settings = load_settings({"CUSTSEG_WAREHOUSE": "postgres", "CUSTSEG_POSTGRES_URL": pg_database})
    retention = HistoryRetention(daily_days=10, thinning="month_end")
    with connect(settings) as wh:
        _create_history(wh, "analytics", _history_rows())
        dropped = wh.prune_history("analytics", "segment_history", retention)
        expected = _expected_dates(10, "month_end")
        assert _dates(wh, "analytics") == expected
        assert sorted(set(DATES) - expected) == dropped
        # August's and September's last days, and every day from October 21 on (October ends in the window)
        assert min(d for d in expected if d.month == 10) == LATEST - dt.timedelta(days=10)
        assert {d for d in expected if d.month < 10} == {dt.date(2026, 8, 31), dt.date(2026, 9, 30)}
