"""The nightly `dbt source freshness`: judged as of the run's date, recorded with the quality results, a warning
unless CUSTSEG_FRESHNESS_BLOCKING lists the source."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest

from custseg.catalogue import CHANNELS
from custseg.config import ConfigError, load_settings
from custseg.steps.transform import FRESHNESS_SUITE, StaleSources, check_source_freshness
from custseg.warehouse import connect
from tests.conftest import E2E_END

SOURCES = {channel.dbt_source for channel in CHANNELS.values()}


def _results(settings, run_id: str) -> dict[str, tuple[str, bool, str]]:
    with connect(settings) as wh:
        rows = wh.fetchall("select check_description, severity, success, observed_value from ops.quality_results "
                           "where run_id = %s and suite_name = %s", (run_id, FRESHNESS_SUITE))
    return {description.split(" ")[1].split(".")[0]: (severity, success, observed)
            for description, severity, success, observed in rows}


def test_every_night_records_each_sources_freshness(e2e_duckdb_env) -> None:
    settings = load_settings(e2e_duckdb_env)
    with connect(settings) as wh:
        (run_id,) = wh.fetchall("select max(run_id) from ops.quality_results where suite_name = %s",
                                (FRESHNESS_SUITE,))[0]
    results = _results(settings, run_id)
    assert set(results) == SOURCES
    assert all(severity == "warning" for severity, _, _ in results.values())
    # the shop and the tills land every day: their newest partition is the as-of date itself
    for source in ("shop", "pos"):
        assert results[source][1], results[source]
        assert results[source][2] == f"pass: newest partition {E2E_END}, 1 day(s) before the end of the as-of date"


@pytest.fixture
def warehouse_copy(e2e_duckdb_env, tmp_path: Path) -> dict[str, str]:
    """The shared night's warehouse, copied: these checks write their own quality rows."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(e2e_duckdb_env["CUSTSEG_DUCKDB_PATH"], copy)
    return {**e2e_duckdb_env, "CUSTSEG_DUCKDB_PATH": str(copy), "CUSTSEG_DATA_DIR": str(tmp_path / "data")}


def test_freshness_is_judged_as_of_the_date_not_the_wall_clock(warehouse_copy) -> None:
    settings = load_settings(warehouse_copy)
    # a backfill of an earlier date: the partitions landed after it do not count, and it is fresh
    check_source_freshness(settings, E2E_END - dt.timedelta(days=30), "backfill-night")
    backfill = _results(settings, "backfill-night")
    assert backfill["shop"] == ("warning", True, f"pass: newest partition {E2E_END - dt.timedelta(days=30)}, "
                                                  "1 day(s) before the end of the as-of date")
    # ten days after the last export: every source is past error_after (4 days), and only warns
    late = E2E_END + dt.timedelta(days=10)
    assert check_source_freshness(settings, late, "late-night") == {"error": len(SOURCES)}
    results = _results(settings, "late-night")
    assert results["shop"] == ("warning", False, f"error: newest partition {E2E_END}, 11 day(s) before the end of "
                                                 "the as-of date")


def test_a_blocking_source_past_error_after_stops_the_night(warehouse_copy) -> None:
    settings = dataclasses.replace(load_settings(warehouse_copy), freshness_blocking=("shop",))
    with pytest.raises(StaleSources) as stale:
        check_source_freshness(settings, E2E_END + dt.timedelta(days=10), "blocked-night")
    message = str(stale.value)
    assert "\n" not in message and message.startswith(f"source freshness as of {E2E_END + dt.timedelta(days=10)}: "
                                                       "source shop.shop_orders: error: newest partition")
    assert "pos" not in message  # the others were recorded as warnings, not raised
    results = _results(settings, "blocked-night")
    assert results["shop"][0] == "blocking" and results["pos"][0] == "warning"
    # recorded before it raised, so `custseg status` and the report show it
    assert not results["shop"][1]


def test_an_unknown_blocking_source_is_named() -> None:
    settings = load_settings({"CUSTSEG_FRESHNESS_BLOCKING": "shop, webshop"})
    assert settings.freshness_blocking == ("shop", "webshop")
    with pytest.raises(ConfigError, match=r"CUSTSEG_FRESHNESS_BLOCKING names unknown source\(s\) webshop; use 'all'"):
        check_source_freshness(settings, E2E_END, "any")
