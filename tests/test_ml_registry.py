"""Model registry on real warehouses: the nightly score task bootstraps, registers and reuses the
approved model; artifacts load from the directory or the warehouse copy; drift is recorded; the
retraining gate approves or rejects with a reason. DuckDB always, PostgreSQL when available.

The build schema's two input marts are written from ``ml.synthetic`` data (the dbt models that
normally build them are tested elsewhere), so this runs in seconds per step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from custseg.config import Settings, load_settings
from custseg.registry import APPROVED, REJECTED, Registry
from custseg.steps.retrain import retrain
from custseg.steps.score import score
from custseg.warehouse import connect
from ml.drift import PSI_WARN
from ml.features import SNAPSHOT_FEATURES
from ml.synthetic import SyntheticData, make_customer_base

AS_OF = dt.date(2024, 6, 30)
NEXT_WEEK = AS_OF + dt.timedelta(days=7)


def seed_build(settings: Settings, data: SyntheticData, upto: dt.date, as_of_date: dt.date,
               transactions: pd.DataFrame | None = None) -> None:
    """(Re)create build.fct_purchases / fct_customer_features (and an empty engagement snapshot table)
    as the nightly dbt run would for ``as_of_date``."""
    tx = (data.transactions if transactions is None else transactions).copy()
    tx = tx[tx["order_date"] <= pd.Timestamp(upto)].reset_index(drop=True)
    purchases = pd.DataFrame({
        "purchase_id": [f"p{i:08d}" for i in range(len(tx))],
        "customer_id": tx["customer_id"].astype(str),
        "purchase_date": tx["order_date"].dt.date,
        "net_amount": tx["net_amount"].astype(float),
        "discount_amount": tx["discount_amount"].astype(float),
        "sales_channel": tx["channel"].astype(str),
        "category": tx["category"].astype(str),
        "is_refund": False,
    })
    features = data.customers.assign(as_of_date=as_of_date)
    build = settings.build_schema
    with connect(settings) as wh:
        wh.bootstrap()
        wh.execute(f"drop table if exists {build}.fct_purchases")
        wh.execute(f"create table {build}.fct_purchases (purchase_id text, customer_id text, purchase_date date, "
                   "net_amount numeric(18, 2), discount_amount numeric(18, 2), sales_channel text, category text, "
                   "is_refund boolean)")
        wh.write_arrow(build, "fct_purchases", pa.Table.from_pandas(purchases, preserve_index=False))
        wh.execute(f"drop table if exists {build}.fct_customer_features")
        wh.execute(f"create table {build}.fct_customer_features (customer_id text, as_of_date date, "
                   "email_open_rate double precision, email_click_rate double precision, web_sessions_90d integer)")
        wh.write_arrow(build, "fct_customer_features", pa.Table.from_pandas(
            features.astype({"web_sessions_90d": "int32"}), preserve_index=False))
        # no engagement snapshot here (the synthetic base has none): the churn model is purchase-only
        wh.execute(f"drop table if exists {build}.fct_customer_engagement_snapshots")
        wh.execute(f"create table {build}.fct_customer_engagement_snapshots (customer_id text, snapshot_date date, "
                   + ", ".join(f"{c} double precision" for c in SNAPSHOT_FEATURES) + ")")


def registry_rows(settings: Settings) -> pd.DataFrame:
    with connect(settings) as wh:
        return wh.query_df("select * from ml.model_runs order by recorded_at")


def labels(settings: Settings) -> pd.DataFrame:
    with connect(settings) as wh:
        return wh.query_df(f"select * from {settings.build_schema}.ml_customer_labels order by customer_id")


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return make_customer_base(1500, AS_OF, seed=3)


@pytest.fixture(scope="module")
def duck(data: SyntheticData, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two nightly score runs on DuckDB: the first bootstraps the registry, the second reuses it."""
    root = tmp_path_factory.mktemp("registry_duckdb")
    env = {"CUSTSEG_DATA_DIR": str(root), "CUSTSEG_MODEL_DIR": str(root / "models")}
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: monkeypatch itself is per test
        for key, value in env.items():
            patch.setenv(key, value)
        settings = load_settings(env)
        seed_build(settings, data, AS_OF, AS_OF)
        first = score(settings, AS_OF, "nightly-1")
        first_rows = registry_rows(settings)
        first_labels = labels(settings)
        seed_build(settings, data, NEXT_WEEK, NEXT_WEEK)
        second = score(settings, NEXT_WEEK, "nightly-2")
        yield {"settings": settings, "root": root, "first": first, "second": second,
               "first_rows": first_rows, "first_labels": first_labels, "second_labels": labels(settings)}


