"""The retraining gate: approve a candidate bundle only if it is not worse than the current one.

Each gated metric is compared with the current approved model's registered value; the
candidate is rejected when it is worse by more than the tolerance:

| metric | better is | tolerance |
|---|---|---|
| churn ROC AUC (out of fold) | higher | 0.01 |
| churn PR AUC (out of fold) | higher | 0.01 |
| churn Brier score (out of fold) | lower | 0.005 |
| churn expected calibration error (10 bins) | lower | 0.02 |
| clustering silhouette (sampled) | higher | 0.05 |
| BG/NBD fit | a real fit | a candidate that fell back to the historical rate while the current did not is rejected |

Why tolerances instead of "strictly better": the metrics of two fits a week apart differ by
sampling noise of about ±0.01 AUC on a few thousand customers (measured on the demo data with
different splits), so "strictly better" would reject most retrains for noise, and the model
would silently age. A tolerance lets a comparable model through (it has seen a newer week)
while stopping a real regression: a broken feed, a degenerate fit, a fallback.
A metric the current model does not have (it fell back, e.g. right after go-live, or it was
registered before the ECE existed) is not gated; a metric the candidate lacks while the current
has it is a rejection. The churn metrics are measured on each fit's latest labelled window
(``ml.churn``); their bootstrap intervals are recorded beside them (``metrics['churn']['intervals']``)
but the gate compares point values with the tolerances above, which are about that noise. The
top-decile lift is no longer recorded as a criterion anywhere (one customer moves it by 0.005 on
CDNOW).

Pure: dicts in (``ModelBundle.metrics``), decision out; the registry records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GATES: tuple[tuple[str, tuple[str, ...], str, float], ...] = (
    # name, path in metrics, direction, tolerance
    ("churn.roc_auc", ("churn", "roc_auc"), "higher", 0.01),
    ("churn.pr_auc", ("churn", "pr_auc"), "higher", 0.01),
    ("churn.brier", ("churn", "brier"), "lower", 0.005),
    # 10 bins on ~2,000 customers carry 0.01-0.02 of sampling noise (its bootstrap interval)
    ("churn.ece", ("churn", "ece"), "lower", 0.02),
    ("silhouette", ("silhouette",), "higher", 0.05),
)


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str
    comparisons: list[dict[str, Any]] = field(default_factory=list)


def _get(metrics: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def decide(candidate: dict[str, Any], current: dict[str, Any] | None) -> Decision:
    """Approve ``candidate`` unless a gated metric is worse than ``current``'s beyond its tolerance."""
    if current is None:
        return Decision(True, "approved: no approved model to compare with")
    failures: list[str] = []
    comparisons: list[dict[str, Any]] = []
    for name, path, direction, tolerance in GATES:
        new, old = _get(candidate, path), _get(current, path)
        row = {"metric": name, "candidate": new, "current": old, "direction": direction, "tolerance": tolerance}
        if old is None:
            row["result"] = "not gated (current has no value)"
        elif new is None:
            row["result"] = "fail"
            failures.append(f"{name}: candidate has no value, current {old:.4f}")
        else:
            worse_by = (old - new) if direction == "higher" else (new - old)
            row["worse_by"] = worse_by
            row["result"] = "fail" if worse_by > tolerance else "pass"
            if worse_by > tolerance:
                failures.append(f"{name}: candidate {new:.4f} vs current {old:.4f} ({direction} is better, "
                                f"worse by {worse_by:.4f} > tolerance {tolerance})")
        comparisons.append(row)
    new_bg = (candidate.get("clv") or {}).get("bgnbd_method")
    old_bg = (current.get("clv") or {}).get("bgnbd_method")
    if old_bg == "bgnbd_map_flat" and new_bg != "bgnbd_map_flat":
        failures.append(f"clv: candidate BG/NBD fell back to {new_bg} while the current model is a real fit")
    comparisons.append({"metric": "clv.bgnbd_method", "candidate": new_bg, "current": old_bg})
    if failures:
        return Decision(False, "rejected: " + "; ".join(failures), comparisons)
    return Decision(True, "approved: no gated metric worse than the current model's beyond its tolerance",
                    comparisons)
