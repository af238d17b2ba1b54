"""Churn propensity: probability that a buyer makes no purchase in the next ``horizon_days``.

Training uses a time split inside the history we already have, so labels are observed, not
guessed: features are computed as of ``cutoff = as_of_date - horizon`` from transactions on or before
the cutoff, and the label is 1 when the customer made no purchase in ``(cutoff, as_of_date]``. The
fitted model is then applied to features computed as of ``as_of_date``.

Model (``estimator="logistic"``, the default): a logistic regression on standardised features:
``log1p`` of the counts, money and durations, the channel and discount shares, and the logit
of ``bgnbd_p_no_purchase``, BG/NBD's own probability of no purchase in the horizon (computed
by the caller from a BG/NBD fitted on the history up to the same date as the other features:
the cutoff for training, ``as_of_date`` for scoring; BG/NBD uses no labels, so nothing leaks). The
supervised model therefore starts from the buy-till-you-die model and learns what the RFM
summary misses (channel mix, discount affinity, basket breadth, spend) and, when the caller has
them, point-in-time engagement (``ml.features.SNAPSHOT_FEATURES``: web sessions and recency,
e-mails sent/opened/clicked, each as of the same date as the other features): a customer who has
quietly dropped out stops visiting and opening e-mails before the purchase gap shows it, which
no purchase-only model can see. Logistic regression is
fitted by log-loss, so its probabilities are calibrated by construction; the holdout Brier
score and the test "mean prediction ≈ base rate" check it. ``estimator="hgb"`` keeps the v1
``HistGradientBoostingClassifier`` + ``CalibratedClassifierCV``; on the demo data and CDNOW it
did *not* beat the BG/NBD baseline (1,000-2,000 training customers are too few for trees to
add anything over a strong parametric prior), so it is not the default. See ``ml/README.md``.

Evaluation: out-of-fold over the (possibly sampled) training population with ``cv_folds``
stratified folds (default 4): every customer is held out exactly once, so the metrics use
4× more customers than a single 25 % holdout and are far less noisy, which matters when the
retraining gate compares them. The model that scores is then refitted on all of them.
``metrics_`` has ROC AUC, PR AUC, Brier and the top-decile lift, and ``baselines_metrics_`` the
same for baselines on the same customers:

* ``recency_days``: days since the last purchase (higher = more churn), always;
* any baseline the caller passes to ``fit`` as a :class:`Baseline`; ``ml.bundle`` passes
  ``bgnbd_expected_purchases``: BG/NBD expected purchases in the horizon as of the cutoff
  (fewer expected purchases = more churn).

Ranking metrics use the raw baseline score; the baseline's probabilities (for the Brier score)
come from a logistic fit on ``log1p(score)`` within each fold. ``baseline_metrics_`` is the
recency baseline (kept for v1 callers).

Degenerate data (documented fallbacks, recorded in ``metrics_['method']``):

* ``recency_logistic``: both classes present but fewer than ``min_customers`` customers or
  fewer than ``min_per_class`` in the minority class: a logistic regression on
  ``log1p(recency_days)`` fitted on all of them (no evaluation, metrics are NaN).
* ``recency_rule``: a single class or no customers at all (e.g. a store that opened less than
  ``horizon_days`` ago): ``p = recency / (recency + horizon)``, i.e. 0.5 when the customer has
  been silent for one horizon, 0.75 after three.

Threads: fitting and prediction run under ``threadpoolctl`` with ``n_threads`` (default 1):
OpenMP/BLAS threads spin-wait on a busy 2-core worker; results do not depend on it.

Scale: above ``max_train`` customers (default 200,000) the model is fitted and evaluated on a
stratified sample of that size (``metrics_['sample_size']``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ml.features import BASE_FEATURE_COLUMNS, SNAPSHOT_FEATURES, customer_features, is_purchase, select_columns

DEFAULT_HORIZON_DAYS = 90

BGNBD_FEATURE = "bgnbd_p_no_purchase"
"""Extra model input: BG/NBD P(no purchase in the horizon), supplied by the caller (``ml.bundle``)."""

CHURN_FEATURES: tuple[str, ...] = BASE_FEATURE_COLUMNS
"""Model inputs. Engagement columns are excluded on purpose: ``customers`` holds today's
engagement snapshot, not the snapshot at the training cutoff, so using them would train on
information from the label window (leakage) and inflate holdout metrics. :data:`BGNBD_FEATURE`
and the point-in-time ``SNAPSHOT_FEATURES`` (engagement as of the cutoff) are added when the
caller supplies them."""

RISK_BANDS: tuple[tuple[str, float, float], ...] = (
    ("low", 0.0, 0.25),
    ("medium", 0.25, 0.5),
    ("high", 0.5, 0.75),
    ("critical", 0.75, 1.0),
)
"""(band, lower inclusive, upper exclusive; 'critical' includes 1.0): low < 0.25 ≤ medium < 0.5
≤ high < 0.75 ≤ critical. Fixed cut-offs on a calibrated probability, so a band means the same
thing every night ("high" = the customer more likely churns than not)."""


@dataclass(frozen=True)
class Baseline:
    """A churn baseline on the training population as of the cutoff.

    ``value``: non-negative, indexed by ``customer_id`` (customers missing from it get 0);
    ``higher_is_churn``: True for "days since last purchase", False for "expected purchases".
    """

    value: pd.Series
    higher_is_churn: bool


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
    as_of_date: dt.date | pd.Timestamp | str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> tuple[pd.DataFrame, pd.Series]:
    """Features as of ``as_of_date - horizon_days`` and the churn label observed in the following window.

    Population: customers with at least one purchase on or before the cutoff. ``y`` is 1 when
    they have no purchase event (``net_amount >= 0``) in ``(cutoff, as_of_date]``. Transactions
    after ``as_of_date`` are ignored.
    """
    as_of_ts = pd.Timestamp(as_of_date).normalize()
    cutoff = as_of_ts - pd.Timedelta(days=horizon_days)
    X = customer_features(transactions, cutoff)
    dates = pd.to_datetime(transactions["order_date"])
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    dates = dates.dt.normalize()
    in_window = (dates > cutoff) & (dates <= as_of_ts) & is_purchase(transactions["net_amount"])
    active = pd.Index(transactions.loc[in_window, "customer_id"].astype(str).unique())
    y = pd.Series((active.get_indexer(X.index) < 0).astype(int), index=X.index, name="churned")
    return X, y


def _metrics(y: np.ndarray, score: np.ndarray, proba: np.ndarray | None) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier and top-decile lift of ``score`` against labels ``y``.

    The top-decile lift is kept for readers of older registry rows; it is not a criterion any more
    (on 2,357 CDNOW customers one customer moves it by 0.005): :func:`evaluate_scores` gives the
    bootstrap intervals that are."""
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


