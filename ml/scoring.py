"""The nightly scoring entry point: features → clusters, churn, CLV → one label row per customer.

``score_customers`` is pure and deterministic: same transactions, customers, ``as_of`` and
parameters give identical labels, metrics and ``model_version`` (seeds are fixed, inputs are
sorted before use, and nothing reads the clock). Wall-clock timings are returned separately in
``ScoringResult.timings`` so they never leak into compared outputs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

from ml.churn import DEFAULT_HORIZON_DAYS, ChurnModel, risk_band
from ml.clustering import DEFAULT_K_RANGE, PROSPECT_CLUSTER_NAME, BehaviourClusterer, cluster_profiles
from ml.features import FEATURE_COLUMNS, clv_summary, customer_features, prepare_transactions

ML_SCHEMA_VERSION = "v1"
"""Prefix of ``model_version``; bump it when a code change alters outputs for identical inputs."""

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
    """

    labels: pd.DataFrame
    cluster_profiles: pd.DataFrame
    metrics: dict[str, Any]
    model_version: str
    centroids: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)


def _fingerprint(
    transactions: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: dt.date,
    params: dict[str, Any],
    previous_centroids: pd.DataFrame | None,
) -> str:
    """Short hash of everything that determines the models: data as of ``as_of``, params, versions."""
    import sklearn

    digest = hashlib.sha256()
    digest.update(json.dumps({"as_of": as_of.isoformat(), **params}, sort_keys=True, default=str).encode())
    digest.update(pd.util.hash_pandas_object(transactions, index=False).to_numpy().tobytes())
    # Customers matter too (engagement columns reach the cluster profiles); sorted, so the
    # warehouse's row order does not change the version.
    keyed = customers.assign(customer_id=customers["customer_id"].astype(str))
    keyed = keyed.sort_values("customer_id", kind="stable")
    digest.update(pd.util.hash_pandas_object(keyed, index=False).to_numpy().tobytes())
    if previous_centroids is not None:
        digest.update(pd.util.hash_pandas_object(previous_centroids.sort_index(), index=True).to_numpy().tobytes())
    digest.update(f"sklearn={sklearn.__version__}".encode())
    with contextlib.suppress(PackageNotFoundError):  # odd installs without metadata: hash without it
        digest.update(f"pymc-marketing={version('pymc-marketing')}".encode())
    return f"{ML_SCHEMA_VERSION}-{digest.hexdigest()[:12]}"


