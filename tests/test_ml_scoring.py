"""End-to-end scoring: one label row per customer, prospects, determinism, model_version."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest
from sklearn.metrics import adjusted_rand_score

from ml.churn import RISK_BANDS
from ml.clustering import PROSPECT_CLUSTER_NAME
from ml.scoring import LABEL_COLUMNS, ChunkScorer, ScoringResult, score_customers, score_with
from ml.synthetic import SyntheticData, make_customer_base

AS_OF = dt.date(2024, 6, 30)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return make_customer_base(500, AS_OF, seed=0)


@pytest.fixture(scope="module")
def result(data: SyntheticData) -> ScoringResult:
    return score_customers(data.transactions, data.customers, AS_OF, random_state=0)


def test_one_row_per_customer_with_the_contract_columns(result: ScoringResult, data: SyntheticData) -> None:
    labels = result.labels
    assert list(labels.columns) == list(LABEL_COLUMNS)
    assert list(labels["customer_id"]) == list(data.customers["customer_id"])
    assert str(labels["cluster_id"].dtype) == "Int64"


def test_prospects_are_labelled_as_such(result: ScoringResult, data: SyntheticData) -> None:
    labels = result.labels.set_index("customer_id")
    truth = data.truth.set_index("customer_id")
    # Prospects: never bought, or bought only after as_of_date.
    first = truth["first_date"]
    is_prospect = first.isna() | (first > pd.Timestamp(AS_OF))
    prospects = labels[is_prospect.loc[labels.index].to_numpy()]
    buyers = labels[~is_prospect.loc[labels.index].to_numpy()]
    assert len(prospects) > 0 and len(buyers) > 0
    assert prospects["cluster_id"].isna().all()
    assert (prospects["cluster_name"] == PROSPECT_CLUSTER_NAME).all()
    assert prospects["churn_risk_band"].map(lambda v: v is None).all()
    for col in ("churn_probability", "p_alive", "expected_purchases_90d", "predicted_clv_12m"):
        assert prospects[col].isna().all(), col
        assert buyers[col].notna().all(), col
    assert buyers["cluster_id"].notna().all()
    assert buyers["churn_probability"].between(0, 1).all()
    assert buyers["p_alive"].between(0, 1).all()
    assert (buyers["expected_purchases_90d"] >= 0).all()
    assert (buyers["predicted_clv_12m"] >= 0).all()
    assert set(buyers["churn_risk_band"]) <= {b[0] for b in RISK_BANDS}
    assert result.metrics["n_prospects"] == len(prospects)


def test_segments_and_scores_make_sense(result: ScoringResult, data: SyntheticData) -> None:
    labels = result.labels.set_index("customer_id")
    buyers = labels[labels["cluster_id"].notna()]
    truth = data.truth.set_index("customer_id").loc[buyers.index]
    assert adjusted_rand_score(truth["type_id"], buyers["cluster_id"].astype(int)) > 0.6
    # Planted high spenders have a higher predicted value than planted one-timers.
    by_type = buyers.groupby(truth["type_name"])["predicted_clv_12m"].median()
    assert by_type["frequent omnichannel high spenders"] > 10 * by_type["discount-driven online one-timers"]
    profiles = result.cluster_profiles
    assert profiles["cluster_name"].is_unique
    assert profiles["customers"].sum() == len(buyers)
    names = dict(zip(profiles["cluster_id"], profiles["cluster_name"], strict=True))
    assert all(names[int(c)] == n for c, n in zip(buyers["cluster_id"], buyers["cluster_name"], strict=True))
    assert list(result.centroids.index) == list(profiles["cluster_id"])


def test_metrics_are_complete(result: ScoringResult) -> None:
    m = result.metrics
    assert m["k"] == len(result.cluster_profiles)
    assert -1 <= m["silhouette"] <= 1
    assert m["churn"]["method"] == "logistic_regression"
    assert "bgnbd_p_no_purchase" in m["churn"]["features"]
    assert set(m["churn_baselines"]) == {"recency_days", "bgnbd_expected_purchases"}
    assert {"roc_auc", "pr_auc", "brier", "top_decile_lift", "n_train", "n_holdout", "base_rate"} <= set(m["churn"])
    assert set(m["churn_baseline"]) >= {"roc_auc", "pr_auc", "brier", "top_decile_lift"}
    clv = m["clv"]
    assert clv["bgnbd_method"] == "bgnbd_map_flat"
    assert clv["gg_method"] == "gamma_gamma_map_flat"
    assert all(
        clv[k] is not None and math.isfinite(clv[k]) and clv[k] > 0 for k in ("r", "alpha", "a", "b", "p", "q", "v")
    )
    assert result.model_version.startswith("v2-")  # ml.bundle.ML_SCHEMA_VERSION
    assert set(result.timings) >= {"features", "clustering", "churn", "clv", "total"}
    json.dumps(result.metrics, allow_nan=False)


def test_deterministic_and_blind_to_future_rows_and_row_order(result: ScoringResult, data: SyntheticData) -> None:
    tx = data.transactions
    past_shuffled = tx[tx["order_date"] <= pd.Timestamp(AS_OF)].sample(frac=1.0, random_state=3)
    assert len(past_shuffled) < len(tx)
    again = score_customers(past_shuffled, data.customers, AS_OF, random_state=0)
    pdt.assert_frame_equal(again.labels, result.labels)
    pdt.assert_frame_equal(again.cluster_profiles, result.cluster_profiles)
    pdt.assert_frame_equal(again.centroids, result.centroids)
    assert again.metrics == result.metrics
    assert again.model_version == result.model_version


def test_scoring_in_chunks_of_customers_equals_scoring_all_at_once(result: ScoringResult, data: SyntheticData) -> None:
    # one buyer without a customers row: counted once, in the chunk that holds its purchases
    customers = data.customers.iloc[1:]
    whole = score_with(result.bundle, data.transactions, customers, AS_OF)
    ids = sorted(data.customers["customer_id"].astype(str))
    bounds = [None, ids[150], ids[151], ids[400], None]  # uneven chunks, one of a single customer
    scorer = ChunkScorer(result.bundle, AS_OF)
    chunks = []
    for lower, upper in itertools.pairwise(bounds):
        def within(frame: pd.DataFrame, lower=lower, upper=upper) -> pd.DataFrame:
            key = frame["customer_id"].astype(str)
            return frame[(key >= (lower or "")) & ((key < upper) if upper else True)]
        chunks.append(scorer.score(within(data.transactions), within(customers)))
    chunked = scorer.result(pd.concat(chunks, ignore_index=True))
    assert [len(c) for c in chunks] == [149, 1, 249, 100]
    assert whole.metrics["buyers_not_in_customers"] == 1

    by_id = ["customer_id"]
    pdt.assert_frame_equal(chunked.labels.sort_values(by_id, ignore_index=True),
                           whole.labels.sort_values(by_id, ignore_index=True))
    pdt.assert_frame_equal(chunked.cluster_profiles, whole.cluster_profiles, rtol=1e-12)
    pdt.assert_frame_equal(chunked.drift, whole.drift, rtol=1e-12)
    assert chunked.metrics.pop("scored_in_chunks") == 4
    assert chunked.metrics.pop("drift_max_psi") == pytest.approx(whole.metrics.pop("drift_max_psi"), rel=1e-12)
    assert chunked.metrics == whole.metrics


def test_previous_centroids_keep_ids_and_change_the_version(result: ScoringResult, data: SyntheticData) -> None:
    # Feed last run's centroids in a scrambled id order: ids must follow the centroids.
    k = len(result.centroids)
    scrambled = result.centroids.copy()
    scrambled.index = pd.Index([(i + 1) % k for i in scrambled.index], name="cluster_id")
    aligned = score_customers(data.transactions, data.customers, AS_OF, previous_centroids=scrambled)
    old = result.labels["cluster_id"]
    new = aligned.labels["cluster_id"]
    buyers = old.notna()
    expected = old[buyers].astype(int).map(lambda c: (c + 1) % k)
    assert (new[buyers].astype(int) == expected).all()
    assert aligned.metrics["cluster_alignment"] == "aligned"
    assert result.metrics["cluster_alignment"] == "none"
    assert aligned.model_version != result.model_version


def test_tiny_and_degenerate_inputs_still_score() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "p"]})
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d"],
            "order_date": pd.to_datetime(["2024-01-05", "2024-06-01", "2024-02-01", "2023-11-11", "2024-06-29"]),
            "net_amount": [20.0, 35.0, 12.0, 80.0, 15.0],
            "discount_amount": [0.0, 5.0, 0.0, 0.0, 3.0],
            "channel": ["online", "store", "app", "store", "online"],
            "category": ["x", "y", "x", "z", "x"],
        }
    )
    stale = pd.DataFrame({"some_old_feature": [1.0, 2.0]})  # centroids from an older feature set
    res = score_customers(tx, customers, AS_OF, previous_centroids=stale)
    assert res.metrics["cluster_alignment"].startswith("skipped: missing feature columns")
    labels = res.labels.set_index("customer_id")
    assert len(labels) == 5
    assert pd.isna(labels.at["p", "cluster_id"])
    buyers = labels.drop(index="p")
    assert buyers["churn_probability"].between(0, 1).all()
    assert (buyers["predicted_clv_12m"] >= 0).all()
    assert res.metrics["churn"]["method"] in {"recency_rule", "recency_logistic"}
    assert res.metrics["clv"]["bgnbd_method"] == "historical_rate"
    assert res.metrics["clv"]["r"] is None  # not NaN: metrics must serialise to strict JSON
    json.dumps(res.metrics, allow_nan=False)
    # Nobody has bought yet: everyone is a prospect.
    nobody = score_customers(tx.iloc[:0], customers, AS_OF)
    assert nobody.labels["cluster_id"].isna().all()
    assert (nobody.labels["cluster_name"] == PROSPECT_CLUSTER_NAME).all()
    assert nobody.cluster_profiles.empty


def test_ml_imports_no_warehouse_or_airflow() -> None:
    code = (
        "import sys, ml.features, ml.clustering, ml.churn, ml.clv, ml.scoring, ml.synthetic\n"
        "bad = {'airflow', 'duckdb', 'psycopg', 'sqlalchemy', 'pymc'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    # pymc is imported lazily, only when a CLV model is fitted.
    assert out.stdout.strip() == "[]"


def _snapshots(data: SyntheticData, dates: list[dt.date]) -> pd.DataFrame:
    """An engagement snapshot per date for every third customer (the rest are absent = unengaged)."""
    ids = list(data.customers["customer_id"])[::3]
    rows = [{"customer_id": cid, "snapshot_date": pd.Timestamp(day), "web_sessions_30d": float(i % 4),
             "web_sessions_90d": float(i % 9), "web_recency_days": float(i % 200), "emails_sent_90d": 6.0,
             "emails_opened_90d": float(i % 3), "emails_clicked_90d": float(i % 2)}
            for day in dates for i, cid in enumerate(ids)]
    return pd.DataFrame(rows)


def test_engagement_at_the_cutoff_feeds_the_churn_model_and_is_required_to_score(data: SyntheticData) -> None:
    from ml.bundle import fit_models
    from ml.features import SNAPSHOT_FEATURES, engagement_at
    from ml.scoring import score_with

    cutoff = AS_OF - dt.timedelta(days=90)
    snapshots = _snapshots(data, [cutoff, AS_OF])
    # absent customers get the documented defaults; a date without a snapshot gives None
    some = engagement_at(snapshots, AS_OF, ["nobody", snapshots["customer_id"].iloc[1]])
    assert some.loc["nobody"].to_dict() == SNAPSHOT_FEATURES
    assert some.iloc[1]["web_sessions_30d"] == 1.0
    assert engagement_at(snapshots, AS_OF - dt.timedelta(days=1), ["x"]) is None

    bundle = fit_models(data.transactions, data.customers, AS_OF, engagement=snapshots)
    assert bundle.metrics["churn_engagement"] == "snapshot as of the cutoff"
    assert set(SNAPSHOT_FEATURES) <= set(bundle.churn.features_)
    # the snapshot is part of the training data: another snapshot is another model version
    other = snapshots.assign(web_recency_days=snapshots["web_recency_days"] + 1)
    assert fit_models(data.transactions, data.customers, AS_OF, engagement=other).model_version != bundle.model_version
    labels = score_with(bundle, data.transactions, data.customers, AS_OF, snapshots).labels
    assert labels["churn_probability"].notna().sum() > 0
    # in chunks: a chunk may hold no snapshot row though tonight's snapshot exists (an unengaged buyer)
    unengaged = next(c for c in labels.loc[labels["churn_probability"].notna(), "customer_id"]
                     if c not in set(snapshots["customer_id"]))
    parts = []
    scorer = ChunkScorer(bundle, AS_OF, snapshot_exists=True)
    for chunk in ({unengaged}, set(data.customers["customer_id"]) - {unengaged}):
        def of_chunk(frame: pd.DataFrame, chunk=chunk) -> pd.DataFrame:
            return frame[frame["customer_id"].isin(chunk)]
        parts.append(scorer.score(of_chunk(data.transactions), of_chunk(data.customers), of_chunk(snapshots)))
    by_id = ["customer_id"]
    pdt.assert_frame_equal(pd.concat(parts).sort_values(by_id, ignore_index=True),
                           labels.sort_values(by_id, ignore_index=True))
    with pytest.raises(ValueError, match="uses engagement snapshots"):  # without knowing that it exists
        ChunkScorer(bundle, AS_OF).score(*(of_chunk(f, {unengaged}) for f in (data.transactions, data.customers,
                                                                              snapshots)))
    # scoring without today's snapshot would make everyone look unengaged: refused, and said why
    with pytest.raises(ValueError, match="uses engagement snapshots, but there is none as of 2024-06-30"):
        score_with(bundle, data.transactions, data.customers, AS_OF, snapshots[snapshots["snapshot_date"] < "2024-06"])
    # without a snapshot at the cutoff the churn model is purchase-only, and says so
    purchase_only = fit_models(data.transactions, data.customers, AS_OF, engagement=_snapshots(data, [AS_OF]))
    assert purchase_only.metrics["churn_engagement"] == "none"
    assert not set(SNAPSHOT_FEATURES) & set(purchase_only.churn.features_)