# -- calibration and bootstrap intervals ------------------------------------------------------
RELIABILITY_BINS = 10
"""Equal-width probability bins of the reliability table and the ECE (Guo et al. 2017)."""

BOOTSTRAP_DRAWS = 1000
"""Bootstrap resamples behind every 95 % interval (percentile method)."""


def reliability_table(y: np.ndarray, proba: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, float]]:
    """Per equal-width bin of predicted probability: its edges, customers, mean prediction, observed rate.

    Empty bins are listed with 0 customers (and null means), so every table has ``bins`` rows."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    idx = np.minimum((np.clip(proba, 0.0, 1.0) * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=proba, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    rows = []
    for b in range(bins):
        rows.append({"bin": b, "lower": b / bins, "upper": (b + 1) / bins, "customers": int(n[b]),
                     "mean_predicted": float(sum_p[b] / n[b]) if n[b] else float("nan"),
                     "observed_rate": float(sum_y[b] / n[b]) if n[b] else float("nan")})
    return rows


ROC_POINTS = 50
"""At most this many points of each scorer's ROC curve are kept in the metrics (the run report draws them)."""


def roc_points(y: np.ndarray, score: np.ndarray, points: int = ROC_POINTS) -> list[dict[str, float]]:
    """The ROC curve (false and true positive rates) thinned to at most ``points`` points, both ends kept.

    Thinning picks evenly spaced thresholds of sklearn's curve, which is exact at the points kept; a curve
    needs both classes, so it is empty otherwise."""
    y, score = np.asarray(y, dtype=int), np.asarray(score, dtype=float)
    if y.size == 0 or y.min() == y.max():
        return []
    fpr, tpr, _ = roc_curve(y, score)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
    return [{"fpr": float(fpr[i]), "tpr": float(tpr[i])} for i in keep]