def test_first_night_fits_registers_and_approves(duck: dict) -> None:
    rows = duck["first_rows"]
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["status"] == APPROVED and row["dag_id"] == "customer_segmentation"
    assert row["decision_reason"].startswith("bootstrap: no approved model")
    assert pd.Timestamp(row["as_of_date"]).date() == AS_OF
    assert pd.Timestamp(row["training_window_end"]).date() == AS_OF
    assert pd.Timestamp(row["training_window_start"]).date() < AS_OF
    assert len(row["training_data_hash"]) == 64
    params = json.loads(row["params"])
    clv = params["clv"]
    assert all(clv[k] is not None and clv[k] > 0 for k in ("r", "alpha", "a", "b", "p", "q", "v")), clv
    assert params["discount_rate_annual"] == 0.10 and params["horizon_days"] == 90
    metrics = json.loads(row["metrics"])
    assert set(metrics["churn_baselines"]) == {"recency_days", "bgnbd_expected_purchases"}
    assert -1 <= metrics["silhouette"] <= 1
    libs = json.loads(row["library_versions"])
    assert {"scikit-learn", "pymc-marketing", "python"} <= set(libs)
    artifact = Path(row["artifact_path"])
    assert artifact.is_relative_to(duck["root"] / "models")  # CUSTSEG_MODEL_DIR
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == row["artifact_sha256"]
    assert json.loads((artifact.parent / "params.json").read_text())["clv"] == clv
    assert (duck["first_labels"]["model_version"] == row["model_version"]).all()
    assert duck["first"]["model_version"] == row["model_version"]


def test_next_night_scores_with_the_approved_model(duck: dict) -> None:
    settings = duck["settings"]
    rows = registry_rows(settings)
    assert len(rows) == 1, "a nightly run with an approved model must not fit a new one"
    version = rows.iloc[0]["model_version"]
    assert duck["second"]["model_version"] == version
    assert duck["second"]["model_trained_as_of"] == AS_OF.isoformat()
    assert (duck["second_labels"]["model_version"] == version).all()
    with connect(settings) as wh:
        runs = wh.query_df("select * from ml.scoring_runs order by as_of_date")
        drift = wh.query_df("select * from ml.feature_drift order by as_of_date, feature")
    assert [pd.Timestamp(d).date() for d in runs["as_of_date"]] == [AS_OF, NEXT_WEEK]
    assert (runs["model_version"] == version).all()
    first = drift[pd.to_datetime(drift["as_of_date"]).dt.date == AS_OF].set_index("feature")
    later = drift[pd.to_datetime(drift["as_of_date"]).dt.date == NEXT_WEEK].set_index("feature")
    assert {"recency_days", "frequency", "monetary", "discount_share"} <= set(first.index)
    assert (first["psi"] < 1e-9).all(), "training data vs itself has no drift"
    assert (later["psi"] > 0).any() and (later["warn_threshold"] == PSI_WARN).all()
    assert set(later["status"]) <= {"stable", "moderate", "warn"}


def test_rerun_without_the_artifact_file_and_with_future_rows_is_identical(duck: dict, data: SyntheticData) -> None:
    # A worker without the shared model directory loads the warehouse copy; rows dated after the
    # as-of date (late loads, or a rerun of an old date) are ignored: the labels do not change.
    settings = duck["settings"]
    row = registry_rows(settings).iloc[0]
    Path(row["artifact_path"]).unlink()
    seed_build(settings, data, NEXT_WEEK + dt.timedelta(days=60), NEXT_WEEK)
    try:
        score(settings, NEXT_WEEK, "nightly-2-rerun")
        pd.testing.assert_frame_equal(labels(settings), duck["second_labels"])
    finally:
        seed_build(settings, data, NEXT_WEEK, NEXT_WEEK)


