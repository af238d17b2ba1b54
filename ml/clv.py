"""Customer lifetime value: BG/NBD (purchases, alive-ness) × Gamma-Gamma (spend per purchase).

Fitted with pymc-marketing 0.19 (``pymc_marketing.clv.BetaGeoModel`` / ``GammaGammaModel``)
by ``fit(method="map")`` with ``HalfFlat`` priors on every parameter (``pymc_extras.prior.Prior``:
since 0.19 ``pymc_marketing.prior`` is only a deprecated alias). ``pm.find_MAP`` optimises
without the log-transform Jacobian, so with flat priors the MAP point *is* the maximum
likelihood estimate, the same estimator as the published BG/NBD and Gamma-Gamma results (the
CDNOW test reproduces them). MAP instead of MCMC keeps a nightly fit to seconds.

Time unit is weeks (``clv_summary(time_unit='W')``). PyMC is imported lazily inside the methods:
importing it costs ~10 s, which the rest of ``ml`` should not pay.

Fallbacks (recorded in ``fit_info_``):

* BG/NBD needs repeat behaviour to identify the dropout process. With fewer than
  ``min_customers`` buyers, no repeat buyer, or a failed/non-finite fit, purchases are projected
  at each customer's historical rate ``frequency / T`` and ``p_alive`` is 1 (no evidence to
  estimate dropout). ``bgnbd_method = 'historical_rate'``.
* Gamma-Gamma needs repeat buyers with positive spend. With fewer than ``min_repeat_buyers``,
  a failed fit, or ``q <= 1`` (mean spend undefined), every customer's expected spend per
  purchase is the mean spend per purchase day of all buyers. ``gg_method = 'mean_spend'``.

Scale: the population parameters are fitted on a fixed-seed random sample of at most
``max_fit_customers`` customers (4 or 3 parameters need far fewer than 100k customers);
predictions are closed-form and computed for every customer, in chunks if the caller wishes.

Prediction: the fitted parameters are all a prediction needs. ``predict`` evaluates the
published closed forms (the same formulas as pymc-marketing's ``expected_purchases``,
``expected_probability_alive`` and ``expected_customer_spend``; a test checks the two agree)
with numpy/scipy, so a model loaded from the registry scores a million customers without
importing PyMC, and the pickled model carries only numbers (the PyMC objects are dropped).
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, hyp2f1

from ml.features import clv_summary, is_purchase, prepare_transactions

TIME_UNIT = "W"
DAYS_PER_UNIT = 7.0
_SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
_PARAM_NAMES = ("r", "alpha", "a", "b", "p", "q", "v")
BGNBD_PARAMS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_PARAMS = ("p", "q", "v")


def bgnbd_p_alive(params: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T) under BG/NBD (Fader, Hardie & Lee 2008, note 021); 1 for one-time buyers.

    BG/NBD lets a customer drop out only right after a repeat purchase, so a customer with
    ``x = 0`` is alive by assumption, however long ago the first purchase was.
    """
    r, alpha, a, b = (params[k] for k in BGNBD_PARAMS)
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    log_div = (r + x) * np.log((alpha + T) / (alpha + t_x)) + np.log(a / (b + np.maximum(x, 1.0) - 1.0))
    return np.where(x == 0, 1.0, expit(-log_div))


def bgnbd_expected_purchases(
    params: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t: float
) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] under BG/NBD (Fader, Hardie & Lee 2005, eq. 10)."""
    r, alpha, a, b = (params[k] for k in BGNBD_PARAMS)
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    numerator = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(
        r + x, b + x, a + b + x - 1.0, t / (alpha + T + t)
    )
    numerator *= (a + b + x - 1.0) / (a - 1.0)
    denominator = 1.0 + (x > 0) * (a / (b + x - 1.0)) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return numerator / denominator


def bgnbd_p_no_purchase(
    params: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t: float
) -> np.ndarray:
    """P(no purchase in (T, T + t] | x, t_x, T) under BG/NBD.

    Dead customers never buy; an alive one drops out only right after a purchase, so "no
    purchase" means no NBD event: ``(1 − P(alive)) + P(alive) · ((α + T) / (α + T + t))^(r + x)``.
    """
    r, alpha = params["r"], params["alpha"]
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    alive = bgnbd_p_alive(params, x, t_x, T)
    return (1.0 - alive) + alive * ((alpha + T) / (alpha + T + t)) ** (r + x)


def gamma_gamma_expected_spend(params: dict[str, float], x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[spend per transaction | x repeat transactions of mean m] (Fader & Hardie 2013, eq. 5).

    A weighted mean of the population mean ``v p / (q - 1)`` and the customer's own mean, the
    customer's weight growing with ``x``; one-time buyers (``x = 0``) get the population mean.
    """
    p, q, v = (params[k] for k in GAMMA_GAMMA_PARAMS)
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    weight = p * x / (p * x + q - 1.0)
    return (1.0 - weight) * (v * p / (q - 1.0)) + weight * m