def _json_safe(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python, recursively: metrics go to JSON/jsonb columns,
    and PostgreSQL's jsonb rejects the ``NaN`` token that ``json.dumps`` emits by default."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _empty_profiles() -> pd.DataFrame:
    return pd.DataFrame(columns=["cluster_id", "customers", *FEATURE_COLUMNS, "cluster_name"])


def score_customers(
    transactions: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: dt.date,
    *,
    random_state: int = 0,
    previous_centroids: pd.DataFrame | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    discount_rate_annual: float = 0.10,
    n_threads: int | None = 1,
) -> ScoringResult:
    """Segment, churn-score and value every customer of ``customers`` as of ``as_of``.

    Buyers (≥ 1 purchase on or before ``as_of``) get a cluster, churn probability and band, and
    CLV outputs. Prospects get ``cluster_id`` <NA>, ``cluster_name`` "prospects (no purchase
    yet)", NaN scores and a None band. Buyers missing from ``customers`` are not labelled (the
    contract is one row per known customer) and are counted in ``metrics['buyers_not_in_customers']``.
    ``n_threads`` caps OpenMP/BLAS threads (see ``ml.churn``); it does not change results.
    """
    as_of = pd.Timestamp(as_of).date()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tx = prepare_transactions(transactions, as_of)
    customer_ids = customers["customer_id"].astype(str).drop_duplicates()
    params = {
        "random_state": random_state,
        "horizon_days": horizon_days,
        "k_range": list(k_range),
        "discount_rate_annual": discount_rate_annual,
    }
    model_version = _fingerprint(tx, customers, as_of, params, previous_centroids)

    features = customer_features(tx, as_of, customers)
    timings["features"] = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "n_customers": len(customer_ids),
        "n_buyers": len(features),
        "n_prospects": int((~customer_ids.isin(features.index)).sum()),
        "buyers_not_in_customers": int((~features.index.isin(customer_ids)).sum()),
    }

    labels = pd.DataFrame({"customer_id": customer_ids.to_numpy()})
    profiles = _empty_profiles()
    centroids = pd.DataFrame(columns=list(FEATURE_COLUMNS))
    scores = pd.DataFrame(index=features.index)
    if len(features):
        t0 = time.perf_counter()
        clusterer = BehaviourClusterer(k_range=k_range, random_state=random_state, n_threads=n_threads).fit(features)
        metrics["cluster_alignment"] = "none"
        if previous_centroids is not None and len(previous_centroids):
            try:
                clusterer.align_to(previous_centroids)
                metrics["cluster_alignment"] = "aligned"
            except ValueError as exc:
                # Incompatible centroids (e.g. the feature set changed): keep canonical ids and
                # say so, rather than failing the nightly run over cosmetic id stability.
                metrics["cluster_alignment"] = f"skipped: {exc}"
        profiles = cluster_profiles(features, clusterer.labels_)
        centroids = clusterer.centroids_
        names = dict(zip(profiles["cluster_id"].astype(int), profiles["cluster_name"], strict=True))
        scores["cluster_id"] = clusterer.labels_
        scores["cluster_name"] = [names[int(c)] for c in clusterer.labels_]
        metrics.update(
            {
                "k": int(clusterer.k_),
                "silhouette": float(clusterer.silhouette_),
                "silhouette_by_k": {int(k): float(v) for k, v in clusterer.silhouette_by_k_.items()},
            }
        )
        timings["clustering"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        churn = ChurnModel(horizon_days, random_state=random_state, n_threads=n_threads).fit(tx, as_of)
        scores["churn_probability"] = churn.predict_proba(features)
        metrics["churn"] = churn.metrics_
        metrics["churn_baseline"] = churn.baseline_metrics_
        timings["churn"] = time.perf_counter() - t0

        from ml.clv import CLVModel  # lazy: PyMC import is slow

        t0 = time.perf_counter()
        summary = clv_summary(tx, as_of)
        clv = CLVModel(random_state=random_state).fit(summary)
        predicted = clv.predict(summary, discount_rate_annual=discount_rate_annual).set_index("customer_id")
        scores = scores.join(predicted)
        metrics["clv"] = {**clv.params_, **{k: v for k, v in clv.fit_info_.items() if not k.endswith("_seconds")}}
        timings["clv"] = time.perf_counter() - t0
        timings.update({f"clv_{k}": v for k, v in clv.fit_info_.items() if k.endswith("_seconds")})

    labels = labels.join(scores, on="customer_id")
    for col in ("churn_probability", "p_alive", "expected_purchases_90d", "predicted_clv_12m"):
        labels[col] = labels[col].astype(float) if col in labels else np.nan
    labels["cluster_id"] = labels["cluster_id"] if "cluster_id" in labels else pd.Series(pd.NA, index=labels.index)
    labels["cluster_id"] = labels["cluster_id"].astype("Int64")
    name = labels["cluster_name"] if "cluster_name" in labels else pd.Series(None, index=labels.index, dtype=object)
    labels["cluster_name"] = name.astype(object).where(labels["cluster_id"].notna(), PROSPECT_CLUSTER_NAME)
    # object dtype keeps None (SQL NULL) for prospects; a pandas string dtype would turn it into NaN.
    labels["churn_risk_band"] = pd.Series(
        risk_band(labels["churn_probability"].to_numpy()), dtype=object, index=labels.index
    )
    timings["total"] = time.perf_counter() - started
    return ScoringResult(
        labels=labels.loc[:, list(LABEL_COLUMNS)],
        cluster_profiles=profiles,
        metrics=_json_safe(metrics),
        model_version=model_version,
        centroids=centroids,
        timings=timings,
    )
