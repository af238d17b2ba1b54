"""Churn model: time-split labels, calibrated probabilities vs the recency baseline, fallbacks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.churn import BGNBD_FEATURE, RISK_BANDS, ChurnModel, build_training_set, risk_band
from ml.features import customer_features
from ml.synthetic import make_customer_base

AS_OF = dt.date(2024, 6, 30)


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    # 3,000 customers so the 25 % holdout (~600 buyers) gives metrics worth comparing.
    return make_customer_base(3000, AS_OF, seed=11).transactions


@pytest.fixture(scope="module")
def model(base: pd.DataFrame) -> ChurnModel:
    return ChurnModel(random_state=0).fit(base, AS_OF)


def test_training_set_labels_by_hand() -> None:
    tx = pd.DataFrame(
        {
            "customer_id": ["stay", "stay", "leave", "late", "refund", "refund", "future"],
            "order_date": pd.to_datetime(
                ["2024-03-01", "2024-06-01", "2024-02-01", "2024-05-01", "2024-03-01", "2024-05-01", "2024-02-01"]
            ),
            "net_amount": [10.0, 10.0, 10.0, 10.0, 10.0, -10.0, 10.0],
        }
    )
    # "future" buys again only after as_of: that must not count as staying.
    tx = pd.concat(
        [
            tx,
            pd.DataFrame(
                {"customer_id": ["future"], "order_date": pd.to_datetime(["2024-07-15"]), "net_amount": [10.0]}
            ),
        ]
    )
    X, y = build_training_set(tx, AS_OF, horizon_days=90)  # cutoff 2024-04-01
    assert y.to_dict() == {"future": 1, "leave": 1, "refund": 1, "stay": 0}  # "late" started after the cutoff
    assert X.loc["stay", "recency_days"] == 31  # features are as of the cutoff: Mar 1 -> Apr 1


def test_risk_bands() -> None:
    assert [b[0] for b in RISK_BANDS] == ["low", "medium", "high", "critical"]
    p = [0.0, 0.2499, 0.25, 0.4999, 0.5, 0.7499, 0.75, 1.0, np.nan]
    assert list(risk_band(p)) == ["low", "low", "medium", "medium", "high", "high", "critical", "critical", None]
    assert list(risk_band(0.6)) == ["high"]


def test_model_is_calibrated_probability_and_beats_recency(model: ChurnModel, base: pd.DataFrame) -> None:
    m, b = model.metrics_, model.baseline_metrics_
    assert m["method"] == "logistic_regression"
    assert m["evaluation"] == "4-fold out-of-fold"
    assert m["n_holdout"] == m["n_train"] == m["n_customers"]  # every customer held out once
    assert BGNBD_FEATURE not in model.features_  # not supplied here, so not used
    assert 0 < m["base_rate"] < 1
    # Measured on this seed: model ROC AUC 0.977 / PR AUC 0.989 / Brier 0.054 / lift 1.52,
    # recency baseline 0.965 / 0.982 / 0.078 / 1.52 (the ceiling, 1 / base rate).
    assert m["roc_auc"] > b["roc_auc"]
    assert m["pr_auc"] > b["pr_auc"]
    assert m["brier"] < b["brier"]
    assert m["top_decile_lift"] >= b["top_decile_lift"] - 1e-9
    assert m["roc_auc"] > 0.9
    features = customer_features(base, AS_OF)
    p = model.predict_proba(features)
    assert p.shape == (len(features),)
    assert np.all((p >= 0) & (p <= 1))
    # Calibrated: the mean prediction on the training population is close to the base rate, and
    # so is the observed churn rate within each predicted decile.
    X, y = build_training_set(base, AS_OF)
    proba = model.predict_proba(X)
    assert proba.mean() == pytest.approx(y.mean(), abs=0.02)
    deciles = pd.qcut(proba, 10, labels=False, duplicates="drop")
    reliability = pd.DataFrame({"p": proba, "y": y.to_numpy(), "d": deciles}).groupby("d").mean()
    assert (reliability["p"] - reliability["y"]).abs().max() < 0.1


def test_hgb_estimator_is_still_available(base: pd.DataFrame) -> None:
    hgb = ChurnModel(random_state=0, estimator="hgb", cv_folds=2, max_train=1200).fit(base, AS_OF)
    assert hgb.metrics_["method"] == "hist_gradient_boosting"
    assert hgb.metrics_["calibration"] == "isotonic"  # the final fit has 1,200 rows (sigmoid below 1,000)
    with pytest.raises(ValueError, match="estimator"):
        ChurnModel(estimator="forest").fit(base, AS_OF)


def test_future_rows_change_nothing(model: ChurnModel, base: pd.DataFrame) -> None:
    past = base[base["order_date"] <= pd.Timestamp(AS_OF)]
    assert len(past) < len(base)
    refit = ChurnModel(random_state=0).fit(past, AS_OF)
    assert refit.metrics_ == model.metrics_
    assert refit.baseline_metrics_ == model.baseline_metrics_
    features = customer_features(past, AS_OF)
    np.testing.assert_array_equal(refit.predict_proba(features), model.predict_proba(features))


def test_sampling_is_recorded(base: pd.DataFrame) -> None:
    sampled = ChurnModel(random_state=0, max_train=500).fit(base, AS_OF)
    assert sampled.metrics_["sample_size"] == 500
    assert sampled.metrics_["n_holdout"] == 500
    assert sampled.metrics_["n_train"] > 500


def test_single_class_falls_back_to_recency_rule() -> None:
    # Nobody bought in the label window: everyone churned, nothing to learn from.
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "order_date": pd.to_datetime(["2023-01-01", "2023-06-01", "2024-01-01"]),
            "net_amount": [5.0, 5.0, 5.0],
        }
    )
    model = ChurnModel(horizon_days=90).fit(tx, AS_OF)
    assert model.metrics_["method"] == "recency_rule"
    features = pd.DataFrame({"recency_days": [0.0, 90.0, 270.0]})
    np.testing.assert_allclose(model.predict_proba(features), [0.0, 0.5, 0.75])
    empty = ChurnModel().fit(tx.iloc[:0], AS_OF)
    assert empty.metrics_["method"] == "recency_rule"


def test_few_customers_fall_back_to_recency_logistic() -> None:
    small = make_customer_base(60, AS_OF, seed=5).transactions
    model = ChurnModel().fit(small, AS_OF)
    assert model.metrics_["method"] == "recency_logistic"
    assert np.isnan(model.metrics_["roc_auc"])
    p = model.predict_proba(customer_features(small, AS_OF))
    assert np.all((p >= 0) & (p <= 1))
    # More recency, more churn.
    probe = pd.DataFrame({"recency_days": [1.0, 30.0, 300.0]})
    assert np.all(np.diff(model.predict_proba(probe)) > 0)


# -- CDNOW: real purchases, the baselines' home ground ----------------------------------------
CDNOW = Path(__file__).parent / "fixtures" / "cdnow" / "CDNOW_sample.txt"
CDNOW_AS_OF = dt.date(1997, 9, 30)


@pytest.fixture(scope="module")
def cdnow_bundle():
    from ml.bundle import fit_models

    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["full_id", "customer_id", "date", "cds", "amount"],
                      dtype=str)
    tx = pd.DataFrame({
        "customer_id": raw["customer_id"],
        "order_date": pd.to_datetime(raw["date"], format="%Y%m%d"),
        "net_amount": raw["amount"].astype(float),
    })
    return fit_models(tx, pd.DataFrame({"customer_id": tx["customer_id"].unique()}), CDNOW_AS_OF)


def test_cdnow_churn_beats_both_baselines(cdnow_bundle) -> None:
    metrics = cdnow_bundle.metrics
    m = metrics["churn"]
    recency = metrics["churn_baselines"]["recency_days"]
    bgnbd = metrics["churn_baselines"]["bgnbd_expected_purchases"]
    assert m["n_customers"] == 2357 and m["cutoff"] == "1997-07-02"
    # Measured (as of 1997-09-30, 90-day horizon, base rate 0.83, all 2,357 customers out of fold):
    # model ROC AUC 0.7506 / PR AUC 0.91494 / Brier 0.1205 / top-decile lift 1.11;
    # recency 0.7266 / 0.9105 / 0.1303 / 1.13; BG/NBD expected purchases 0.7463 / 0.91490 / 0.1217 / 1.13.
    assert m["roc_auc"] > max(recency["roc_auc"], bgnbd["roc_auc"])
    assert m["brier"] < min(recency["brier"], bgnbd["brier"])
    assert m["pr_auc"] > recency["pr_auc"]
    assert m["pr_auc"] >= bgnbd["pr_auc"] - 0.001  # a tie with BG/NBD at three decimals
    # The top decile is where BG/NBD is best on CDNOW: the model is ~0.02 behind (about 4 of 236
    # customers). Asserted as measured, not claimed as a win.
    assert m["top_decile_lift"] > max(recency["top_decile_lift"], bgnbd["top_decile_lift"]) - 0.05
    # The pure path the pipeline takes (fit_models, the nightly's bootstrap and the weekly retrain)
    # reproduces the published BG/NBD and Gamma-Gamma parameters to two significant digits.
    from tests.test_ml_clv import PUBLISHED, _same_to_two_significant_digits

    for name, expected in PUBLISHED.items():
        assert _same_to_two_significant_digits(metrics["clv"][name], expected), (name, metrics["clv"][name])
    assert cdnow_bundle.registry_params()["clv"] == {k: metrics["clv"][k] for k in PUBLISHED}
