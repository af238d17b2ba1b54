"""Churn propensity: probability that a buyer makes no purchase in the next ``horizon_days``.

Training uses a time split inside the history we already have, so labels are observed, not
guessed: features are computed as of ``cutoff = as_of - horizon`` from transactions on or before
the cutoff, and the label is 1 when the customer made no purchase in ``(cutoff, as_of]``. The
fitted model is then applied to features computed as of ``as_of``.

Model: ``HistGradientBoostingClassifier`` (handles skew and interactions without scaling) inside
``CalibratedClassifierCV`` so scores are usable as probabilities (risk bands, expected losses).
Isotonic calibration needs data, so it is used from 1,000 training customers up; below that,
sigmoid (Platt) calibration. A stratified 25 % of customers is held out; ``metrics_`` are
measured there, for the model and for a recency baseline (``baseline_metrics_``: days since
last purchase, higher = more churn; its probabilities come from a logistic fit on
``log1p(recency)`` on the training part). The reported model is the one trained on the 75 %,
so the metrics describe exactly what scores customers.

Degenerate data (documented fallbacks, recorded in ``metrics_['method']``):

* ``recency_logistic``: both classes present but fewer than ``min_customers`` training
  customers or fewer than ``min_per_class`` in the minority class: a logistic regression on
  ``log1p(recency_days)`` fitted on all of them (no holdout, metrics are NaN).
* ``recency_rule``: a single class or no customers at all (e.g. a store that opened less than
  ``horizon_days`` ago): ``p = recency / (recency + horizon)``, i.e. 0.5 when the customer has
  been silent for one horizon, 0.75 after three.

Threads: fitting and prediction run under ``threadpoolctl`` with ``n_threads`` (default 1).
Gradient boosting uses OpenMP, whose threads spin-wait; on a busy 2-core machine (an Airflow
worker running other tasks, or a container whose CPU quota OpenMP cannot see) a 20,000-customer
fit took 25 s with default threads and 1.3 s with one, with identical results. Pass
``n_threads=None`` on a dedicated machine to use every core.

Scale: above ``max_train`` customers (default 200,000) the model is fitted on a stratified
sample of that size (``metrics_['sample_size']``); gradient boosting gains little beyond it and
the nightly run must stay within minutes at 1M customers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from ml.features import customer_features, is_purchase, select_columns

DEFAULT_HORIZON_DAYS = 90

CHURN_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_order_value",
    "online_share",
    "store_share",
    "app_share",
    "discount_share",
    "category_breadth",
    "orders_90d",
    "spend_90d",
)
"""Model inputs. Engagement columns are excluded on purpose: ``customers`` holds today's
engagement snapshot, not the snapshot at the training cutoff, so using them would train on
information from the label window (leakage) and inflate holdout metrics."""

RISK_BANDS: tuple[tuple[str, float, float], ...] = (
    ("low", 0.0, 0.25),
    ("medium", 0.25, 0.5),
    ("high", 0.5, 0.75),
    ("critical", 0.75, 1.0),
)
"""(band, lower inclusive, upper exclusive; 'critical' includes 1.0): low < 0.25 ≤ medium < 0.5
≤ high < 0.75 ≤ critical. Fixed cut-offs on a calibrated probability, so a band means the same
thing every night ("high" = the customer more likely churns than not)."""


def risk_band(p: Sequence[float] | np.ndarray | pd.Series | float) -> np.ndarray:
    """Map churn probabilities to :data:`RISK_BANDS` names (object array; NaN → None)."""
    arr = np.atleast_1d(np.asarray(p, dtype=float))
    out = np.full(arr.shape, None, dtype=object)
    finite = np.isfinite(arr)
    edges = np.array([lo for _, lo, _ in RISK_BANDS[1:]])
    idx = np.searchsorted(edges, np.clip(arr[finite], 0.0, 1.0), side="right")
    out[finite] = np.array([name for name, _, _ in RISK_BANDS], dtype=object)[idx]
    return out


def build_training_set(
    transactions: pd.DataFrame,
    as_of: dt.date | pd.Timestamp | str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> tuple[pd.DataFrame, pd.Series]:
    """Features as of ``as_of - horizon_days`` and the churn label observed in the following window.

    Population: customers with at least one purchase on or before the cutoff. ``y`` is 1 when
    they have no purchase event (``net_amount >= 0``) in ``(cutoff, as_of]``. Transactions
    after ``as_of`` are ignored.
    """
    as_of_ts = pd.Timestamp(as_of).normalize()
    cutoff = as_of_ts - pd.Timedelta(days=horizon_days)
    X = customer_features(transactions, cutoff)
    dates = pd.to_datetime(transactions["order_date"])
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    dates = dates.dt.normalize()
    in_window = (dates > cutoff) & (dates <= as_of_ts) & is_purchase(transactions["net_amount"])
    active = pd.Index(transactions.loc[in_window, "customer_id"].astype(str).unique())
    y = pd.Series((~X.index.isin(active)).astype(int), index=X.index, name="churned")
    return X, y


def _metrics(y: np.ndarray, score: np.ndarray, proba: np.ndarray | None) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier and top-decile lift of ``score`` against labels ``y``."""
    y = np.asarray(y, dtype=int)
    base_rate = float(y.mean()) if y.size else float("nan")
    if y.size == 0 or y.min() == y.max():
        return {
            "roc_auc": float("nan"),
            "pr_auc": float("nan"),
            "brier": float("nan"),
            "top_decile_lift": float("nan"),
            "base_rate": base_rate,
        }
    n_top = max(1, int(np.ceil(0.1 * y.size)))
    # Stable sort on -score: ties broken by position, deterministic.
    top = np.argsort(-np.asarray(score, dtype=float), kind="stable")[:n_top]
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "brier": float(brier_score_loss(y, proba)) if proba is not None else float("nan"),
        "top_decile_lift": float(y[top].mean() / base_rate) if base_rate > 0 else float("nan"),
        "base_rate": base_rate,
    }


