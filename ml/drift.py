"""Feature drift: population stability index (PSI) between a model's training data and today.

``reference_profile`` summarises each feature of the training population as decile bins
(edges from the training quantiles; ties merged, so a mostly-constant feature gets fewer
bins) and the share of customers in each. ``psi`` puts today's population into the same bins:

    PSI = Σ_bins (today − training) · ln(today / training)

with empty bins floored at :data:`PSI_EPSILON` so the log stays finite. Conventional reading
(Siddiqi 2006, used in credit scoring): below 0.1 stable, 0.1–0.25 a moderate shift worth a
look, above 0.25 a major shift. The nightly run **warns** at :data:`PSI_WARN` = 0.25 (the
model was trained on a population that no longer looks like today's; consider retraining or
check the inputs) and records every value in ``ml.feature_drift`` whatever its size.

Recency-like features drift by construction as a model ages (everyone is a day older each
night), which is exactly what a weekly retrain absorbs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ml.features import FEATURE_COLUMNS

DRIFT_FEATURES: tuple[str, ...] = (*FEATURE_COLUMNS, "orders_90d", "spend_90d")
"""The main features monitored: the clustering inputs plus the churn model's 90-day activity."""

PSI_MODERATE = 0.10
PSI_WARN = 0.25
PSI_EPSILON = 1e-4
N_BINS = 10


def reference_profile(
    features: pd.DataFrame, columns: Sequence[str] = DRIFT_FEATURES, n_bins: int = N_BINS
) -> dict[str, dict[str, list[float]]]:
    """Per feature: inner bin edges (training quantiles, deduplicated) and the training share per bin.

    JSON-safe (plain lists), so it travels with the model's parameters.
    """
    out: dict[str, dict[str, list[float]]] = {}
    for col in columns:
        if col not in features.columns or len(features) == 0:
            continue
        values = features[col].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        inner = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
        out[col] = {"edges": [float(e) for e in inner], "shares": _shares(_counts(values, inner)).tolist()}
    return out


def _shares(counts: np.ndarray) -> np.ndarray:
    """Each bin's share of the customers counted (no customer: all zero)."""
    return counts / max(counts.sum(), 1.0)


def _counts(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    # right-closed bins: (-inf, e1], (e1, e2], ..., (ek, inf); a value equal to an edge (common for
    # counts) lands in the bin that edge closes, the same way for training and today.
    idx = np.searchsorted(inner_edges, values, side="left")
    return np.bincount(idx, minlength=len(inner_edges) + 1).astype(float)


def bin_counts(reference: dict[str, dict[str, list[float]]], features: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per feature of ``reference`` present in ``features``: today's customers in each reference bin
    (finite values only). Counts of chunks of customers add up to those of all of them."""
    counts: dict[str, np.ndarray] = {}
    for col, ref in reference.items():
        if col in features.columns:
            values = features[col].to_numpy(dtype=float)
            counts[col] = _counts(values[np.isfinite(values)], np.asarray(ref["edges"], dtype=float))
    return counts


def psi(reference: dict[str, dict[str, list[float]]], features: pd.DataFrame) -> pd.DataFrame:
    """PSI per feature of ``features`` against ``reference``: feature, psi, bins, status.

    ``status`` is ``stable`` (< 0.1), ``moderate`` (< 0.25) or ``warn``; features absent from
    today's frame are skipped.
    """
    return psi_from_counts(reference, bin_counts(reference, features))


def psi_from_counts(reference: dict[str, dict[str, list[float]]], counts: dict[str, np.ndarray]) -> pd.DataFrame:
    """:func:`psi` from today's :func:`bin_counts` (e.g. summed over chunks of customers)."""
    rows: list[dict[str, Any]] = []
    for col, ref in reference.items():
        if col not in counts:
            continue
        today = counts[col]
        expected = np.maximum(np.asarray(ref["shares"], dtype=float), PSI_EPSILON)
        actual = np.maximum(_shares(today), PSI_EPSILON)
        value = float(np.sum((actual - expected) * np.log(actual / expected))) if today.sum() else float("nan")
        rows.append({"feature": col, "psi": value, "bins": len(expected), "status": psi_status(value)})
    return pd.DataFrame(rows, columns=["feature", "psi", "bins", "status"])


def psi_status(value: float) -> str:
    if not np.isfinite(value):
        return "no data"
    if value >= PSI_WARN:
        return "warn"
    return "moderate" if value >= PSI_MODERATE else "stable"
