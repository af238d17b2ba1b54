"""Fit once, score many times: the clusterer, churn model and CLV model as one versioned bundle.

``fit_models`` fits everything on the history up to ``as_of_date`` and returns a :class:`ModelBundle`
that carries what a registry needs (version, training window, training-data hash, parameters
including the CLV parameters, holdout metrics, library versions, and the training
distribution of the main features for drift). ``ml.scoring.score_with`` applies a bundle to
the data of any later date; ``ml.scoring.score_customers`` is ``fit_models`` + ``score_with``.

The bundle is plain Python objects and pickles with ``joblib``/``pickle`` (the CLV model keeps
numbers only, see ``ml.clv``). Storing it is the plumbing's job (``custseg.registry``): nothing
here touches a file, a database or the clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

from ml.churn import BGNBD_FEATURE, DEFAULT_HORIZON_DAYS, Baseline, ChurnModel
from ml.clustering import DEFAULT_K_RANGE, BehaviourClusterer, cluster_profiles
from ml.clv import CLVModel, holdout_validation
from ml.drift import reference_profile
from ml.features import (
    CUSTOMER_CODE,
    FEATURE_COLUMNS,
    SNAPSHOT_FEATURES,
    clv_summary,
    customer_features,
    engagement_at,
    prepare_transactions,
)

ML_SCHEMA_VERSION = "v2"
"""Prefix of ``model_version``; bump it when a code change alters outputs for identical inputs."""

DEFAULT_DISCOUNT_RATE_ANNUAL = 0.10
"""Annual discount rate of ``predicted_clv_12m`` (10 %, converted to a monthly rate)."""

LIBRARIES: tuple[str, ...] = ("scikit-learn", "pymc-marketing", "pymc", "numpy", "pandas", "scipy")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine the models (read from metadata: nothing is imported)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def json_safe(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python, recursively: metrics go to JSON/jsonb columns,
    and PostgreSQL's jsonb rejects the ``NaN`` token that ``json.dumps`` emits by default."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def training_data_hash(
    transactions: pd.DataFrame, customers: pd.DataFrame, engagement: pd.DataFrame | None = None
) -> str:
    """sha256 of the prepared transactions (as of the training date), the customers and the
    engagement snapshot at the churn cutoff, row-order free."""
    digest = hashlib.sha256()
    data = transactions.drop(columns=[CUSTOMER_CODE], errors="ignore")  # derived from customer_id
    digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    # Customers matter too (engagement columns reach the cluster profiles); sorted, so the
    # warehouse's row order does not change the hash.
    keyed = customers.assign(customer_id=customers["customer_id"].astype(str))
    keyed = keyed.sort_values("customer_id", kind="stable")
    digest.update(pd.util.hash_pandas_object(keyed, index=False).to_numpy().tobytes())
    if engagement is not None:
        digest.update(pd.util.hash_pandas_object(engagement.sort_index(), index=True).to_numpy().tobytes())
    return digest.hexdigest()


def _model_version(
    data_hash: str, as_of_date: dt.date, params: dict[str, Any], previous_centroids: pd.DataFrame | None
) -> str:
    """Short hash of everything that determines the models: data as of ``as_of_date``, params, versions."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"as_of_date": as_of_date.isoformat(), **params}, sort_keys=True, default=str).encode())
    digest.update(data_hash.encode())
    if previous_centroids is not None:
        digest.update(pd.util.hash_pandas_object(previous_centroids.sort_index(), index=True).to_numpy().tobytes())
    libs = library_versions()
    digest.update(f"sklearn={libs.get('scikit-learn')}".encode())
    digest.update(f"pymc-marketing={libs.get('pymc-marketing')}".encode())
    return f"{ML_SCHEMA_VERSION}-{digest.hexdigest()[:12]}"