class _WeightedScorer:
    """ROC AUC, PR AUC, Brier and ECE of one score under any customer weights (a bootstrap draw is a
    vector of multinomial counts), each in O(n) after one sort: 1,000 draws on 200,000 customers
    take seconds, where refitting sklearn's metrics per draw would take minutes.

    With unit weights the values equal sklearn's ``roc_auc_score``, ``average_precision_score`` and
    ``brier_score_loss`` (ties included: scores are grouped by distinct value, as sklearn does)."""

    def __init__(self, y: np.ndarray, score: np.ndarray, proba: np.ndarray | None, bins: int) -> None:
        self.y = np.asarray(y, dtype=float)
        # distinct scores in descending order (thresholds for AP), ascending index for AUC
        values, inverse = np.unique(-np.asarray(score, dtype=float), return_inverse=True)
        self.inverse, self.n_values = inverse.ravel(), len(values)
        self.proba = None if proba is None else np.asarray(proba, dtype=float)
        self.bin = None if proba is None else np.minimum((np.clip(self.proba, 0, 1) * bins).astype(int), bins - 1)
        self.bins = bins

    def __call__(self, w: np.ndarray) -> dict[str, float]:
        y = self.y
        pos = np.bincount(self.inverse, weights=w * y, minlength=self.n_values)  # by descending score
        neg = np.bincount(self.inverse, weights=w * (1.0 - y), minlength=self.n_values)
        total_pos, total_neg = pos.sum(), neg.sum()
        out = {"roc_auc": float("nan"), "pr_auc": float("nan"), "brier": float("nan"), "ece": float("nan")}
        if total_pos > 0 and total_neg > 0:
            neg_below = total_neg - np.cumsum(neg)  # negatives with a strictly lower score
            out["roc_auc"] = float((pos * (neg_below + 0.5 * neg)).sum() / (total_pos * total_neg))
            tp, fp = np.cumsum(pos), np.cumsum(neg)
            precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
            out["pr_auc"] = float((precision * pos).sum() / total_pos)
        if self.proba is not None and w.sum() > 0:
            out["brier"] = float((w * (self.proba - y) ** 2).sum() / w.sum())
            gap = np.bincount(self.bin, weights=w * (self.proba - y), minlength=self.bins)
            out["ece"] = float(np.abs(gap).sum() / w.sum())
        return out


def evaluate_scores(
    y: np.ndarray,
    scores: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    *,
    draws: int = BOOTSTRAP_DRAWS,
    random_state: int = 0,
    bins: int = RELIABILITY_BINS,
) -> dict[str, dict[str, Any]]:
    """Point values and bootstrap 95 % intervals of ROC AUC, PR AUC, Brier and ECE for several
    scorers on the same customers and the *same* resamples (so their intervals are comparable).

    ``scores``: name → (ranking score, higher = more churn; probability or None). Returns per name
    ``roc_auc``, ``pr_auc``, ``brier``, ``ece`` (point values), ``intervals`` ({metric: [lo, hi]}),
    ``reliability`` (:func:`reliability_table`, when there are probabilities), ``roc_curve``
    (:func:`roc_points`), ``customers``,
    ``base_rate`` and ``draws``."""
    y = np.asarray(y, dtype=int)
    n = len(y)
    scorers = {name: _WeightedScorer(y, s, p, bins) for name, (s, p) in scores.items()}
    ones = np.ones(n)
    rng = np.random.default_rng(random_state)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in scorers}
    for _ in range(draws if n else 0):
        w = rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)
        for name, scorer in scorers.items():
            samples[name].append(scorer(w))
    out: dict[str, dict[str, Any]] = {}
    for name, scorer in scorers.items():
        point = scorer(ones) if n else dict.fromkeys(("roc_auc", "pr_auc", "brier", "ece"), float("nan"))
        intervals = {}
        for metric in point:
            values = np.array([s[metric] for s in samples[name]], dtype=float)
            values = values[np.isfinite(values)]
            intervals[metric] = ([float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]
                                 if values.size else [float("nan"), float("nan")])
        proba = scores[name][1]
        out[name] = {**point, "intervals": intervals, "customers": n,
                     "base_rate": float(y.mean()) if n else float("nan"), "draws": draws,
                     "reliability": reliability_table(y, proba, bins) if proba is not None and n else [],
                     "roc_curve": roc_points(y, scores[name][0])}
    return out


def _recency_matrix(X: pd.DataFrame) -> np.ndarray:
    return np.log1p(select_columns(X, ["recency_days"]).to_numpy().clip(min=0.0))


_LOG_FEATURES = frozenset(
    {"recency_days", "frequency", "monetary", "tenure_days", "avg_order_value", "category_breadth",
     "orders_90d", "spend_90d", *SNAPSHOT_FEATURES}
)  # fmt: skip


