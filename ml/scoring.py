"""The nightly scoring entry points: features → clusters, churn, CLV → one label row per customer.

``score_with(bundle, ...)`` applies an already fitted :class:`ml.bundle.ModelBundle` (the
registry's approved one) to the data as of a date; ``score_customers`` fits a bundle on the
same data first (``fit_models`` + ``score_with``). Both are pure and deterministic: same
inputs give identical labels, metrics and ``model_version`` (seeds are fixed, inputs are sorted
before use, and nothing reads the clock). Wall-clock timings are returned separately in
``ScoringResult.timings`` so they never leak into compared outputs.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.bundle import (
    DEFAULT_DISCOUNT_RATE_ANNUAL,
    ML_SCHEMA_VERSION,
    ModelBundle,
    churn_inputs,
    fit_models,
    json_safe,
)
from ml.churn import DEFAULT_HORIZON_DAYS, risk_band
from ml.clustering import DEFAULT_K_RANGE, PROSPECT_CLUSTER_NAME, ClusterTotals
from ml.drift import bin_counts, psi_from_counts
from ml.features import FEATURE_COLUMNS, clv_summary, customer_features, prepare_transactions

__all__ = ["LABEL_COLUMNS", "ML_SCHEMA_VERSION", "ChunkScorer", "ScoringResult", "score_customers", "score_with"]

LABEL_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "cluster_id",
    "cluster_name",
    "churn_probability",
    "churn_risk_band",
    "p_alive",
    "expected_purchases_90d",
    "predicted_clv_12m",
)


@dataclass
class ScoringResult:
    """Output of :func:`score_customers`.

    ``labels``: one row per customer of ``customers`` in input order, :data:`LABEL_COLUMNS`.
    ``cluster_profiles``: cluster_id, customers, feature means, cluster_name.
    ``centroids``: cluster centres (original units, indexed by cluster_id); store them and pass
    them back as ``previous_centroids`` next run to keep cluster ids stable.
    ``metrics``: deterministic model metrics, JSON-safe (undefined values such as a holdout AUC
    under a fallback are None, never NaN); ``timings``: seconds per stage (not deterministic).
    ``drift``: PSI per main feature between the bundle's training data and today
    (``ml.drift.psi``); ``bundle``: the models that scored.
    """

    labels: pd.DataFrame
    cluster_profiles: pd.DataFrame
    metrics: dict[str, Any]
    model_version: str
    centroids: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    drift: pd.DataFrame | None = None
    bundle: ModelBundle | None = None


def _empty_profiles() -> pd.DataFrame:
    return pd.DataFrame(columns=["cluster_id", "customers", *FEATURE_COLUMNS, "cluster_name"])


def score_customers(
    transactions: pd.DataFrame,
    customers: pd.DataFrame,
    as_of_date: dt.date,
    *,
    random_state: int = 0,
    previous_centroids: pd.DataFrame | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    discount_rate_annual: float = DEFAULT_DISCOUNT_RATE_ANNUAL,
    n_threads: int | None = 1,
    engagement: pd.DataFrame | None = None,
) -> ScoringResult:
    """Fit the models on the history up to ``as_of_date``, then score every customer as of ``as_of_date``.

    See :func:`score_with` for the labels. ``metrics`` holds the fit's metrics (k, silhouette,
    churn with its baselines, CLV parameters) plus the scoring counts.
    """
    started = time.perf_counter()
    bundle = fit_models(
        transactions,
        customers,
        as_of_date,
        random_state=random_state,
        previous_centroids=previous_centroids,
        horizon_days=horizon_days,
        k_range=k_range,
        discount_rate_annual=discount_rate_annual,
        n_threads=n_threads,
        engagement=engagement,
    )
    result = score_with(bundle, transactions, customers, as_of_date, engagement)
    result.timings = {**bundle.timings, **result.timings, "total": time.perf_counter() - started}
    return result


def score_with(
    bundle: ModelBundle,
    transactions: pd.DataFrame,
    customers: pd.DataFrame,
    as_of_date: dt.date,
    engagement: pd.DataFrame | None = None,
) -> ScoringResult:
    """Label every customer of ``customers`` as of ``as_of_date`` with the models of ``bundle``.

    ``engagement`` (``fct_customer_engagement_snapshots`` rows) must hold the snapshot as of
    ``as_of_date`` when the churn model was trained with engagement features.

    ``as_of_date`` may be later than ``bundle.trained_as_of`` (the nightly run scores with the latest
    approved model) but not earlier: a model trained on the future must not score the past.
    Buyers (≥ 1 purchase on or before ``as_of_date``) get a cluster, churn probability and band, and
    CLV outputs. Prospects get ``cluster_id`` <NA>, ``cluster_name`` "prospects (no purchase
    yet)", NaN scores and a None band. Buyers missing from ``customers`` are not labelled (the
    contract is one row per known customer) and are counted in ``metrics['buyers_not_in_customers']``.
    Cluster names are the ones given at training time, so a name means the same thing every night.

    The same as one chunk of :class:`ChunkScorer`, which scores a population too large to hold at once.
    """
    scorer = ChunkScorer(bundle, as_of_date)
    labels = scorer.score(transactions, customers, engagement)
    return scorer.result(labels)


class ChunkScorer:
    """Scores customers chunk by chunk with one bundle (a customer base too large to hold at once),
    with the same labels, cluster profiles, drift and metrics as :func:`score_with` on all of them
    (the metrics add ``scored_in_chunks`` when there was more than one).

    Chunks must partition the customers: each holds every transaction, the ``customers`` row and the
    engagement snapshot of each of its customers, and no customer is in two chunks. ``score`` returns
    a chunk's labels; ``result`` adds up what the chunks saw (cluster sizes and feature sums, drift
    bin counts, customer counts), so nothing per customer is kept between chunks. Pass
    ``snapshot_exists`` when tonight's engagement snapshot exists: a chunk may hold none of its rows.
    """

    def __init__(self, bundle: ModelBundle, as_of_date: dt.date, *, snapshot_exists: bool = False) -> None:
        as_of_date = pd.Timestamp(as_of_date).date()
        if as_of_date < bundle.trained_as_of:
            raise ValueError(f"model {bundle.model_version} was trained as of {bundle.trained_as_of}, "
                             f"after {as_of_date}")
        self.bundle = bundle
        self.as_of_date = as_of_date
        self.snapshot_exists = snapshot_exists
        self.chunks = 0
        self._counts = {"n_customers": 0, "n_buyers": 0, "n_prospects": 0, "buyers_not_in_customers": 0,
                        "unscored_buyers": 0}
        self._totals: ClusterTotals | None = None
        self._bins: dict[str, np.ndarray] = {}
        self.timings: dict[str, float] = {}

    def _time(self, stage: str, started: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started

    def score(
        self, transactions: pd.DataFrame, customers: pd.DataFrame, engagement: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """The labels (:data:`LABEL_COLUMNS`) of one chunk's customers, in the order of ``customers``."""
        bundle, as_of_date = self.bundle, self.as_of_date
        started = time.perf_counter()
        tx = prepare_transactions(transactions, as_of_date)
        customer_ids = customers["customer_id"].astype(str).drop_duplicates()
        features = customer_features(tx, as_of_date, customers)
        self._time("score_features", started)
        self.chunks += 1
        counts = self._counts
        counts["n_customers"] += len(customer_ids)
        counts["n_buyers"] += len(features)
        # get_indexer on the unique ids: pandas' isin on Arrow strings is a Python loop (4x slower at 1M)
        counts["n_prospects"] += int((features.index.get_indexer(customer_ids) < 0).sum())
        counts["buyers_not_in_customers"] += int((pd.Index(customer_ids).get_indexer(features.index) < 0).sum())
        for col, bins in bin_counts(bundle.reference, features).items():
            self._bins[col] = self._bins[col] + bins if col in self._bins else bins

        labels = pd.DataFrame({"customer_id": customer_ids.to_numpy()})
        scores = pd.DataFrame(index=features.index)
        if len(features) and bundle.has_models:
            t0 = time.perf_counter()
            cluster_ids = bundle.clusterer.predict(features)
            totals = ClusterTotals.of(features, cluster_ids)
            self._totals = totals if self._totals is None else self._totals + totals
            scores["cluster_id"] = cluster_ids
            scores["cluster_name"] = [bundle.cluster_names[int(c)] for c in cluster_ids]
            self._time("score_clusters", t0)

            t0 = time.perf_counter()
            summary = clv_summary(tx, as_of_date)
            inputs = churn_inputs(bundle, features, summary, engagement, as_of_date, self.snapshot_exists)
            scores["churn_probability"] = bundle.churn.predict_proba(inputs)
            self._time("score_churn", t0)

            t0 = time.perf_counter()
            discount = float(bundle.params.get("discount_rate_annual", DEFAULT_DISCOUNT_RATE_ANNUAL))
            predicted = bundle.clv.predict(summary, discount_rate_annual=discount).set_index("customer_id")
            scores = scores.join(predicted)
            self._time("score_clv", t0)
        elif len(features):
            counts["unscored_buyers"] += len(features)  # a bundle fitted on no buyer cannot score any

        labels = labels.join(scores, on="customer_id")
        for col in ("churn_probability", "p_alive", "expected_purchases_90d", "predicted_clv_12m"):
            labels[col] = labels[col].astype(float) if col in labels else np.nan
        labels["cluster_id"] = labels["cluster_id"] if "cluster_id" in labels else pd.Series(pd.NA, index=labels.index)
        labels["cluster_id"] = labels["cluster_id"].astype("Int64")
        name = labels["cluster_name"] if "cluster_name" in labels else pd.Series(None, index=labels.index, dtype=object)
        # the prospect name only for customers without a purchase: a buyer whom a bundle without
        # models (too few buyers to fit) cannot cluster has no cluster name either
        is_buyer = features.index.get_indexer(labels["customer_id"]) >= 0
        unclustered = pd.Series(np.where(is_buyer, None, PROSPECT_CLUSTER_NAME), index=labels.index, dtype=object)
        labels["cluster_name"] = name.astype(object).where(labels["cluster_id"].notna(), unclustered)
        # object dtype keeps None (SQL NULL) for prospects; a pandas string dtype would turn it into NaN.
        labels["churn_risk_band"] = pd.Series(
            risk_band(labels["churn_probability"].to_numpy()), dtype=object, index=labels.index
        )
        self._time("score_total", started)
        return labels.loc[:, list(LABEL_COLUMNS)]

    def result(self, labels: pd.DataFrame | None = None) -> ScoringResult:
        """Profiles, drift and metrics over every chunk scored; ``labels`` are the labels to return
        with them (all of them, when they were kept), else an empty frame."""
        bundle = self.bundle
        profiles = self._totals.profiles(bundle.cluster_names) if self._totals is not None else _empty_profiles()
        drift = psi_from_counts(bundle.reference, self._bins)
        counts = dict(self._counts)
        unscored = counts.pop("unscored_buyers")
        metrics: dict[str, Any] = {
            **bundle.metrics,
            "as_of_date": self.as_of_date.isoformat(),
            "model_version": bundle.model_version,
            **counts,
        }
        if self._totals is not None:
            metrics["cluster_sizes"] = {str(int(c)): int(n) for c, n in self._totals.customers.items()}
        if unscored:
            metrics["unscored_buyers"] = unscored
        metrics["drift_max_psi"] = float(drift["psi"].max()) if len(drift) else None
        if self.chunks > 1:
            metrics["scored_in_chunks"] = self.chunks
        if labels is None:
            labels = pd.DataFrame({c: pd.Series(dtype=object) for c in LABEL_COLUMNS})
        return ScoringResult(
            labels=labels,
            cluster_profiles=profiles,
            metrics=json_safe(metrics),
            model_version=bundle.model_version,
            centroids=bundle.centroids,
            timings=dict(self.timings),
            drift=drift,
            bundle=bundle,
        )