def _recency_matrix(X: pd.DataFrame) -> np.ndarray:
    return np.log1p(select_columns(X, ["recency_days"]).to_numpy().clip(min=0.0))


class ChurnModel:
    """Calibrated churn classifier trained on the customer base's own recent history.

    Fitted attributes: ``metrics_`` (roc_auc, pr_auc, brier, top_decile_lift, base_rate, n_train,
    n_holdout, n_customers, sample_size, method, calibration, horizon_days, cutoff),
    ``baseline_metrics_`` (same metrics for the recency baseline on the same holdout),
    ``model_`` (the fitted classifier, or None for the ``recency_rule`` fallback).
    """

    def __init__(
        self,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        *,
        random_state: int = 0,
        holdout_fraction: float = 0.25,
        max_train: int = 200_000,
        min_customers: int = 200,
        min_per_class: int = 20,
        features: Sequence[str] = CHURN_FEATURES,
        n_threads: int | None = 1,
    ) -> None:
        self.horizon_days = horizon_days
        self.random_state = random_state
        self.holdout_fraction = holdout_fraction
        self.max_train = max_train
        self.min_customers = min_customers
        self.min_per_class = min_per_class
        self.features = features
        self.n_threads = n_threads

    def _classifier(self, n_train: int) -> CalibratedClassifierCV:
        hgb = HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=self.random_state,
        )
        method = "isotonic" if n_train >= 1000 else "sigmoid"
        return CalibratedClassifierCV(hgb, method=method, cv=3)

    def fit(self, transactions: pd.DataFrame, as_of: dt.date | pd.Timestamp | str) -> ChurnModel:
        """Build the training set as of ``as_of - horizon_days``, fit, and measure on the holdout."""
        with threadpool_limits(limits=self.n_threads):
            return self._fit(transactions, as_of)

    def _fit(self, transactions: pd.DataFrame, as_of: dt.date | pd.Timestamp | str) -> ChurnModel:
        X, y = build_training_set(transactions, as_of, self.horizon_days)
        cutoff = (pd.Timestamp(as_of).normalize() - pd.Timedelta(days=self.horizon_days)).date()
        info: dict[str, object] = {
            "horizon_days": int(self.horizon_days),
            "cutoff": cutoff.isoformat(),
            "n_customers": len(y),
        }
        counts = np.bincount(y.to_numpy(), minlength=2) if len(y) else np.zeros(2, dtype=int)
        nan_metrics = _metrics(np.array([], dtype=int), np.array([]), None)
        self.baseline_metrics_ = dict(nan_metrics)
        if counts.min() == 0:
            self.model_ = None
            self.method_ = "recency_rule"
            self.metrics_ = {
                **nan_metrics,
                "base_rate": float(y.mean()) if len(y) else float("nan"),
                **info,
                "n_train": 0,
                "n_holdout": 0,
                "sample_size": 0,
                "method": self.method_,
                "calibration": "none",
            }
            return self

        n_holdout = round(self.holdout_fraction * len(y))
        train_minority = counts.min() - int(np.ceil(self.holdout_fraction * counts.min()))
        if len(y) - n_holdout < self.min_customers or train_minority < self.min_per_class:
            self.method_ = "recency_logistic"
            self.model_ = LogisticRegression().fit(_recency_matrix(X), y.to_numpy())
            self.metrics_ = {
                **nan_metrics,
                "base_rate": float(y.mean()),
                **info,
                "n_train": len(y),
                "n_holdout": 0,
                "sample_size": len(y),
                "method": self.method_,
                "calibration": "logistic",
            }
            return self

        X_train, X_hold, y_train, y_hold = train_test_split(
            X, y, test_size=self.holdout_fraction, stratify=y, random_state=self.random_state
        )
        n_train_total = len(y_train)
        if n_train_total > self.max_train:
            X_train, _, y_train, _ = train_test_split(
                X_train, y_train, train_size=self.max_train, stratify=y_train, random_state=self.random_state
            )
        clf = self._classifier(len(y_train))
        clf.fit(select_columns(X_train, self.features).to_numpy(), y_train.to_numpy())
        self.model_ = clf
        self.method_ = "hist_gradient_boosting"
        proba = clf.predict_proba(select_columns(X_hold, self.features).to_numpy())[:, 1]
        self.metrics_ = {
            **_metrics(y_hold.to_numpy(), proba, proba),
            **info,
            "n_train": int(n_train_total),
            "n_holdout": len(y_hold),
            "sample_size": len(y_train),
            "method": self.method_,
            "calibration": clf.method,
        }
        baseline = LogisticRegression().fit(_recency_matrix(X_train), y_train.to_numpy())
        base_proba = baseline.predict_proba(_recency_matrix(X_hold))[:, 1]
        self.baseline_metrics_ = {
            **_metrics(y_hold.to_numpy(), X_hold["recency_days"].to_numpy(), base_proba),
            "method": "recency_days",
        }
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(no purchase in the next ``horizon_days``) for each row of ``customer_features(..., as_of)``.

        Returns a 1-D float array in [0, 1] (the churn class only, unlike sklearn's 2 columns).
        """
        if not hasattr(self, "method_"):
            raise RuntimeError("ChurnModel is not fitted")
        if len(features) == 0:
            return np.array([], dtype=float)
        if self.method_ == "recency_rule":
            rec = select_columns(features, ["recency_days"]).to_numpy()[:, 0].clip(min=0.0)
            return rec / (rec + float(self.horizon_days))
        if self.method_ == "recency_logistic":
            return self.model_.predict_proba(_recency_matrix(features))[:, 1]
        with threadpool_limits(limits=self.n_threads):
            proba = self.model_.predict_proba(select_columns(features, self.features).to_numpy())[:, 1]
        return np.clip(proba, 0.0, 1.0)