def _design(X: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Model matrix: log1p for skewed columns, logit for the BG/NBD probability, shares as they are."""
    cols = []
    for name in features:
        values = select_columns(X, [name]).to_numpy()[:, 0]
        if name in _LOG_FEATURES:
            values = np.log1p(np.clip(values, 0.0, None))
        elif name == BGNBD_FEATURE:
            p = np.clip(values, 1e-6, 1 - 1e-6)
            values = np.log(p / (1 - p))
        cols.append(values)
    return np.column_stack(cols) if cols else np.empty((len(X), 0))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class ChurnModel:
    """Churn classifier trained on the customer base's own recent history, calibrated on the latest window.

    Two labelled windows before ``as_of_date`` (``H = horizon_days``):

    * the **latest** window: features as of ``as_of_date − H``, outcome in ``(as_of_date − H, as_of_date]``;
    * the **previous** window: features as of ``as_of_date − 2H``, outcome in ``(as_of_date − 2H, as_of_date − H]``.

    The ranking model (logistic regression on purchase features and BG/NBD's P(no purchase)) is
    fitted on the previous window; a calibrator (a logistic regression on the ranking model's
    logit, i.e. Platt scaling, plus the engagement snapshot when the caller has one for the latest
    window) is fitted on the latest window. The calibrator thus learns how the ranking model's
    probabilities carry over to a quarter it has not seen, at the latest churn rate, which is the
    situation of every score. Metrics are measured on the latest window: out of time for the
    ranking model, out of fold (``cv_folds``) for the calibrator, next to the baselines on the same
    customers, each with bootstrap 95 % intervals (:func:`evaluate_scores`).

    When the previous window is unusable (history shorter than two horizons, or fewer than
    ``min_customers`` customers / ``min_per_class`` in a class), the v2 single-window model is
    fitted on the latest window instead, with out-of-fold metrics; ``metrics_['calibration']``
    says which.

    Fitted attributes: ``metrics_`` (roc_auc, pr_auc, brier, ece, intervals, reliability,
    top_decile_lift, base_rate, n_train, n_holdout, n_customers, sample_size, method, calibration,
    evaluation, horizon_days, cutoff), ``baselines_metrics_`` (recency and the caller's baselines,
    same customers), ``baseline_metrics_`` (the recency one), ``evaluation_`` (the model and every
    baseline, frequency included, with intervals and reliability tables), ``features_`` (all inputs
    scoring needs), ``model_`` (the ranking model, or None for the ``recency_rule`` fallback) and
    ``calibrator_`` (None when there is no previous window).
    """

    def __init__(
        self,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        *,
        random_state: int = 0,
        cv_folds: int = 4,
        max_train: int = 200_000,
        min_customers: int = 200,
        min_per_class: int = 20,
        features: Sequence[str] = (*CHURN_FEATURES, BGNBD_FEATURE, *SNAPSHOT_FEATURES),
        estimator: str = "logistic",
        n_threads: int | None = 1,
        bootstrap_draws: int = BOOTSTRAP_DRAWS,
    ) -> None:
        self.horizon_days = horizon_days
        self.random_state = random_state
        self.cv_folds = cv_folds
        self.max_train = max_train
        self.min_customers = min_customers
        self.min_per_class = min_per_class
        self.features = features
        self.estimator = estimator
        self.n_threads = n_threads
        self.bootstrap_draws = bootstrap_draws

    def _classifier(self, n_train: int) -> Pipeline | CalibratedClassifierCV:
        if self.estimator == "logistic":
            return Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression(C=1.0, max_iter=2000))])
        if self.estimator != "hgb":
            raise ValueError(f"estimator must be 'logistic' or 'hgb', got {self.estimator!r}")
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

    @staticmethod
    def _calibrator() -> Pipeline:
        return Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression(C=1.0, max_iter=2000))])

    def fit(
        self,
        transactions: pd.DataFrame,
        as_of_date: dt.date | pd.Timestamp | str,
        baselines: Mapping[str, Baseline] | None = None,
        extra_features: pd.DataFrame | None = None,
        previous_extra_features: pd.DataFrame | None = None,
    ) -> ChurnModel:
        """Fit the ranking model on the previous window and the calibrator on the latest one.

        ``extra_features`` (indexed by customer_id, as of the latest window's date ``as_of_date − H``)
        and ``previous_extra_features`` (as of ``as_of_date − 2H``) add columns such as
        :data:`BGNBD_FEATURE`; a configured feature that is absent is left out (``features_``).
        Engagement snapshot columns are used by the calibrator only (the warehouse keeps no
        snapshot two horizons back). ``baselines`` are scored on the latest window's customers,
        next to ``recency_days`` and ``frequency``.
        """
        self._check_estimator()
        with threadpool_limits(limits=self.n_threads):
            return self._fit(transactions, as_of_date, dict(baselines or {}), extra_features, previous_extra_features)

    def _check_estimator(self) -> None:
        if self.estimator not in {"logistic", "hgb"}:
            raise ValueError(f"estimator must be 'logistic' or 'hgb', got {self.estimator!r}")

    def evaluate(self, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
        """This model's metrics on a labelled frame (e.g. another model's training population)."""
        proba = self.predict_proba(X)
        return _metrics(y.to_numpy(), proba, proba)

    def _window(
        self, transactions: pd.DataFrame, label_end: pd.Timestamp, extra: pd.DataFrame | None
    ) -> tuple[pd.DataFrame, pd.Series]:
        X, y = build_training_set(transactions, label_end, self.horizon_days)
        if extra is not None and len(X):
            columns = extra.reindex(X.index).astype(float)
            # absent = no evidence: BG/NBD's coin flip, or an unengaged customer
            X = X.join(columns.fillna({BGNBD_FEATURE: 0.5, **SNAPSHOT_FEATURES}), rsuffix="_extra")
        return X, y

    def _sample(self, X: pd.DataFrame, y: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
        if len(y) <= self.max_train:
            return X, y
        X_fit, _, y_fit, _ = train_test_split(X, y, train_size=self.max_train, stratify=y,
                                              random_state=self.random_state)
        return X_fit, y_fit

    def _usable(self, y: pd.Series) -> str | None:
        counts = np.bincount(y.to_numpy(), minlength=2) if len(y) else np.zeros(2, dtype=int)
        if len(y) < self.min_customers or counts.min() < self.min_per_class:
            return (f"{len(y)} customers, {int(counts[1])} churned / {int(counts[0])} not "
                    f"(need {self.min_customers} and {self.min_per_class} per class)")
        return None

    def _fit(
        self,
        transactions: pd.DataFrame,
        as_of_date: dt.date | pd.Timestamp | str,
        baselines: dict[str, Baseline],
        extra_features: pd.DataFrame | None,
        previous_extra_features: pd.DataFrame | None,
    ) -> ChurnModel:
        as_of_ts = pd.Timestamp(as_of_date).normalize()
        horizon = pd.Timedelta(days=self.horizon_days)
        X, y = self._window(transactions, as_of_ts, extra_features)
        self.features_ = [f for f in self.features if f in X.columns]
        self.stage1_features_ = list(self.features_)
        self.stage2_features_: list[str] = []
        self.calibrator_: Pipeline | None = None
        self.evaluation_: dict[str, Any] = {}
        cutoff = (as_of_ts - horizon).date()
        info: dict[str, object] = {
            "horizon_days": int(self.horizon_days),
            "cutoff": cutoff.isoformat(),
            "n_customers": len(y),
            "estimator": self.estimator,
            "features": list(self.features_),
        }
        counts = np.bincount(y.to_numpy(), minlength=2) if len(y) else np.zeros(2, dtype=int)
        nan_metrics = _metrics(np.array([], dtype=int), np.array([]), None)
        self.baseline_metrics_ = dict(nan_metrics)
        self.baselines_metrics_ = {name: dict(nan_metrics) for name in ("recency_days", *baselines)}
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
                "evaluation": "none",
            }
            return self

        if self._usable(y) is not None:
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
                "evaluation": "none",
            }
            return self

        X_fit, y_fit = self._sample(X, y)
        target = y_fit.to_numpy()
        folds = list(StratifiedKFold(n_splits=self.cv_folds, shuffle=True, random_state=self.random_state)
                     .split(np.zeros(len(target)), target))
        previous_end = as_of_ts - horizon
        X_prev, y_prev = self._window(transactions, previous_end, previous_extra_features)
        # the ranking model sees what exists two horizons back: purchases and BG/NBD, no snapshot
        ranking = [f for f in self.features_ if f not in SNAPSHOT_FEATURES and f in X_prev.columns]
        shortfall = self._usable(y_prev) if len(ranking) else "no ranking feature"
        oof = np.empty(len(target))
        if shortfall is None:
            X_prev, y_prev = self._sample(X_prev, y_prev)
            self.stage1_features_ = ranking
            self.stage2_features_ = [f for f in self.features_ if f in SNAPSHOT_FEATURES]
            self.features_ = [*ranking, *self.stage2_features_]
            self.model_ = self._classifier(len(y_prev)).fit(_design(X_prev, ranking), y_prev.to_numpy())
            stage2 = self._stage2_design(X_fit)
            for train_idx, test_idx in folds:
                calibrator = self._calibrator().fit(stage2[train_idx], target[train_idx])
                oof[test_idx] = calibrator.predict_proba(stage2[test_idx])[:, 1]
            self.calibrator_ = self._calibrator().fit(stage2, target)
            calibration = ("platt scaling on the latest window" if not self.stage2_features_
                           else "logistic on the latest window: ranking logit + engagement snapshot")
            evaluation = (f"latest window {cutoff}..{as_of_ts.date()}: out of time for the ranking model "
                          f"(fitted on {(previous_end - horizon).date()}..{previous_end.date()}), "
                          f"{self.cv_folds}-fold out-of-fold for the calibrator")
            n_train = len(y_prev)
        else:
            design = _design(X_fit, self.features_)
            for train_idx, test_idx in folds:
                clf = self._classifier(len(train_idx)).fit(design[train_idx], target[train_idx])
                oof[test_idx] = clf.predict_proba(design[test_idx])[:, 1]
            self.model_ = self._classifier(len(target)).fit(design, target)
            fit_on = "log-loss fit" if self.estimator == "logistic" else self.model_.method
            calibration = f"{fit_on} on the latest window (no usable previous window: {shortfall})"
            evaluation = f"{self.cv_folds}-fold out-of-fold on the latest window"
            n_train = len(y)
        self.method_ = "logistic_regression" if self.estimator == "logistic" else "hist_gradient_boosting"

        all_baselines = {
            "recency_days": Baseline(X["recency_days"], higher_is_churn=True),
            "frequency": Baseline(X["frequency"], higher_is_churn=False),
            **baselines,
        }
        scored: dict[str, tuple[np.ndarray, np.ndarray | None]] = {"model": (oof, oof)}
        for name, baseline in all_baselines.items():
            value = baseline.value.reindex(X_fit.index).fillna(0.0).clip(lower=0.0).astype(float).to_numpy()
            feature = np.log1p(value)[:, None]
            base_oof = np.empty(len(target))
            for train_idx, test_idx in folds:
                logistic = LogisticRegression().fit(feature[train_idx], target[train_idx])
                base_oof[test_idx] = logistic.predict_proba(feature[test_idx])[:, 1]
            score = value * (1.0 if baseline.higher_is_churn else -1.0)
            scored[name] = (score, base_oof)
            if name != "frequency":  # registry rows before v2.1 list these two; frequency is in evaluation_
                self.baselines_metrics_[name] = {**_metrics(target, score, base_oof), "method": name}
        self.baseline_metrics_ = self.baselines_metrics_["recency_days"]
        evaluated = evaluate_scores(target, scored, draws=self.bootstrap_draws, random_state=self.random_state)
        self.evaluation_ = {"window_start": cutoff.isoformat(), "window_end": as_of_ts.date().isoformat(),
                            "scorers": evaluated}
        model_eval = evaluated["model"]
        self.metrics_ = {
            **_metrics(target, oof, oof),
            "ece": model_eval["ece"],
            "intervals": model_eval["intervals"],
            "reliability": model_eval["reliability"],
            **info,
            "features": list(self.features_),
            "ranking_features": list(self.stage1_features_),
            "calibration_features": list(self.stage2_features_),
            "n_train": n_train,
            "n_holdout": len(target),
            "sample_size": len(target),
            "method": self.method_,
            "calibration": calibration,
            "evaluation": evaluation,
        }
        return self

    def _stage2_design(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrator inputs: the ranking model's logit, then the engagement snapshot (log1p)."""
        score = self.model_.predict_proba(_design(X, self.stage1_features_))[:, 1]
        return np.column_stack([_logit(score), _design(X, self.stage2_features_)])

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(no purchase in the next ``horizon_days``) for each row of ``customer_features(..., as_of_date)``.

        ``features`` must also carry the extra columns the model was fitted with (``features_``).
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
            if getattr(self, "calibrator_", None) is not None:
                proba = self.calibrator_.predict_proba(self._stage2_design(features))[:, 1]
            else:  # single-window model, or one pickled before the calibrator existed
                ranking = getattr(self, "stage1_features_", self.features_)
                proba = self.model_.predict_proba(_design(features, ranking))[:, 1]
        return np.clip(proba, 0.0, 1.0)
