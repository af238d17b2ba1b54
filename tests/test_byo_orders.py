"""Bring your own orders: `custseg run --orders PATH --as-of D` on a plain order export.

The split into daily landing files is tested directly (fast); one real DAG run on DuckDB checks
the whole path, including that rows after --as-of are ignored and bad rows are quarantined.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from custseg.byo import ByoError, ensure_split, normalise_options, prepare_byo_orders, run_settings
from custseg.config import PROJECT_ROOT, load_settings
from custseg.warehouse import connect
from tests.conftest import run_cli, warehouse_env

EXAMPLE = PROJECT_ROOT / "docs" / "examples" / "orders.csv"
CDNOW = PROJECT_ROOT / "tests" / "fixtures" / "cdnow" / "CDNOW_sample.txt"
AS_OF = dt.date(2026, 6, 30)
DEFAULTS = {"columns": {}, "delimiter": ",", "names": None, "date_format": None, "currency": "EUR"}


def test_example_file_is_split_by_order_date_up_to_as_of(tmp_path: Path) -> None:
    info = prepare_byo_orders(EXAMPLE, AS_OF, tmp_path, DEFAULTS)
    files = sorted(p.name for p in (tmp_path / "landing" / "shop" / "orders").glob("*.csv"))
    # 13 rows: one after the as-of date is not written; the unparseable date goes to the as-of
    # partition with its raw value, where ingestion quarantines it with a reason
    assert (info["rows"], info["after_as_of"]) == (12, 1)
    assert files[0] == "2026-01-05.csv" and files[-1] == "2026-06-30.csv" and len(files) == 12
    assert "2026-07-01.csv" not in files
    assert "A-1012,not a date,C-7" in (tmp_path / "landing" / "shop" / "orders" / "2026-06-30.csv").read_text()
    assert info["columns"]["customer"] == "customer" and info["columns"]["ordered_at"] == "order_date"


def test_cdnow_whitespace_file_without_header(tmp_path: Path) -> None:
    options = {**DEFAULTS, "delimiter": "whitespace", "names": ["customer", "sample_id", "date", "cds", "dollars"],
               "date_format": "%Y%m%d", "currency": "USD"}
    info = prepare_byo_orders(CDNOW, dt.date(1997, 9, 30), tmp_path, options)
    assert info["rows"] + info["after_as_of"] == 6919
    first = (tmp_path / "landing" / "shop" / "orders" / "1997-01-01.csv").read_text().splitlines()[1]
    assert first == "L000000001,1997-01-01T00:00:00Z,00004,,,USD,29.33,,2,,completed,web,"


def test_missing_required_column_names_the_flag(tmp_path: Path) -> None:
    bad = tmp_path / "o.csv"
    bad.write_text("id,when,total\n1,2026-01-01,5\n")
    with pytest.raises(ByoError, match=r"no column for customer; name it with --customer"):
        prepare_byo_orders(bad, AS_OF, tmp_path / "w", DEFAULTS)


def test_split_is_reused_for_a_range_and_bad_dates_stay_where_first_quarantined(tmp_path: Path) -> None:
    options = normalise_options({})
    first = ensure_split(EXAMPLE, dt.date(2026, 6, 29), tmp_path, options)
    again = ensure_split(EXAMPLE, dt.date(2026, 6, 20), tmp_path, options)  # covered: nothing rewritten
    later = ensure_split(EXAMPLE, AS_OF, tmp_path, options)  # a later date: split again
    orders = tmp_path / "landing" / "shop" / "orders"
    assert (first["reused"], again["reused"], later["reused"]) == (False, True, False)
    assert first["rows"] == later["rows"] == 12  # 11 dated rows up to June plus the unparseable one
    # the unparseable row stays in 2026-06-29's partition (already loaded and quarantined there)
    # instead of moving to 2026-06-30's, where it would be read and counted a second time
    assert "not a date" in (orders / "2026-06-29.csv").read_text()
    assert "not a date" not in (orders / "2026-06-30.csv").read_text()
    # other options are another split
    assert ensure_split(EXAMPLE, AS_OF, tmp_path, normalise_options({"currency": "usd"}))["reused"] is False


def test_options_are_checked_and_runs_without_an_export_keep_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ByoError, match=r"unknown key\(s\) delimeter"):
        normalise_options({"delimeter": ";"})
    with pytest.raises(ByoError, match=r"unknown column field\(s\) client"):
        normalise_options({"columns": {"client": "c"}})
    assert normalise_options({"currency": "usd"})["reporting_currency"] == "USD"
    assert normalise_options({"currency": "usd", "reporting_currency": "eur"})["reporting_currency"] == "EUR"
    settings = load_settings({"CUSTSEG_DATA_DIR": str(tmp_path)})
    assert run_settings(settings, {"orders": None}) is settings
    byo_run = run_settings(settings, {"orders": "orders.csv"})
    work_dir = tmp_path / "byo"
    assert (byo_run.landing_dir, byo_run.sources_file) == (work_dir / "landing", work_dir / "sources.yml")
    assert byo_run.duckdb_path == settings.duckdb_path


@pytest.mark.e2e
def test_dag_params_run_the_orders_end_to_end(airflow_home, session_dir: Path) -> None:
    """The same path through the DAG's params, triggered by Airflow's own CLI (what a scheduler user does).

    (`custseg run --orders` passes exactly these params; the CDNOW test below goes through it.)
    """
    data_dir = session_dir / "byo_run"
    env = warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb")
    conf = {"orders": str(EXAMPLE), "orders_options": {"columns": {"customer": "customer"}, "currency": "EUR"}}
    result = run_cli(["dags", "test", "customer_segmentation", AS_OF.isoformat(), "--conf", json.dumps(conf)],
                     env, airflow_home, program="airflow")
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    with connect(load_settings(env)) as wh:
        skipped = dict(wh.fetchall("select source, error from ops.load_audit where status = 'skipped'"))
        published = wh.fetchall("select count(*) from ops.run_audit where task_id = 'publish' and status = 'success'")
    # only the export is declared in this run: the five other channels record a skipped load
    assert set(skipped) == {"crm_customers", "pos_sales", "web_sessions", "email_events", "support_tickets"}
    assert all("bring-your-own-orders run" in reason for reason in skipped.values())
    assert published[0][0] == 1, tail
    assert (data_dir / "byo" / "landing" / "shop" / "orders" / "2026-06-30.csv").exists()
    with connect(load_settings(env)) as wh:
        segments = wh.query_df("select * from analytics.customer_segments order by customer_id")
        quarantine = dict(wh.fetchall("select raw_record, reason from raw.quarantine"))
        refs = dict(wh.fetchall("select source_customer_ref, customer_id from analytics.customer_identity "
                                "where source = 'crm'"))
        latest = wh.fetchall("select max(ordered_at) from raw.shop_orders")[0][0]
    # C-1..C-7 appear; C-6's only order is negative and C-7's date unparseable: both quarantined
    assert set(refs) == {"C-1", "C-2", "C-3", "C-4", "C-5"}
    assert len(segments) == 5 and segments["customer_id"].is_unique
    assert sorted(quarantine.values()) == ["order_total below 0: -5.00", "unparseable ordered_at: not a date"]
    # the order dated after --as-of (2026-07-01, 75.00) was ignored everywhere
    assert latest < dt.datetime(2026, 7, 1)
    c1 = segments.set_index("customer_id").loc[refs["C-1"]]
    assert float(c1["monetary"]) == pytest.approx(49.90 + 120.00 + 22.10)


@pytest.mark.e2e
def test_cdnow_through_the_orders_entry_point_reproduces_published_clv(airflow_home, session_dir: Path) -> None:
    """The real pipeline path on real data: CDNOW as of 1997-09-30 through `custseg run --orders`.

    The registered CLV parameters must reproduce Fader, Hardie & Lee (2005) and Fader & Hardie
    (2013) to two significant digits: same-day purchases counted once, weeks, amounts in USD
    (the run reports in the export's own currency, so Gamma-Gamma's scale parameter is in dollars).
    """
    from tests.test_ml_clv import PUBLISHED, _same_to_two_significant_digits

    data_dir = session_dir / "byo_cdnow"
    env = warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb")
    as_of = dt.date(1997, 9, 30)
    result = run_cli(["run", "--orders", str(CDNOW), "--as-of", as_of.isoformat(), "--delimiter", "whitespace",
                      "--names", "customer,sample_id,order_date,cds,amount", "--date-format", "%Y%m%d",
                      "--items", "cds", "--currency", "USD"], env, airflow_home)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert f"as of {as_of}: success" in result.stdout, tail
    assert "4,960 rows up to 1997-09-30" in result.stdout and "1,959 rows after 1997-09-30 ignored" in result.stdout
    with connect(load_settings(env)) as wh:
        runs = wh.query_df("select params, metrics, training_window_start, training_window_end, status "
                           "from ml.model_runs")
        segments = wh.fetchall("select count(*), count(distinct customer_id), max(as_of_date), "
                               "sum(monetary) from analytics.customer_segments")[0]
        raw_sum = wh.fetchall("select sum(cast(order_total as double)) from raw.shop_orders")[0][0]
    assert len(runs) == 1 and runs["status"][0] == "approved"
    assert (runs["training_window_start"][0].date(), runs["training_window_end"][0].date()) == (
        dt.date(1997, 1, 1), as_of)
    params, metrics = (json.loads(v) if isinstance(v, str) else v for v in (runs["params"][0], runs["metrics"][0]))
    assert params["clv_time_unit"] == "weeks"
    for name, expected in PUBLISHED.items():
        assert _same_to_two_significant_digits(params["clv"][name], expected), (name, params["clv"][name])
    # every CDNOW customer bought in 1997 Q1, so all 2,357 are scored as of 1997-09-30, and their
    # lifetime revenue is the export's dollars up to that date, unconverted
    assert segments[:3] == (2357, 2357, as_of)
    assert float(segments[3]) == pytest.approx(raw_sum, abs=0.01)
    # the same run measured churn against both baselines on the same customers
    assert metrics["churn"]["n_customers"] == 2357
    assert set(metrics["churn_baselines"]) == {"recency_days", "bgnbd_expected_purchases"}