def test_retrain_approves_a_comparable_model_and_rejects_a_broken_one(duck: dict, data: SyntheticData) -> None:
    settings = duck["settings"]
    current = registry_rows(settings).iloc[0]["model_version"]
    # Same data a week later: comparable metrics, approved, ids aligned to the current model.
    ok = retrain(settings, NEXT_WEEK, "retrain-ok")
    assert ok["decision"] == APPROVED, ok
    assert ok["current"] == current
    # A broken feed: the last 90 days of purchases were attributed to random customers, so the
    # churn labels are noise and the candidate's churn metrics collapse.
    tx = data.transactions.copy()
    recent = tx["order_date"] > pd.Timestamp(NEXT_WEEK - dt.timedelta(days=90))
    rng = np.random.default_rng(0)
    tx.loc[recent, "customer_id"] = rng.choice(tx["customer_id"].unique(), size=int(recent.sum()))
    seed_build(settings, data, NEXT_WEEK, NEXT_WEEK, transactions=tx)
    bad = retrain(settings, NEXT_WEEK, "retrain-bad")
    assert bad["decision"] == REJECTED, bad
    assert "churn.roc_auc" in bad["reason"]
    rows = registry_rows(settings).set_index("run_id")
    assert rows.at["retrain-bad", "status"] == REJECTED
    assert rows.at["retrain-bad", "decision_reason"] == bad["reason"]
    with connect(settings) as wh:
        latest = Registry(wh).latest_approved(NEXT_WEEK)
    assert latest is not None and latest.model_version == ok["candidate"], "the rejected model must not score"
    seed_build(settings, data, NEXT_WEEK, NEXT_WEEK)


def test_retrain_refuses_a_stale_build(duck: dict) -> None:
    with pytest.raises(RuntimeError, match="run the nightly"):
        retrain(duck["settings"], NEXT_WEEK + dt.timedelta(days=7), "retrain-stale")


def test_labels_that_fail_their_checks_replace_nothing_and_scoring_in_chunks_changes_no_label(
        duck: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from expectations import suites
    from expectations.report import QualityGateError

    whole = duck["settings"]  # ~1,500 customers: one chunk
    score(whole, NEXT_WEEK, "nightly-whole")
    before = labels(whole)
    chunked = dataclasses.replace(whole, score_chunk_customers=500)
    real = suites.ml_labels_suite()
    # a check no label can pass: the gate must fail after every chunk was scored and staged
    failing = suites.Suite(real.name, (*real.checks, suites.between("churn_probability", 2, 3)))
    monkeypatch.setattr(suites, "ml_labels_suite", lambda: failing)
    with pytest.raises(QualityGateError):
        score(chunked, NEXT_WEEK, "nightly-fails")
    pd.testing.assert_frame_equal(labels(whole), before)
    with connect(whole) as wh:
        assert not wh.table_exists(whole.build_schema, "ml_customer_labels_scoring")
        failed = wh.fetchall("select expectation, column_name from ops.quality_results "
                             "where run_id = 'nightly-fails' and not success")
    assert failed == [("expect_column_values_to_be_between", "churn_probability")]  # recorded, then raised
    monkeypatch.undo()
    result = score(chunked, NEXT_WEEK, "nightly-chunked")
    pd.testing.assert_frame_equal(labels(whole), before)  # three chunks, the labels of one pass
    assert result["customers"] == len(before)
    with connect(whole) as wh:
        metrics = json.loads(wh.fetchall("select metrics from ml.scoring_runs where run_id = 'nightly-chunked'")[0][0])
    assert metrics["scored_in_chunks"] == 3


@pytest.mark.postgres
def test_postgres_registry_matches_duckdb(pg_database: str, data: SyntheticData, duck: dict, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CUSTSEG_WAREHOUSE": "postgres", "CUSTSEG_POSTGRES_URL": pg_database,
           "CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_MODEL_DIR": str(tmp_path / "models")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(env)
    seed_build(settings, data, AS_OF, AS_OF)
    first = score(settings, AS_OF, "pg-1")
    # The version hashes the data, settings and libraries: identical on both engines.
    assert first["model_version"] == duck["first"]["model_version"]
    pd.testing.assert_frame_equal(labels(settings), duck["first_labels"], check_dtype=False)
    row = registry_rows(settings).iloc[0]
    Path(row["artifact_path"]).unlink()  # load from the bytea copy
    seed_build(settings, data, NEXT_WEEK, NEXT_WEEK)
    second = score(settings, NEXT_WEEK, "pg-2")
    assert second["model_version"] == first["model_version"]
    assert len(registry_rows(settings)) == 1
    with connect(settings) as wh:
        assert wh.fetchall("select count(*) from ml.feature_drift where as_of_date = %s", (NEXT_WEEK,))[0][0] > 5
