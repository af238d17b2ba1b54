"""PSI drift and the retraining gate (pure functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.approval import GATES, decide
from ml.drift import PSI_WARN, psi, psi_status, reference_profile


def test_psi_is_zero_on_the_same_data_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"monetary": rng.lognormal(3, 1, 5000), "frequency": rng.poisson(1.5, 5000) + 1.0})
    ref = reference_profile(train, ["monetary", "frequency"])
    same = psi(ref, train).set_index("feature")
    assert (same["psi"] < 1e-12).all()
    assert set(same["status"]) == {"stable"}
    # A frequency feature with heavy ties gets fewer bins than 10, not empty duplicate bins.
    assert same.at["frequency", "bins"] < 10
    shifted = train.assign(monetary=train["monetary"] * 3.0)
    out = psi(ref, shifted).set_index("feature")
    assert out.at["monetary", "psi"] > PSI_WARN and out.at["monetary", "status"] == "warn"
    assert out.at["frequency", "psi"] < 1e-12
    # Hand-checked: half the customers move from the lower to the upper half of a 2-bin feature.
    ref2 = {"x": {"edges": [0.5], "shares": [0.5, 0.5]}}
    got = psi(ref2, pd.DataFrame({"x": [0.0] * 25 + [1.0] * 75}))["psi"].iloc[0]
    assert got == pytest.approx((0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5))
    assert psi_status(0.05) == "stable" and psi_status(0.1) == "moderate" and psi_status(0.25) == "warn"


def _metrics(roc: float, pr: float, brier: float, sil: float, bg: str = "bgnbd_map_flat") -> dict:
    return {"churn": {"roc_auc": roc, "pr_auc": pr, "brier": brier}, "silhouette": sil,
            "clv": {"bgnbd_method": bg}}


def test_gate_tolerances() -> None:
    current = _metrics(0.80, 0.82, 0.18, 0.30)
    assert decide(current, None).approved
    assert decide(_metrics(0.795, 0.815, 0.184, 0.26), current).approved  # within every tolerance
    worse = decide(_metrics(0.78, 0.82, 0.18, 0.30), current)
    assert not worse.approved and "churn.roc_auc" in worse.reason
    assert not decide(_metrics(0.80, 0.82, 0.19, 0.30), current).approved  # Brier +0.01
    assert not decide(_metrics(0.80, 0.82, 0.18, 0.20), current).approved  # silhouette −0.10
    fallback = decide(_metrics(0.80, 0.82, 0.18, 0.30, bg="historical_rate"), current)
    assert not fallback.approved and "fell back" in fallback.reason
    # A current model without holdout metrics (a fallback) does not gate; a candidate without them does.
    assert decide(current, _metrics(None, None, None, 0.3)).approved
    assert not decide(_metrics(None, None, None, 0.3), current).approved
    assert {g[0] for g in GATES} == {"churn.roc_auc", "churn.pr_auc", "churn.brier", "churn.ece", "silhouette"}


def test_gate_on_calibration_error() -> None:
    current = {**_metrics(0.80, 0.82, 0.18, 0.30), "churn": {"roc_auc": 0.80, "pr_auc": 0.82, "brier": 0.18,
                                                             "ece": 0.02}}
    drifted = {**current, "churn": {**current["churn"], "ece": 0.05}}  # +0.03 > tolerance 0.02
    decision = decide(drifted, current)
    assert not decision.approved and "churn.ece" in decision.reason
    assert decide({**current, "churn": {**current["churn"], "ece": 0.035}}, current).approved  # +0.015: noise
    # a current model registered before the ECE existed does not gate it
    assert decide(drifted, _metrics(0.80, 0.82, 0.18, 0.30)).approved