@dataclass
class ModelBundle:
    """Everything fitted as of ``trained_as_of``; models are None when there was no buyer to fit on."""

    model_version: str
    trained_as_of: dt.date
    training_window_start: dt.date | None
    training_window_end: dt.date
    training_data_hash: str
    params: dict[str, Any]
    clusterer: BehaviourClusterer | None
    cluster_names: dict[int, str]
    churn: ChurnModel | None
    clv: CLVModel
    reference: dict[str, dict[str, list[float]]]
    metrics: dict[str, Any]
    library_versions: dict[str, str]
    schema_version: str = ML_SCHEMA_VERSION
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def has_models(self) -> bool:
        return self.clusterer is not None

    @property
    def centroids(self) -> pd.DataFrame:
        if self.clusterer is None:
            return pd.DataFrame(columns=list(FEATURE_COLUMNS))
        return self.clusterer.centroids_

    def clv_params(self) -> dict[str, float | None]:
        params = getattr(self.clv, "params_", {}) if self.clv is not None else {}
        return json_safe({k: params.get(k, float("nan")) for k in ("r", "alpha", "a", "b", "p", "q", "v")})

    def registry_params(self) -> dict[str, Any]:
        """JSON-safe parameters for the registry: settings, CLV parameters, clusters, churn model."""
        churn = self.churn.metrics_ if self.churn is not None else {}
        return json_safe(
            {
                **self.params,
                "schema_version": self.schema_version,
                "clv": self.clv_params(),
                "clv_time_unit": "weeks",
                "k": len(self.cluster_names),
                "cluster_names": {str(k): v for k, v in sorted(self.cluster_names.items())},
                "centroids": self.centroids.to_dict(orient="index"),
                "churn_method": churn.get("method"),
                "churn_calibration": churn.get("calibration"),
                "churn_cutoff": churn.get("cutoff"),
                "churn_sample_size": churn.get("sample_size"),
                "feature_reference": self.reference,
            }
        )


def churn_inputs(
    bundle: ModelBundle,
    features: pd.DataFrame,
    summary: pd.DataFrame,
    engagement: pd.DataFrame | None = None,
    as_of_date: dt.date | None = None,
    snapshot_exists: bool = False,
) -> pd.DataFrame:
    """Today's churn-model inputs: the features plus BG/NBD P(no purchase) from the bundle's CLV model
    and, when the model was trained with them, the engagement snapshot as of ``as_of_date``.

    ``snapshot_exists``: the snapshot as of ``as_of_date`` exists even if ``engagement`` holds none of these
    customers (a chunk of unengaged customers): they get the defaults instead of an error."""
    used = getattr(bundle.churn, "features_", ()) if bundle.churn is not None else ()
    if BGNBD_FEATURE in used:
        horizon = float(bundle.params.get("horizon_days", DEFAULT_HORIZON_DAYS))
        p0 = pd.Series(bundle.clv.probability_no_purchase(summary, future_days=horizon),
                       index=summary["customer_id"].astype(str).to_numpy())
        features = features.assign(**{BGNBD_FEATURE: p0.reindex(features.index).fillna(0.5).to_numpy()})
    if any(name in used for name in SNAPSHOT_FEATURES):
        today = (engagement_at(engagement, as_of_date, features.index, snapshot_exists) if as_of_date is not None
                 else None)
        if today is None:
            # defaults would make every customer look unengaged, i.e. about to churn: refuse instead
            raise ValueError(f"model {bundle.model_version} uses engagement snapshots, but there is none as of "
                             f"{as_of_date} (fct_customer_engagement_snapshots)")
        # the snapshot's definition wins over a same-named column of today's customer snapshot
        features = features.drop(columns=[c for c in today.columns if c in features.columns]).join(today)
    return features


def repeat_buyers(features: pd.DataFrame) -> int:
    """Buyers with purchases on two days or more (BG/NBD's repeat buyers: ``frequency`` >= 2 days)."""
    return int((features["frequency"] >= 2).sum()) if len(features) else 0


def fit_shortfall(features: pd.DataFrame, min_buyers: int, min_repeat_buyers: int) -> str | None:
    """Why models must not be fitted on ``features`` (one row per buyer), or None when they may.

    Below a few hundred buyers the clusters, the churn holdout and the BG/NBD parameters describe
    noise (one customer makes a "model"), and an approved model would score every later night."""
    buyers, repeat = len(features), repeat_buyers(features)
    if buyers == 0:
        return "no buyer to fit on"
    if buyers < min_buyers or repeat < min_repeat_buyers:
        return (f"too few buyers to fit models: {buyers:,} buyers, {repeat:,} of them repeat buyers; "
                f"the minimum is {min_buyers:,} buyers of whom {min_repeat_buyers:,} repeat buyers")
    return None


