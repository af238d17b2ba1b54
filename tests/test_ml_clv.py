"""BG/NBD + Gamma-Gamma lifetime value: published CDNOW estimates, predictions, fallbacks."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.clv import CLVModel, monthly_rate
from ml.features import clv_summary

CDNOW = Path(__file__).parent / "fixtures" / "cdnow" / "CDNOW_sample.txt"
CALIBRATION_END = dt.date(1997, 9, 30)

PUBLISHED = {
    # Fader, Hardie & Lee (2005), BG/NBD on the CDNOW sample, weeks
    "r": 0.243,
    "alpha": 4.414,
    "a": 0.793,
    "b": 2.426,
    # Fader & Hardie (2013), Gamma-Gamma on the 946 repeat buyers
    "p": 6.25,
    "q": 3.74,
    "v": 15.44,
}


def _same_to_two_significant_digits(got: float, expected: float) -> bool:
    """|got − expected| within half a unit of the 2nd significant digit of ``expected``."""
    unit = 10 ** (math.floor(math.log10(abs(expected))) - 1)
    return abs(got - expected) <= 0.5 * unit


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    raw = pd.read_csv(
        CDNOW, sep=r"\s+", header=None, names=["full_id", "customer_id", "date", "cds", "amount"], dtype=str
    )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "order_date": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "net_amount": raw["amount"].astype(float),
        }
    )


@pytest.fixture(scope="module")
def cdnow_summary(cdnow_transactions: pd.DataFrame) -> pd.DataFrame:
    return clv_summary(cdnow_transactions, CALIBRATION_END, time_unit="W")


@pytest.fixture(scope="module")
def cdnow_model(cdnow_summary: pd.DataFrame) -> CLVModel:
    return CLVModel().fit(cdnow_summary)


def test_cdnow_summary_matches_the_published_sample(cdnow_summary: pd.DataFrame) -> None:
    assert len(cdnow_summary) == 2357
    assert int((cdnow_summary["frequency"] > 0).sum()) == 946
    assert (cdnow_summary["T"] >= cdnow_summary["recency"]).all()
    # Everyone's first purchase is in Q1 1997, so T spans 27..39 weeks.
    assert cdnow_summary["T"].between(27, 39).all()


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_cdnow_parameters_reproduce_published_mle(cdnow_model: CLVModel, name: str) -> None:
    got = cdnow_model.params_[name]
    assert _same_to_two_significant_digits(got, PUBLISHED[name]), f"{name}: got {got}, published {PUBLISHED[name]}"


def test_cdnow_fit_used_the_models_not_fallbacks(cdnow_model: CLVModel) -> None:
    info = cdnow_model.fit_info_
    assert info["bgnbd_method"] == "bgnbd_map_flat"
    assert info["gg_method"] == "gamma_gamma_map_flat"
    assert info["bgnbd_n_fit"] == 2357
    assert info["gg_n_fit"] == 946


def test_cdnow_conditional_expectation_matches_the_paper(cdnow_model: CLVModel) -> None:
    # Fader, Hardie & Lee (2005): a customer with x = 2, t_x = 30.43, T = 38.86 weeks is expected
    # to make 1.226 purchases in the next 39 weeks.
    one = pd.DataFrame(
        {"customer_id": ["x"], "frequency": [2.0], "recency": [30.43], "T": [38.86], "monetary_value": [20.0]}
    )
    got = cdnow_model.predict(one, horizon_days_purchases=39 * 7)["expected_purchases_90d"].iloc[0]
    assert got == pytest.approx(1.226, abs=0.005)


def test_cdnow_predictions_are_sane(cdnow_model: CLVModel, cdnow_summary: pd.DataFrame) -> None:
    pred = cdnow_model.predict(cdnow_summary)
    assert list(pred["customer_id"]) == list(cdnow_summary["customer_id"])
    assert pred["p_alive"].between(0, 1).all()
    assert (pred["expected_purchases_90d"] >= 0).all()
    assert (pred["predicted_clv_12m"] >= 0).all()
    # One-timers are, by the BG/NBD assumptions, alive (dropout happens only after a purchase).
    one_timers = cdnow_summary["frequency"].to_numpy() == 0
    assert np.allclose(pred.loc[one_timers, "p_alive"], 1.0)
    # A frequent buyer silent for a long time is less likely alive than one who just bought.
    pair = pd.DataFrame(
        {
            "customer_id": ["recent", "silent"],
            "frequency": [6.0, 6.0],
            "recency": [38.0, 10.0],
            "T": [39.0, 39.0],
            "monetary_value": [40.0, 40.0],
        }
    )
    p = cdnow_model.predict(pair).set_index("customer_id")
    assert p.at["recent", "p_alive"] > 0.8
    assert p.at["silent", "p_alive"] < 0.1
    assert p.at["recent", "predicted_clv_12m"] > p.at["silent", "predicted_clv_12m"]


def test_discounting_lowers_clv(cdnow_model: CLVModel, cdnow_summary: pd.DataFrame) -> None:
    sample = cdnow_summary.head(200)
    undiscounted = cdnow_model.predict(sample, discount_rate_annual=0.0)["predicted_clv_12m"]
    discounted = cdnow_model.predict(sample, discount_rate_annual=0.10)["predicted_clv_12m"]
    assert (discounted <= undiscounted + 1e-9).all()
    assert discounted.sum() < undiscounted.sum()
    assert monthly_rate(0.10) == pytest.approx(1.1 ** (1 / 12) - 1)


def test_gamma_gamma_falls_back_to_mean_spend(cdnow_summary: pd.DataFrame) -> None:
    # Too few repeat buyers for Gamma-Gamma: every customer is valued at the mean repeat spend.
    model = CLVModel(min_repeat_buyers=10**6, max_fit_customers=500).fit(cdnow_summary)
    assert model.fit_info_["gg_method"] == "mean_spend"
    assert math.isnan(model.params_["p"])
    repeat = cdnow_summary[cdnow_summary["frequency"] > 0]
    expected_mean = (repeat["monetary_value"] * repeat["frequency"]).sum() / repeat["frequency"].sum()
    assert model.mean_spend_ == pytest.approx(expected_mean)
    assert model.fit_info_["bgnbd_n_fit"] == 500  # sampled fit, recorded


def test_bgnbd_falls_back_without_repeat_buyers() -> None:
    # Only one-timers: dropout is not identifiable. Historical rate (0) and p_alive = 1, no crash.
    summary = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(50)],
            "frequency": 0.0,
            "recency": 0.0,
            "T": np.linspace(1, 20, 50),
            "monetary_value": 0.0,
        }
    )
    model = CLVModel().fit(summary)
    assert model.fit_info_["bgnbd_method"] == "historical_rate"
    assert model.fit_info_["gg_method"] == "mean_spend"
    pred = model.predict(summary)
    assert (pred["p_alive"] == 1.0).all()
    assert (pred["expected_purchases_90d"] == 0.0).all()
    assert (pred["predicted_clv_12m"] == 0.0).all()


def test_closed_form_predictions_match_pymc_marketing(cdnow_model: CLVModel, cdnow_summary: pd.DataFrame) -> None:
    # predict() evaluates the published formulas with numpy; pymc-marketing's own methods on the
    # fitted models must give the same numbers.
    sample = cdnow_summary.iloc[::10].reset_index(drop=True)
    ours = cdnow_model.predict(sample, horizon_days_purchases=90)
    bg, gg = cdnow_model.bgnbd_, cdnow_model.gamma_gamma_
    data = sample[["customer_id", "frequency", "recency", "T"]]
    theirs_alive = bg.expected_probability_alive(data=data).mean(("chain", "draw")).values
    theirs_buy = bg.expected_purchases(data=data, future_t=90 / 7).mean(("chain", "draw")).values
    spend = gg.expected_customer_spend(data=sample[["customer_id", "frequency", "monetary_value"]])
    np.testing.assert_allclose(ours["p_alive"], theirs_alive, rtol=1e-9)
    np.testing.assert_allclose(ours["expected_purchases_90d"], theirs_buy, rtol=1e-9)
    np.testing.assert_allclose(cdnow_model._expected_spend(sample), spend.mean(("chain", "draw")).values, rtol=1e-9)
    # P(no purchase in 90 days): pymc-marketing 0.19's expected_probability_no_purchase omits the
    # delta(x > 0) of the "dropped out after the last purchase" term (Fader, Hardie & Lee), so it
    # only agrees for repeat buyers; a one-time buyer is alive under BG/NBD and has P0 = (M / F)^r.
    no_purchase = bg.expected_probability_no_purchase(t=90 / 7, data=data).mean(("chain", "draw")).values
    ours_p0 = cdnow_model.probability_no_purchase(sample, 90)
    repeat = sample["frequency"].to_numpy() > 0
    np.testing.assert_allclose(ours_p0[repeat], no_purchase[repeat], rtol=1e-6)
    p = cdnow_model.params_
    M = p["alpha"] + sample["T"].to_numpy()[~repeat]
    np.testing.assert_allclose(ours_p0[~repeat], (M / (M + 90 / 7)) ** p["r"], rtol=1e-12)


def test_pickled_model_keeps_numbers_only(cdnow_model: CLVModel, cdnow_summary: pd.DataFrame) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(cdnow_model))
    assert clone.bgnbd_ is None and clone.gamma_gamma_ is None
    pd.testing.assert_frame_equal(clone.predict(cdnow_summary), cdnow_model.predict(cdnow_summary))


# -- holdout validation: Fader, Hardie & Lee (2005) on CDNOW -----------------------------------------
# The paper's split: calibration 1997-01-01..1997-09-30 (39 weeks), holdout 1997-10-01..1998-06-30
# (39 weeks); holdout_validation as of 1998-06-30 with the default 273-day holdout reproduces it.
# Actual repeat purchases are counted here from the raw rows: distinct (customer, day) pairs.
HOLDOUT_END = dt.date(1998, 6, 30)


@pytest.fixture(scope="module")
def cdnow_holdout(cdnow_transactions: pd.DataFrame) -> dict:
    from ml.clv import holdout_validation

    return holdout_validation(cdnow_transactions, HOLDOUT_END)


def test_cdnow_holdout_uses_the_papers_split(cdnow_holdout: dict) -> None:
    h = cdnow_holdout
    assert h["status"] == "validated"
    assert (h["calibration_start"], h["calibration_end"], h["holdout_end"]) == ("1997-01-01", "1997-09-30",
                                                                                "1998-06-30")
    assert h["holdout_weeks"] == 39.0 and h["customers"] == 2357
    for name, expected in PUBLISHED.items():  # fitted on the calibration period only
        assert _same_to_two_significant_digits(h["params"][name], expected), name


def test_cdnow_holdout_figures(cdnow_holdout: dict, cdnow_transactions: pd.DataFrame, cdnow_model: CLVModel,
                               cdnow_summary: pd.DataFrame) -> None:
    h = cdnow_holdout
    days = cdnow_transactions.drop_duplicates(["customer_id", "order_date"])
    holdout = days[days["order_date"] > pd.Timestamp(CALIBRATION_END)]
    actual = holdout.groupby("customer_id").size().reindex(cdnow_summary["customer_id"]).fillna(0).to_numpy()
    assert h["actual_total"] == actual.sum() == 1882
    # predictions from pymc-marketing's own BG/NBD fitted on the same calibration period
    data = cdnow_summary[["customer_id", "frequency", "recency", "T"]]
    predicted = cdnow_model.bgnbd_.expected_purchases(data=data, future_t=39).mean(("chain", "draw")).values
    assert h["predicted_total"] == pytest.approx(predicted.sum(), rel=1e-3)
    assert h["mae"] == pytest.approx(np.abs(predicted - actual).mean(), rel=1e-3)
    assert h["correlation"] == pytest.approx(np.corrcoef(predicted, actual)[0, 1], rel=1e-3)
    # Measured: MAE 0.785, correlation 0.626, predicted 1,653.4 vs actual 1,882 repeat purchases in the
    # 39 holdout weeks (-12.1 %). BG/NBD with the published MLE under-forecasts this holdout: the
    # paper's aggregate check is the cohort's cumulative repeat purchases over the 78 weeks (its
    # tracking plot), where the error is -4.1 % (4,160.5 vs 4,339), within 5 %.
    assert h["aggregate_error_pct"] == pytest.approx(-12.1, abs=0.2)
    all_repeat = len(days) - days["customer_id"].nunique()  # every purchase day but each customer's first
    assert h["cumulative"]["actual"] == all_repeat == 4339
    assert abs(h["cumulative"]["error_pct"]) <= 5.0
    assert sum(row["actual"] for row in h["tracking"]) == all_repeat
    assert len(h["tracking"]) == 78 and h["tracking"][38]["period"] == "calibration"
    # conditional expectation by calibration frequency, actual side recomputed
    x = np.minimum(cdnow_summary["frequency"].to_numpy(), 7)
    table = {row["frequency"]: row for row in h["conditional_expectation"]}
    assert list(table) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    for g in range(8):
        row = table["7+" if g == 7 else str(g)]
        assert row["customers"] == int((x == g).sum())
        assert row["mean_actual"] == pytest.approx(actual[x == g].mean())
        assert row["mean_predicted"] == pytest.approx(predicted[x == g].mean(), rel=1e-3)


def test_holdout_length_rule() -> None:
    from ml.clv import holdout_split

    first = dt.date(2026, 1, 1)
    assert holdout_split(first, dt.date(2027, 12, 31)) == (273, None)  # long history: 39 weeks
    assert holdout_split(first, dt.date(2026, 6, 30), 273) == (90, None)  # 181 days: half of it
    days, reason = holdout_split(first, dt.date(2026, 2, 20), 273)  # 51 days: no room
    assert days == 0 and "too short" in reason
    assert holdout_split(first, dt.date(2027, 12, 31), 91) == (91, None)  # configured shorter