def monthly_rate(annual_rate: float) -> float:
    """Monthly discount rate equivalent to ``annual_rate`` compounded monthly: (1+a)^(1/12) − 1."""
    return float((1.0 + annual_rate) ** (1.0 / 12.0) - 1.0)


def _flat_config(names: tuple[str, ...]) -> dict[str, Any]:
    # imported here: pymc (about 10 s) (tests/test_architecture.py LAZY)
    from pymc_extras.prior import Prior

    return {name: Prior("HalfFlat") for name in names}


def _scalar(fit_result: Any, name: str) -> float:
    return float(np.asarray(fit_result[name].values).squeeze())


def _check_summary(summary: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"summary is missing columns: {missing}")
    out = summary.loc[:, list(_SUMMARY_COLUMNS)].copy()
    out["customer_id"] = out["customer_id"].astype(str)
    if out["customer_id"].duplicated().any():
        raise ValueError("summary has duplicate customer_id")
    return out.reset_index(drop=True)


class CLVModel:
    """BG/NBD + Gamma-Gamma lifetime value, MAP-fitted with flat priors (= maximum likelihood).

    Fitted attributes: ``params_`` (r, alpha, a, b, p, q, v; NaN for a part that fell back),
    ``fit_info_`` (methods, sample sizes, log-likelihood, seconds), ``bgnbd_`` and ``gamma_gamma_``
    (the pymc-marketing models, or None).
    """

    def __init__(
        self,
        *,
        max_fit_customers: int = 200_000,
        min_customers: int = 20,
        min_repeat_buyers: int = 20,
        random_state: int = 0,
        fit_spend: bool = True,
    ) -> None:
        self.max_fit_customers = max_fit_customers
        self.min_customers = min_customers
        self.min_repeat_buyers = min_repeat_buyers
        self.random_state = random_state
        self.fit_spend = fit_spend

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the parameters only: predictions are closed-form, and the PyMC models are large."""
        state = dict(self.__dict__)
        state["bgnbd_"] = None
        state["gamma_gamma_"] = None
        return state

    @property
    def has_bgnbd(self) -> bool:
        return getattr(self, "fit_info_", {}).get("bgnbd_method") == "bgnbd_map_flat"

    @property
    def has_gamma_gamma(self) -> bool:
        return getattr(self, "fit_info_", {}).get("gg_method") == "gamma_gamma_map_flat"

    # -- fitting ---------------------------------------------------------------------------
    def _sample(self, data: pd.DataFrame) -> pd.DataFrame:
        if len(data) <= self.max_fit_customers:
            return data
        rng = np.random.default_rng(self.random_state)
        keep = np.sort(rng.choice(len(data), size=self.max_fit_customers, replace=False))
        return data.iloc[keep].reset_index(drop=True)

    def _fit_bgnbd(self, data: pd.DataFrame) -> None:
        # imported here: pymc (about 10 s) (tests/test_architecture.py LAZY)
        from pymc_marketing.clv import BetaGeoModel

        self.bgnbd_ = None
        fit_data = self._sample(data)
        self.fit_info_["bgnbd_n_fit"] = len(fit_data)
        if len(fit_data) < self.min_customers or not (fit_data["frequency"] > 0).any():
            self.fit_info_["bgnbd_method"] = "historical_rate"
            self.fit_info_["bgnbd_reason"] = "too few customers or no repeat buyer"
            return
        started = time.perf_counter()
        model = BetaGeoModel(model_config=_flat_config(("r", "alpha", "a", "b")))
        try:
            model.fit(fit_data[["customer_id", "frequency", "recency", "T"]], method="map", progressbar=False)
            values = {k: _scalar(model.fit_result, k) for k in ("r", "alpha", "a", "b")}
        except Exception as exc:  # any optimiser failure means "use the fallback"
            self.fit_info_["bgnbd_method"] = "historical_rate"
            self.fit_info_["bgnbd_reason"] = f"fit failed: {type(exc).__name__}: {exc}"
            return
        self.fit_info_["bgnbd_seconds"] = round(time.perf_counter() - started, 3)
        if not all(np.isfinite(v) and v > 0 for v in values.values()):
            self.fit_info_["bgnbd_method"] = "historical_rate"
            self.fit_info_["bgnbd_reason"] = f"non-finite or non-positive parameters {values}"
            return
        self.bgnbd_ = model
        self.params_.update(values)
        self.fit_info_["bgnbd_method"] = "bgnbd_map_flat"

    def _fit_gamma_gamma(self, data: pd.DataFrame) -> None:
        # imported here: pymc (about 10 s) (tests/test_architecture.py LAZY)
        from pymc_marketing.clv import GammaGammaModel

        self.gamma_gamma_ = None
        repeat = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
        fit_data = self._sample(repeat.reset_index(drop=True))
        self.fit_info_["gg_n_fit"] = len(fit_data)
        if len(fit_data) < self.min_repeat_buyers:
            self.fit_info_["gg_method"] = "mean_spend"
            self.fit_info_["gg_reason"] = f"{len(fit_data)} repeat buyers < {self.min_repeat_buyers}"
            return
        started = time.perf_counter()
        model = GammaGammaModel(model_config=_flat_config(("p", "q", "v")))
        try:
            model.fit(fit_data[["customer_id", "frequency", "monetary_value"]], method="map", progressbar=False)
            values = {k: _scalar(model.fit_result, k) for k in ("p", "q", "v")}
        except Exception as exc:  # any optimiser failure means "use the fallback"
            self.fit_info_["gg_method"] = "mean_spend"
            self.fit_info_["gg_reason"] = f"fit failed: {type(exc).__name__}: {exc}"
            return
        self.fit_info_["gg_seconds"] = round(time.perf_counter() - started, 3)
        if not all(np.isfinite(v) and v > 0 for v in values.values()) or values["q"] <= 1.0:
            self.fit_info_["gg_method"] = "mean_spend"
            self.fit_info_["gg_reason"] = f"unusable parameters {values} (need finite, q > 1)"
            return
        self.gamma_gamma_ = model
        self.params_.update(values)
        self.fit_info_["gg_method"] = "gamma_gamma_map_flat"

    def fit(self, summary: pd.DataFrame) -> CLVModel:
        """Fit both models on a :func:`ml.features.clv_summary` frame (time unit: weeks)."""
        data = _check_summary(summary)
        self.params_: dict[str, float] = dict.fromkeys(_PARAM_NAMES, float("nan"))
        self.fit_info_: dict[str, Any] = {"time_unit": TIME_UNIT, "n_customers": len(data)}
        # Fallback spend per purchase day: total spend / purchase days would need the first day's
        # spend, which the summary does not carry; the mean over repeat days of repeat buyers is
        # the best estimate available and is what Gamma-Gamma's population mean also targets.
        repeat = data[data["frequency"] > 0]
        self.mean_spend_ = (
            float(np.average(repeat["monetary_value"], weights=repeat["frequency"])) if len(repeat) else 0.0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._fit_bgnbd(data)
            if self.fit_spend:
                self._fit_gamma_gamma(data)
            else:
                self.gamma_gamma_ = None
                self.fit_info_["gg_method"] = "mean_spend"
                self.fit_info_["gg_reason"] = "not fitted (fit_spend=False)"
        self.fit_info_["mean_spend_fallback"] = self.mean_spend_
        return self

    # -- prediction ------------------------------------------------------------------------
    def _expected_spend(self, data: pd.DataFrame) -> np.ndarray:
        if not self.has_gamma_gamma:
            return np.full(len(data), self.mean_spend_)
        return gamma_gamma_expected_spend(self.params_, data["frequency"].to_numpy(), data["monetary_value"].to_numpy())

    def expected_purchases(self, summary: pd.DataFrame, future_days: float) -> np.ndarray:
        """Expected purchase days in the next ``future_days`` days, per row of ``summary``."""
        data = _check_summary(summary)
        future = future_days / DAYS_PER_UNIT
        if self.has_bgnbd:
            x, t_x, T = (data[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
            return np.clip(bgnbd_expected_purchases(self.params_, x, t_x, T, future), 0.0, None)
        return data["frequency"].to_numpy(dtype=float) / np.maximum(data["T"].to_numpy(dtype=float), 1.0) * future

    def probability_no_purchase(self, summary: pd.DataFrame, future_days: float) -> np.ndarray:
        """P(no purchase in the next ``future_days`` days) per row (Poisson at the historical rate on fallback)."""
        data = _check_summary(summary)
        future = future_days / DAYS_PER_UNIT
        x, t_x, T = (data[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        if self.has_bgnbd:
            return np.clip(bgnbd_p_no_purchase(self.params_, x, t_x, T, future), 0.0, 1.0)
        return np.exp(-x / np.maximum(T, 1.0) * future)

    def predict(
        self,
        summary: pd.DataFrame,
        horizon_days_purchases: int = 90,
        clv_months: int = 12,
        discount_rate_annual: float = 0.10,
    ) -> pd.DataFrame:
        """Per customer: ``p_alive``, ``expected_purchases_90d`` and ``predicted_clv_12m``.

        The CLV is the discounted sum over ``clv_months`` months of expected purchases in the
        month × expected spend per purchase (Gamma-Gamma conditional mean), with an annual rate
        converted to monthly (:func:`monthly_rate`). The same formula as pymc-marketing's
        ``customer_lifetime_value`` (4.345 weeks per month), written out so it also applies to
        the historical-rate fallback. Column names say 90d/12m; the arguments change the
        horizons but not the names. Rows follow ``summary``'s order.
        """
        if not hasattr(self, "params_"):
            raise RuntimeError("CLVModel is not fitted")
        data = _check_summary(summary)
        out = pd.DataFrame({"customer_id": data["customer_id"]})
        if data.empty:
            return out.assign(p_alive=[], expected_purchases_90d=[], predicted_clv_12m=[]).astype(
                {"p_alive": float, "expected_purchases_90d": float, "predicted_clv_12m": float}
            )
        weeks_per_month = 4.345
        future_weeks = horizon_days_purchases / DAYS_PER_UNIT
        month_ends = np.arange(1, clv_months + 1) * weeks_per_month
        x, t_x, T = (data[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        with np.errstate(all="ignore"):
            if self.has_bgnbd:
                p_alive = bgnbd_p_alive(self.params_, x, t_x, T)
                expected = bgnbd_expected_purchases(self.params_, x, t_x, T, future_weeks)
                cumulative = np.stack([bgnbd_expected_purchases(self.params_, x, t_x, T, t) for t in month_ends])
            else:
                rate = x / np.maximum(T, 1.0)
                p_alive = np.ones(len(data))
                expected = rate * future_weeks
                cumulative = np.outer(month_ends, rate)
            spend = self._expected_spend(data)
        per_month = np.diff(np.vstack([np.zeros((1, len(data))), cumulative]), axis=0)
        discount = (1.0 + monthly_rate(discount_rate_annual)) ** -np.arange(1, clv_months + 1)
        clv = (per_month * discount[:, None]).sum(axis=0) * spend
        out["p_alive"] = np.clip(p_alive, 0.0, 1.0)
        out["expected_purchases_90d"] = np.clip(expected, 0.0, None)
        out["predicted_clv_12m"] = np.clip(clv, 0.0, None)
        return out


# -- holdout validation (Fader, Hardie & Lee 2005) ----------------------------------------------
DEFAULT_HOLDOUT_DAYS = 273
"""Holdout length: 39 weeks, the CDNOW validation of Fader, Hardie & Lee (2005)."""

MIN_HOLDOUT_DAYS = 28
"""Below four weeks a holdout says more about the calendar than about the model: skipped."""

CONDITIONAL_MAX_FREQUENCY = 7
"""The conditional-expectation table has rows x = 0, 1, ..., 6 and "7+" (as in the paper)."""


def holdout_split(
    first_day: dt.date, as_of_date: dt.date, holdout_days: int = DEFAULT_HOLDOUT_DAYS
) -> tuple[int, str | None]:
    """The holdout length used for data starting on ``first_day``, and why there is none (or None).

    Rule: the configured length, shortened to half the history when the history is shorter than
    twice that (the calibration period is never shorter than the holdout, as in the paper's 39 + 39
    weeks); skipped below :data:`MIN_HOLDOUT_DAYS`. The history counts both ends:
    1997-01-01..1998-06-30 is 546 days, so CDNOW as of 1998-06-30 gets the full 273."""
    history = (as_of_date - first_day).days + 1
    days = min(int(holdout_days), history // 2)
    if days < MIN_HOLDOUT_DAYS:
        return 0, (f"history too short for a holdout: {history} days from {first_day} to {as_of_date}; a holdout needs "
                   f"at least {MIN_HOLDOUT_DAYS} days and a calibration period at least as long")
    return days, None


def holdout_validation(
    transactions: pd.DataFrame,
    as_of_date: dt.date | pd.Timestamp | str,
    *,
    holdout_days: int = DEFAULT_HOLDOUT_DAYS,
    random_state: int = 0,
    max_fit_customers: int = 200_000,
) -> dict[str, Any]:
    """Validate BG/NBD and Gamma-Gamma the way Fader, Hardie & Lee (2005) do on CDNOW.

    The history up to ``as_of_date`` is split at ``calibration_end = as_of_date − holdout`` (the holdout length
    by :func:`holdout_split`). Both models are fitted on the calibration period only; each customer
    who bought by ``calibration_end`` gets a predicted number of repeat purchase days in the
    holdout ``(calibration_end, as_of_date]`` (BG/NBD's conditional expectation), compared with the
    actual number (same-day purchases count once, as in training). Returns a JSON-ready dict:

    * ``status`` ("validated" / "skipped") and ``reason`` when skipped;
    * ``calibration_start``/``calibration_end``/``holdout_end``, ``holdout_days``, ``holdout_weeks``;
    * ``customers``, ``mae`` (per customer), ``rmse``, ``correlation`` (Pearson), ``predicted_total``,
      ``actual_total``, ``aggregate_error_pct`` (100 · (predicted − actual) / actual);
    * ``revenue``: holdout revenue predicted (expected purchases × Gamma-Gamma spend) and actual;
    * ``conditional_expectation``: per calibration-period frequency 0..6 and "7+": customers, mean
      predicted and mean actual holdout purchases;
    * ``tracking``: per week since the first purchase day, the calibration cohort's actual and
      expected repeat purchases (the expectation is BG/NBD's unconditional E[X(t)] summed over the
      customers by the day of their first purchase), the data of the paper's tracking plot;
    * ``params`` and ``bgnbd_method``/``gg_method`` of the calibration fit.
    """
    as_of_date = pd.Timestamp(as_of_date).date()
    tx = prepare_transactions(transactions, as_of_date)
    purchases = tx[is_purchase(tx["net_amount"])]
    if purchases.empty:
        return {"status": "skipped", "reason": "no purchase to validate on"}
    first_day = purchases["order_date"].min().date()
    days, reason = holdout_split(first_day, as_of_date, holdout_days)
    if reason is not None:
        return {"status": "skipped", "reason": reason, "configured_holdout_days": int(holdout_days)}
    calibration_end = as_of_date - dt.timedelta(days=days)
    out: dict[str, Any] = {
        "calibration_start": first_day.isoformat(),
        "calibration_end": calibration_end.isoformat(),
        "holdout_end": as_of_date.isoformat(),
        "holdout_days": days,
        "holdout_weeks": days / DAYS_PER_UNIT,
        "configured_holdout_days": int(holdout_days),
    }
    summary = clv_summary(purchases, calibration_end)
    model = CLVModel(random_state=random_state, max_fit_customers=max_fit_customers).fit(summary)
    out.update({"params": {k: model.params_[k] for k in _PARAM_NAMES},
                "bgnbd_method": model.fit_info_["bgnbd_method"], "gg_method": model.fit_info_["gg_method"]})
    if not model.has_bgnbd:
        why = model.fit_info_.get("bgnbd_reason")
        return {**out, "status": "skipped", "reason": f"BG/NBD could not be fitted on the calibration period: {why}"}

    # actual repeat purchase days in the holdout, per calibration customer (same day = one purchase)
    later = purchases[purchases["order_date"] > pd.Timestamp(calibration_end)]
    daily = later.groupby(["customer_id", "order_date"], sort=False)["net_amount"].sum().reset_index()
    per_customer = daily.groupby("customer_id")["net_amount"].agg(["size", "sum"])
    ids = summary["customer_id"].astype(str)
    actual = per_customer["size"].reindex(ids).fillna(0.0).to_numpy(dtype=float)
    actual_revenue = float(per_customer["sum"].reindex(ids).fillna(0.0).sum())
    x, t_x, T = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    predicted = np.clip(bgnbd_expected_purchases(model.params_, x, t_x, T, days / DAYS_PER_UNIT), 0.0, None)
    error = predicted - actual
    actual_total, predicted_total = float(actual.sum()), float(predicted.sum())
    out.update({
        "status": "validated",
        "customers": len(ids),
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "correlation": float(np.corrcoef(predicted, actual)[0, 1]) if actual.std() > 0 and predicted.std() > 0
        else float("nan"),
        "predicted_total": predicted_total,
        "actual_total": actual_total,
        "aggregate_error_pct": (100.0 * (predicted_total - actual_total) / actual_total if actual_total
                                else float("nan")),
    })
    spend = model._expected_spend(summary)
    out["revenue"] = {"predicted": float((predicted * spend).sum()), "actual": actual_revenue,
                      "error_pct": 100.0 * (float((predicted * spend).sum()) - actual_revenue) / actual_revenue
                      if actual_revenue else float("nan")}
    group = np.minimum(x, CONDITIONAL_MAX_FREQUENCY).astype(int)
    table = []
    for g in range(CONDITIONAL_MAX_FREQUENCY + 1):
        members = group == g
        table.append({"frequency": f"{g}+" if g == CONDITIONAL_MAX_FREQUENCY else str(g),
                      "customers": int(members.sum()),
                      "mean_predicted": float(predicted[members].mean()) if members.any() else float("nan"),
                      "mean_actual": float(actual[members].mean()) if members.any() else float("nan")})
    out["conditional_expectation"] = table
    tracking = _tracking(purchases, ids, model.params_, first_day, calibration_end, as_of_date)
    out["tracking"] = tracking
    # FHL 2005's aggregate check: the cohort's cumulative repeat purchases over calibration + holdout
    if tracking:
        end = tracking[-1]
        out["cumulative"] = {"predicted": end["expected_cumulative"], "actual": end["actual_cumulative"],
                             "error_pct": 100.0 * (end["expected_cumulative"] - end["actual_cumulative"])
                             / end["actual_cumulative"] if end["actual_cumulative"] else float("nan")}
    return out


def _tracking(
    purchases: pd.DataFrame, ids: pd.Series, params: dict[str, float], first_day: dt.date,
    calibration_end: dt.date, as_of_date: dt.date,
) -> list[dict[str, Any]]:
    """Weekly repeat purchases of the calibration cohort, actual and expected (FHL 2005, figure 2).

    Weeks run from ``first_day``; the last week may be shorter (it ends at ``as_of_date``). A customer's
    first purchase day is not a repeat purchase; the expectation for a customer who first bought
    at ``s`` is E[X(t − s)] with BG/NBD's unconditional mean (x = t_x = T = 0 in eq. 10)."""
    cohort = purchases[purchases["customer_id"].astype(str).isin(set(ids))]
    days = cohort.groupby(["customer_id", "order_date"], sort=True).size().reset_index()[["customer_id", "order_date"]]
    first = days.groupby("customer_id")["order_date"].transform("min")
    repeat_days = (days.loc[days["order_date"] > first, "order_date"] - pd.Timestamp(first_day)).dt.days.to_numpy()
    # customers grouped by the day of their first purchase: a few hundred distinct days at most
    starts = (days.groupby("customer_id")["order_date"].min() - pd.Timestamp(first_day)).dt.days
    start_day, start_count = np.unique(starts.to_numpy(), return_counts=True)
    total_days = (as_of_date - first_day).days + 1
    edges = np.append(np.arange(0, total_days, 7), total_days)  # day offsets; purchase on day d is in (d-1, d]
    # Week w covers day offsets < edges[w]. As in clv_summary (T = as_of_date - first day), a customer who
    # first bought on day offset s has been observed e - 1 - s days once day e - 1 is over.
    actual_cum = np.searchsorted(np.sort(repeat_days + 1), edges[1:], side="right")
    shifted = np.clip(edges[1:, None] - (start_day[None, :] + 1), 0.0, None) / DAYS_PER_UNIT
    expected_cum = (start_count[None, :] * bgnbd_expected_purchases(params, 0.0, 0.0, 0.0, shifted)).sum(axis=1)
    rows = []
    cal_offset = (calibration_end - first_day).days + 1
    previous_actual, previous_expected = 0, 0.0
    for week, (end, act, exp) in enumerate(zip(edges[1:], actual_cum, expected_cum, strict=True)):
        rows.append({"week": week + 1, "period": "calibration" if end <= cal_offset else "holdout",
                     "actual": int(act - previous_actual), "expected": float(exp - previous_expected),
                     "actual_cumulative": int(act), "expected_cumulative": float(exp)})
        previous_actual, previous_expected = int(act), float(exp)
    return rows