def fit_models(
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
    min_buyers: int = 1,
    min_repeat_buyers: int = 0,
    clv_holdout_days: int = 273,
    previous_names: Mapping[int, str] | None = None,
) -> ModelBundle:
    """Fit clusters, churn and CLV on the history up to ``as_of_date`` (rows after it are ignored).

    With fewer than ``min_buyers`` buyers, or fewer than ``min_repeat_buyers`` of them buying on
    two days or more, nothing is fitted: the bundle has no models (``has_models`` is False, it
    scores every label null) and ``metrics['not_fitted']`` says why (:func:`fit_shortfall`).

    ``metrics['clv_holdout']`` validates CLV on a holdout of ``clv_holdout_days`` (39 weeks,
    shortened on short histories: ``ml.clv.holdout_split``); ``metrics['churn_evaluation']`` has the
    churn model and its three baselines with bootstrap intervals and reliability tables.

    ``previous_centroids`` (the current model's) renumbers the new clusters to match, so ids
    stay stable across refits; ``previous_names`` (the current model's ``cluster_names``) keeps a
    matched cluster's name while its profile stays nearly the same (``ml.clustering.name_clusters``).
    Churn: the ranking model is fitted on the window before the latest, calibrated and measured on
    the latest (``ml.churn.ChurnModel``) against days since the last purchase, purchase days and
    BG/NBD expected purchases (fitted as of the churn cutoff).
    ``engagement`` (rows of ``fct_customer_engagement_snapshots``) adds the engagement snapshot
    at the churn cutoff to the churn model's inputs; without a snapshot of that date the churn
    model uses purchases only (``metrics['churn_engagement']`` says which).
    """
    as_of_date = pd.Timestamp(as_of_date).date()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    tx = prepare_transactions(transactions, as_of_date)
    cutoff = pd.Timestamp(as_of_date) - pd.Timedelta(days=horizon_days)
    cutoff_engagement = engagement_at(engagement, cutoff, tx["customer_id"].unique())
    params = {
        "random_state": random_state,
        "horizon_days": horizon_days,
        "k_range": list(k_range),
        "discount_rate_annual": discount_rate_annual,
    }
    data_hash = training_data_hash(tx, customers, cutoff_engagement)
    model_version = _model_version(data_hash, as_of_date, params, previous_centroids)
    features = customer_features(tx, as_of_date, customers)
    timings["features"] = time.perf_counter() - started
    metrics: dict[str, Any] = {"trained_as_of": as_of_date.isoformat(), "n_train_buyers": len(features),
                               "n_train_repeat_buyers": repeat_buyers(features)}
    bundle = ModelBundle(
        model_version=model_version,
        trained_as_of=as_of_date,
        training_window_start=tx["order_date"].min().date() if len(tx) else None,
        training_window_end=as_of_date,
        training_data_hash=data_hash,
        params=params,
        clusterer=None,
        cluster_names={},
        churn=None,
        clv=None,
        reference=reference_profile(features),
        metrics=metrics,
        library_versions=library_versions(),
        timings=timings,
    )
    shortfall = fit_shortfall(features, min_buyers, min_repeat_buyers)
    if shortfall is not None:
        metrics["cluster_alignment"] = "none"
        metrics["not_fitted"] = shortfall
        bundle.metrics = json_safe(metrics)
        return bundle

    t0 = time.perf_counter()
    previous_k = len(previous_centroids) if previous_centroids is not None and len(previous_centroids) else None
    clusterer = BehaviourClusterer(k_range=k_range, random_state=random_state, n_threads=n_threads,
                                   previous_k=previous_k).fit(features)
    metrics["cluster_alignment"] = "none"
    if previous_centroids is not None and len(previous_centroids):
        try:
            clusterer.align_to(previous_centroids)
            metrics["cluster_alignment"] = "aligned"
        except ValueError as exc:
            # Incompatible centroids (e.g. the feature set changed): keep canonical ids and
            # say so, rather than failing the run over cosmetic id stability.
            metrics["cluster_alignment"] = f"skipped: {exc}"
    # the current model's names keep a cluster's name while it stays nearly true (ml.clustering)
    profiles = cluster_profiles(features, clusterer.labels_,
                                previous_names=previous_names if metrics["cluster_alignment"] == "aligned" else None)
    bundle.cluster_names = dict(zip(profiles["cluster_id"].astype(int), profiles["cluster_name"], strict=True))
    metrics.update(
        {
            "k": int(clusterer.k_),
            "silhouette": float(clusterer.silhouette_),
            "silhouette_by_k": {int(k): float(v) for k, v in clusterer.silhouette_by_k_.items()},
            "clusters_merged": int(clusterer.merged_clusters_),
            "min_cluster_size": clusterer.min_size(len(features)),
            "cluster_sizes_at_fit": {int(c): int(n) for c, n in zip(profiles["cluster_id"], profiles["customers"],
                                                                    strict=True)},
        }
    )
    # The fitted labels are one int per customer: not needed to score, so not pickled.
    clusterer.labels_ = np.empty(0, dtype=int)
    bundle.clusterer = clusterer
    timings["clustering"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cutoff_summary = clv_summary(tx, cutoff)
    baselines: dict[str, Baseline] = {}
    extra: pd.DataFrame | None = None
    if len(cutoff_summary):
        cutoff_clv = CLVModel(random_state=random_state, fit_spend=False).fit(cutoff_summary)
        ids = cutoff_summary["customer_id"].to_numpy()
        expected = cutoff_clv.expected_purchases(cutoff_summary, future_days=horizon_days)
        baselines["bgnbd_expected_purchases"] = Baseline(pd.Series(expected, index=ids), higher_is_churn=False)
        extra = pd.DataFrame(
            {BGNBD_FEATURE: cutoff_clv.probability_no_purchase(cutoff_summary, future_days=horizon_days)}, index=ids
        )
        metrics["churn_bgnbd_baseline_fit"] = {
            "method": cutoff_clv.fit_info_["bgnbd_method"],
            **{k: cutoff_clv.params_[k] for k in ("r", "alpha", "a", "b")},
        }
    # The churn ranking model is fitted on the window before the latest (ml.churn): BG/NBD's
    # P(no purchase) as of that window's date, from a BG/NBD fitted on the history up to it.
    previous_cutoff = cutoff - pd.Timedelta(days=horizon_days)
    previous_summary = clv_summary(tx, previous_cutoff)
    previous_extra: pd.DataFrame | None = None
    if len(previous_summary):
        previous_clv = CLVModel(random_state=random_state, fit_spend=False).fit(previous_summary)
        previous_extra = pd.DataFrame(
            {BGNBD_FEATURE: previous_clv.probability_no_purchase(previous_summary, future_days=horizon_days)},
            index=previous_summary["customer_id"].to_numpy())
    timings["churn_bgnbd_baseline"] = time.perf_counter() - t0
    metrics["churn_engagement"] = "snapshot as of the cutoff" if cutoff_engagement is not None else "none"
    if cutoff_engagement is not None:
        extra = cutoff_engagement if extra is None else extra.join(cutoff_engagement, how="outer")

    t0 = time.perf_counter()
    churn = ChurnModel(horizon_days, random_state=random_state, n_threads=n_threads).fit(
        tx, as_of_date, baselines, extra_features=extra, previous_extra_features=previous_extra
    )
    metrics["churn"] = churn.metrics_
    metrics["churn_baseline"] = churn.baseline_metrics_
    metrics["churn_baselines"] = churn.baselines_metrics_
    # the model and every baseline (recency, frequency, BG/NBD) with bootstrap 95 % intervals
    metrics["churn_evaluation"] = churn.evaluation_
    bundle.churn = churn
    timings["churn"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clv = CLVModel(random_state=random_state).fit(clv_summary(tx, as_of_date))
    metrics["clv"] = {**clv.params_, **{k: v for k, v in clv.fit_info_.items() if not k.endswith("_seconds")}}
    # Validation only: BG/NBD + Gamma-Gamma refitted on a calibration period and checked on the
    # holdout that follows it (ml.clv.holdout_validation); the model above, fitted on everything
    # up to as_of_date, is the one that scores.
    t1 = time.perf_counter()
    metrics["clv_holdout"] = holdout_validation(tx, as_of_date, holdout_days=clv_holdout_days,
                                                random_state=random_state)
    timings["clv_holdout"] = time.perf_counter() - t1
    bundle.clv = clv
    timings["clv"] = time.perf_counter() - t0
    timings.update({f"clv_{k}": v for k, v in clv.fit_info_.items() if k.endswith("_seconds")})
    timings["fit_total"] = time.perf_counter() - started
    bundle.metrics = json_safe(metrics)
    return bundle
