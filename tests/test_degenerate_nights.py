"""Degenerate nights fail loudly and keep yesterday; models are not fitted from too little data.

* The gates of ``validate_raw``: a source's quarantined share of the rows a run read
  (``CUSTSEG_MAX_QUARANTINE_SHARE``), and no purchase visible as of the date (an empty or
  header-only export, an ``--as-of`` before all data). Unit-tested on a real DuckDB, then through
  two real DAG runs on a copy of the session's published end-to-end warehouse: both fail with a
  one-line reason in ``custseg run``, ``custseg status`` and ``ops.quality_results``, and every
  ``analytics`` table is byte-identical afterwards.
* The minimum before a model is fitted (``CUSTSEG_MIN_BUYERS`` / ``CUSTSEG_MIN_REPEAT_BUYERS``):
  the nightly score and the weekly retrain on seeded build schemas, and one real DAG run of a
  five-customer export that publishes its rule-based segments with null ML labels and the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from custseg.config import Settings, load_settings
from custseg.registry import APPROVED, NOT_FITTED, Registry
from custseg.sources import load_sources
from custseg.steps.quality import quarantine_share_reports, visible_purchases_report
from custseg.steps.retrain import retrain
from custseg.steps.score import FitMinimum, score
from custseg.warehouse import connect, quote_ident
from expectations.config import QualityConfig
from expectations.gates import quarantine_share_report
from ml.bundle import fit_models
from ml.clustering import PROSPECT_CLUSTER_NAME
from ml.scoring import score_with
from ml.synthetic import make_customer_base
from tests.conftest import E2E_END, run_cli, warehouse_env
from tests.test_ml_registry import seed_build

SHOP_HEADER = ("order_id,order_ts,customer_ref,customer_email,customer_phone,currency,order_total,discount_amount,"
               "item_count,category,order_status,device,promo_code")


# -- helpers -------------------------------------------------------------------------------------------
def land_day(template_landing: Path, landing: Path, day: dt.date, shop_lines: list[str]) -> None:
    """Every source's landing file for ``day``: the shop orders given, the other sources empty (a CSV
    header, an empty JSONL file, a Parquet file without rows), in the layouts of ``template_landing``."""
    templates: dict[Path, Path] = {}
    for path in sorted(template_landing.rglob("*.*")):
        templates.setdefault(path.parent.relative_to(template_landing), path)
    for folder, template in templates.items():
        target = landing / folder / f"{day.isoformat()}{template.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if template.suffix == ".parquet":
            pq.write_table(pq.read_table(template).slice(0, 0), target)
        elif template.suffix == ".jsonl":
            target.write_text("")
        else:
            target.write_text(template.read_text(encoding="utf-8").splitlines()[0] + "\n")
    (landing / "shop" / "orders" / f"{day.isoformat()}.csv").write_text("\n".join([SHOP_HEADER, *shop_lines]) + "\n")


def fingerprints(settings: Settings) -> dict[str, str]:
    """md5 of the sorted contents of every table in the published schema."""
    with connect(settings, read_only=True) as wh:
        tables = [r[0] for r in wh.fetchall(
            "select table_name from information_schema.tables where table_schema = %s order by 1",
            (settings.publish_schema,))]
        return {t: wh.table_checksum(settings.publish_schema, t) for t in tables}


def error_lines(stderr: str, command: str = "run") -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"custseg {command}: error:")]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def gate_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """An empty, bootstrapped warehouse of each kind (the gates' SQL runs on both)."""
    env = {"CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    if request.param == "postgres":
        env.update(CUSTSEG_WAREHOUSE="postgres", CUSTSEG_POSTGRES_URL=request.getfixturevalue("pg_database"))
    settings = load_settings(env)
    with connect(settings) as wh:
        wh.bootstrap()
    return settings


# -- the quarantine share ------------------------------------------------------------------------------
@pytest.mark.parametrize(("read", "quarantined", "fails"), [
    (0, 0, False), (40, 0, False), (20, 1, False),  # 5 % is allowed
    (3, 1, True),  # a small night is not exempt: 1 of 3 is 33 %
    (21, 2, True), (40, 37, True),
])
def test_the_quarantine_share_fails_above_the_limit_whatever_the_night_size(read: int, quarantined: int,
                                                                            fails: bool) -> None:
    report = quarantine_share_report("shop_orders", read, quarantined, 0.05, batch_name="2026-11-01", run_id="r1")
    assert report.success is not fails and bool(report.blocking_failures) is fails
    if fails:
        message = report.results[0].observed_value
        assert message.startswith(f"shop_orders: {quarantined} of {read} rows quarantined (")
        assert "> 5%): see raw.quarantine" in message and "run_id = 'r1'" in message
        assert "mapping" in message and "CUSTSEG_MAX_QUARANTINE_SHARE" in message and "\n" not in message


def test_the_share_is_this_runs_last_load_of_each_partition(gate_warehouse: Settings) -> None:
    settings = gate_warehouse
    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 10, 31)
    rows = [  # run, source, partition, read, quarantined, status, seconds
        ("r1", "shop_orders", d1, 40, 37, "success", 1),
        ("r1", "shop_orders", d1, 40, 37, "success", 2),  # a retry reloads the logical date: counted once
        ("r1", "shop_orders", d2, 10, 0, "success", 3),
        ("r1", "pos_sales", d1, 100, 1, "success", 4),  # 1 %
        ("r1", "web_sessions", d1, 0, 0, "skipped", 5),
        ("r0", "pos_sales", d2, 10, 10, "success", 6),  # another run's load
    ]
    with connect(settings) as wh:
        for run, source, day, read, bad, status, second in rows:
            wh.execute(
                "insert into ops.load_audit (run_id, as_of_date, source, partition_date, source_file, rows_read, "
                "rows_loaded, rows_quarantined, status, recorded_at) values (%s, %s, %s, %s, 'f', %s, %s, %s, %s, %s)",
                (run, d1, source, day, read, read - bad, bad, status, dt.datetime(2026, 11, 2, 0, 0, second)))
        reports = {r.suite_name: r for r in quarantine_share_reports(
            wh, ["shop_orders", "pos_sales", "web_sessions"], "r1", d1, QualityConfig())}
        lenient = quarantine_share_reports(wh, ["shop_orders"], "r1", d1,
                                           QualityConfig.from_env({"CUSTSEG_MAX_QUARANTINE_SHARE": "0.8"}))
    shop = reports["raw.shop_orders.quarantine_share"]
    assert not shop.success
    assert shop.results[0].observed_value.startswith("shop_orders: 37 of 50 rows quarantined (74.0% > 5%)")
    assert reports["raw.pos_sales.quarantine_share"].success
    assert reports["raw.web_sessions.quarantine_share"].results[0].observed_value.startswith(
        "web_sessions: 0 of 0 rows quarantined")
    assert lenient[0].success
    with pytest.raises(ValueError, match="CUSTSEG_MAX_QUARANTINE_SHARE"):
        QualityConfig.from_env({"CUSTSEG_MAX_QUARANTINE_SHARE": "5"})


# -- no purchase visible -------------------------------------------------------------------------------
def test_an_empty_night_fails_unless_earlier_purchases_are_visible(gate_warehouse: Settings) -> None:
    settings = gate_warehouse
    sources = load_sources(settings.sources_file)
    first, later = dt.date(2026, 6, 4), dt.date(2026, 11, 1)
    with connect(settings) as wh:
        before_any = visible_purchases_report(wh, sources, first)
        # a header-only first file: nothing; then orders of which one has no customer reference
        wh.execute("insert into raw.shop_orders (order_id, ordered_at, customer_ref, customer_email, currency, "
                   "order_total, _partition_date, _source_file, _source_line, _run_id) values "
                   "('SO-1', '2026-06-05 10:00:00', ' ', null, 'EUR', 10, '2026-06-05', 'f', 2, 'r'), "
                   "('SO-2', '2026-06-06 10:00:00', 'C-2', null, 'EUR', 12, '2026-06-06', 'f', 2, 'r')")
        anonymous_only = visible_purchases_report(wh, sources, dt.date(2026, 6, 5))
        as_of_before = visible_purchases_report(wh, sources, first)
        quiet_night = visible_purchases_report(wh, sources, later)  # nothing new since June: fine
    assert not before_any.success and not anonymous_only.success and not as_of_before.success
    assert quiet_night.success and quiet_night.suite_name == "raw.visible_purchases"
    message = as_of_before.results[0].observed_value
    assert message.startswith("as of 2026-06-04 no purchase is visible (0 purchase rows loaded up to this date")
    assert "the first later partition is dated 2026-06-05" in message and "--as-of before" in message
    assert "1 purchase rows loaded up to this date" in anonymous_only.results[0].observed_value
    assert "header only" in before_any.results[0].observed_value


# -- the minimum before a model is fitted ----------------------------------------------------------------
def test_below_the_minimum_the_bundle_has_no_models_and_buyers_no_cluster_name() -> None:
    data = make_customer_base(60, dt.date(2024, 6, 30), seed=5)
    bundle = fit_models(data.transactions, data.customers, dt.date(2024, 6, 30), min_buyers=200, min_repeat_buyers=50)
    assert not bundle.has_models
    assert bundle.metrics["not_fitted"].startswith("too few buyers to fit models: ")
    assert "the minimum is 200 buyers of whom 50 repeat buyers" in bundle.metrics["not_fitted"]
    labels = score_with(bundle, data.transactions, data.customers, dt.date(2024, 6, 30)).labels
    buyers = labels["customer_id"].isin(data.transactions["customer_id"].astype(str))
    assert buyers.any() and (~buyers).any()
    assert labels["cluster_id"].isna().all() and labels["churn_probability"].isna().all()
    assert labels.loc[buyers, "cluster_name"].isna().all()  # not "prospects": they bought
    assert (labels.loc[~buyers, "cluster_name"] == PROSPECT_CLUSTER_NAME).all()
    assert FitMinimum.from_env({}) == FitMinimum(200, 50)
    assert FitMinimum.from_env({"CUSTSEG_MIN_BUYERS": "10", "CUSTSEG_MIN_REPEAT_BUYERS": "0"}) == (
        FitMinimum(10, 0))


def test_nightly_and_weekly_fits_wait_for_the_minimum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_of_date, next_week = dt.date(2024, 6, 30), dt.date(2024, 7, 7)
    env = {"CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_MODEL_DIR": str(tmp_path / "models")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CUSTSEG_MIN_BUYERS", raising=False)
    monkeypatch.delenv("CUSTSEG_MIN_REPEAT_BUYERS", raising=False)
    settings = load_settings(env)
    data = make_customer_base(1500, as_of_date, seed=3)
    # the first weeks of a new shop: 150 of the customers have bought
    few = data.transactions[data.transactions["customer_id"].isin(data.customers["customer_id"][:150])]
    seed_build(settings, data, as_of_date, as_of_date, transactions=few)
    night = score(settings, as_of_date, "nightly-few")
    weekly = retrain(settings, as_of_date, "retrain-few")
    with connect(settings) as wh:
        registry = wh.query_df("select status, decision_reason, metrics, artifact_path, dag_id from ml.model_runs")
        scoring = json.loads(wh.fetchall("select metrics from ml.scoring_runs where run_id = 'nightly-few'")[0][0])
        labels = wh.query_df(f"select * from {quote_ident(settings.build_schema)}.ml_customer_labels")
        approved = Registry(wh).latest_approved(as_of_date)
    assert night["models_not_fitted"] == scoring["not_fitted"]
    assert scoring["not_fitted"].startswith("too few buyers to fit models: ") and scoring["n_buyers"] <= 150
    assert labels["cluster_id"].isna().all() and labels["predicted_clv_12m"].isna().all()
    # the weekly retrain refuses too, with the reason in the registry; nothing is approved
    assert weekly["decision"] == NOT_FITTED and "CUSTSEG_MIN_BUYERS" in weekly["reason"]
    assert list(registry["status"]) == [NOT_FITTED] and registry["dag_id"][0] == "retrain_models"
    assert registry["decision_reason"][0] == weekly["reason"] and registry["artifact_path"].isna().all()
    assert json.loads(registry["metrics"][0])["n_train_buyers"] <= 150
    assert approved is None
    # the first night with enough buyers fits and approves a model
    seed_build(settings, data, next_week, next_week)
    fitted = score(settings, next_week, "nightly-enough")
    with connect(settings) as wh:
        approved = Registry(wh).latest_approved(next_week)
        labels = wh.query_df(f"select * from {quote_ident(settings.build_schema)}.ml_customer_labels")
    assert "models_not_fitted" not in fitted
    assert approved is not None and approved.model_version == fitted["model_version"]
    assert labels["cluster_id"].notna().sum() > 1000


# -- real DAG runs -------------------------------------------------------------------------------------
QUARANTINE_NIGHT = E2E_END + dt.timedelta(days=1)
BEFORE_ALL_DATA = dt.date(2026, 6, 1)  # the demo data starts on E2E_END - 149 days = 2026-06-04


@pytest.fixture(scope="module")
def degenerate_nights(e2e_duckdb_env: dict[str, str], demo_data, airflow_home: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the session's published warehouse (as of E2E_END), then two degenerate nights on it:
    one whose shop orders all fail to parse, and one before all data with a header-only export."""
    root = tmp_path_factory.mktemp("degenerate")
    source = load_settings(e2e_duckdb_env)
    env = warehouse_env("duckdb", root, duckdb_path=root / "warehouse.duckdb", landing_dir=root / "landing")
    for suffix in ("", ".wal"):  # a WAL, if DuckDB left one, belongs to the file
        if Path(f"{source.duckdb_path}{suffix}").exists():
            shutil.copy2(f"{source.duckdb_path}{suffix}", f"{root / 'warehouse.duckdb'}{suffix}")
    settings = load_settings(env)
    # day-first dates where the mapping expects ISO 8601: every row is quarantined
    land_day(demo_data.landing_dir, root / "landing", QUARANTINE_NIGHT,
             [f"SO-Q{i},01/11/2026 10:{i:02d},CRM-{i:06d},,,EUR,{i}.50,0.00,1,Home,completed,web," for i in range(12)])
    land_day(demo_data.landing_dir, root / "landing", BEFORE_ALL_DATA, [])
    before = fingerprints(settings)
    quarantined = run_cli(["run", "--as-of", QUARANTINE_NIGHT.isoformat()], env, airflow_home)
    after_quarantine = fingerprints(settings)
    status_after_quarantine = run_cli(["status"], env, airflow_home)
    empty = run_cli(["run", "--as-of", BEFORE_ALL_DATA.isoformat()], env, airflow_home)
    after_empty = fingerprints(settings)
    status = run_cli(["status"], env, airflow_home)
    with connect(settings, read_only=True) as wh:
        quality = wh.query_df(
            "select run_id, as_of_date, suite_name, success, observed_value from ops.quality_results "
            "where suite_name in ('raw.shop_orders.quarantine_share', 'raw.visible_purchases') and not success "
            "order by recorded_at")
        published = wh.fetchall("select count(*) from ops.run_audit where task_id = 'publish' and status = 'success'")
        e2e_model = wh.fetchall("select status, metrics from ml.model_runs where dag_id = 'customer_segmentation'")
    return {"before": before, "after_quarantine": after_quarantine, "after_empty": after_empty,
            "quarantined": quarantined, "empty": empty, "status_after_quarantine": status_after_quarantine,
            "status": status, "quality": quality, "published": published[0][0], "e2e_model": e2e_model}


@pytest.mark.e2e
def test_a_mostly_quarantined_night_fails_before_publish_and_says_what_to_check(degenerate_nights: dict) -> None:
    result = degenerate_nights["quarantined"]
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode != 0, tail
    assert f"as of {QUARANTINE_NIGHT}: failed" in result.stdout, tail
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"custseg run: error: customer_segmentation as of {QUARANTINE_NIGHT} failed in task "
                               "validate_raw: shop_orders: 12 of 12 rows quarantined (100.0% > 5%): see raw.quarantine")
    assert f"rerun the date (custseg run --as-of {QUARANTINE_NIGHT})" in lines[0]
    assert degenerate_nights["after_quarantine"] == degenerate_nights["before"]
    status = degenerate_nights["status_after_quarantine"].stdout
    assert (f"latest failed run: customer_segmentation as of {QUARANTINE_NIGHT} failed in task validate_raw: "
            "shop_orders: 12 of 12 rows quarantined") in status
    assert "quality failures (latest run of each suite):\n  none" not in status
    assert "raw.shop_orders.quarantine_share" in status
    # the failed check with its band and what was observed, as quality.html shows it
    [gate] = [line for line in status.splitlines() if "raw.shop_orders.quarantine_share" in line]
    assert "max_share=0.05" in gate and ": observed " in gate, gate


@pytest.mark.e2e
def test_a_night_before_all_data_with_a_header_only_export_fails_and_keeps_yesterday(degenerate_nights: dict) -> None:
    result = degenerate_nights["empty"]
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode != 0, tail
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"custseg run: error: customer_segmentation as of {BEFORE_ALL_DATA} failed in task "
                               f"validate_raw: as of {BEFORE_ALL_DATA} no purchase is visible (0 purchase rows")
    assert "the first later partition is dated 2026-06-04" in lines[0] and "--as-of before" in lines[0]
    assert degenerate_nights["after_empty"] == degenerate_nights["before"]
    assert degenerate_nights["published"] == 1  # the good night only
    assert (f"latest failed run: customer_segmentation as of {BEFORE_ALL_DATA} failed in task validate_raw: "
            f"as of {BEFORE_ALL_DATA} no purchase is visible") in degenerate_nights["status"].stdout
    quality = degenerate_nights["quality"]
    assert list(quality["suite_name"]) == ["raw.shop_orders.quarantine_share", "raw.visible_purchases"]
    assert [pd.Timestamp(d).date() for d in quality["as_of_date"]] == [QUARANTINE_NIGHT, BEFORE_ALL_DATA]


@pytest.mark.e2e
def test_the_suites_e2e_data_is_above_the_minimum(degenerate_nights: dict) -> None:
    (status, metrics), = degenerate_nights["e2e_model"]
    metrics = json.loads(metrics)
    assert status == APPROVED
    assert metrics["n_train_buyers"] >= 200 and metrics["n_train_repeat_buyers"] >= 50, metrics


@pytest.mark.e2e
def test_a_five_customer_export_publishes_rule_segments_with_null_labels_and_the_reason(
        demo_data, airflow_home: Path, tmp_path: Path) -> None:
    day1, day2 = dt.date(2026, 6, 2), dt.date(2026, 6, 3)
    # five customers on day 1, three of them again on day 2
    land_day(demo_data.landing_dir, tmp_path / "landing", day1,
             [f"SO-{i},{day1}T10:{i:02d}:00+00:00,C-{i},,,EUR,{i * 10}.00,0.00,1,Home,completed,web,"
              for i in range(1, 6)])
    land_day(demo_data.landing_dir, tmp_path / "landing", day2,
             [f"SO-1{i},{day2}T11:{i:02d}:00+00:00,C-{i},,,EUR,{i * 7}.50,0.00,2,Garden,completed,app,"
              for i in (1, 2, 3)])
    env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "warehouse.duckdb", landing_dir=tmp_path / "landing")
    result = run_cli(["run", "--as-of", day2.isoformat()], env, airflow_home)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with connect(load_settings(env), read_only=True) as wh:
        segments = wh.query_df("select * from analytics.customer_segments")
        registered = wh.fetchall("select count(*) from ml.model_runs")[0][0]
        metrics = json.loads(wh.fetchall("select metrics from ml.scoring_runs")[0][0])
        score_rows = wh.fetchall("select rows_out from ops.run_audit where task_id = 'score' and status = 'success'")
    assert len(segments) == 5 and segments["rfm_segment"].notna().all() and segments["lifecycle_stage"].notna().all()
    for column in ("cluster_id", "cluster_name", "churn_probability", "churn_risk_band", "p_alive",
                   "expected_purchases_90d", "predicted_clv_12m"):
        assert segments[column].isna().all(), column
    assert segments["model_version"].notna().all()
    assert registered == 0, "no model from five customers"
    assert metrics["not_fitted"] == ("too few buyers to fit models: 5 buyers, 3 of them repeat buyers; "
                                     "the minimum is 200 buyers of whom 50 repeat buyers")
    assert score_rows == [(5,)]
