"""The weekly `retrain_models` task: fit a candidate on the as-of date's data and approve it only if
`ml.approval` finds it no worse than the current approved model.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pandas as pd

from custseg.config import Settings
from custseg.registry import APPROVED, NOT_FITTED, REJECTED, Registry
from custseg.steps.score import MINIMUM_HINT, FitMinimum, fit_sample, read_ml_inputs
from custseg.warehouse import connect, quote_ident

log = logging.getLogger(__name__)


# -- weekly ----------------------------------------------------------------------------------
def retrain(settings: Settings, as_of_date: dt.date, run_id: str, dag_id: str = "retrain_models") -> dict[str, Any]:
    """Fit a candidate as of ``as_of_date`` and approve it only if it is not worse than the current model.

    Needs the nightly run of ``as_of_date`` to have built the feature marts (checked: training on a
    stale build would label recent buyers as churned). Returns the decision, also recorded in
    ``ml.model_runs.decision_reason``.
    """
    # imported here: imports scikit-learn (tests/test_architecture.py LAZY)
    from ml.approval import decide
    from ml.bundle import fit_models

    with connect(settings) as wh:
        wh.bootstrap()
        built = wh.fetchall(f"select max(as_of_date) from {quote_ident(settings.build_schema)}.fct_customer_features")
        built_as_of = pd.Timestamp(built[0][0]).date() if built and built[0][0] is not None else None
        if built_as_of != as_of_date:
            raise RuntimeError(f"the build schema holds features as of {built_as_of}, not {as_of_date}: "
                               f"run the nightly customer_segmentation DAG for {as_of_date} first")
        sample_range, sample = fit_sample(wh, settings.build_schema)
        transactions, customers, engagement = read_ml_inputs(wh, settings.build_schema, sample_range)
        registry = Registry(wh)
        entry = registry.latest_approved(as_of_date)
        current = None
        if entry is not None:
            try:
                current = registry.load(entry)
            except Exception as exc:
                log.warning("current model %s cannot be loaded (%s): comparing with its registered metrics only",
                            entry.model_version, exc)
        fitted = current is not None and current.has_models
        previous = current.centroids if fitted else None
        minimum = FitMinimum.from_env()
        candidate = fit_models(transactions, customers, as_of_date, random_state=0, previous_centroids=previous,
                               previous_names=current.cluster_names if fitted else None,
                               engagement=engagement, min_buyers=minimum.buyers,
                               min_repeat_buyers=minimum.repeat_buyers)
        candidate.metrics["fit_sample"] = sample
        summary: dict[str, Any] = {
            "as_of_date": as_of_date.isoformat(),
            "candidate": candidate.model_version,
            "current": entry.model_version if entry else None,
        }
        if not candidate.has_models:
            # refused, not failed: the data will not change on a retry; the current model stays
            reason = f"{candidate.metrics.get('not_fitted')} ({MINIMUM_HINT})"
            registry.record_not_fitted(candidate, reason=reason, run_id=run_id, dag_id=dag_id)
            summary.update(decision=NOT_FITTED, reason=reason)
            log.warning("retrain as of %s: %s", as_of_date, reason)
            return summary
        if entry is not None and candidate.model_version == entry.model_version:
            summary.update(decision="unchanged", reason="the candidate is the current model (same data and settings)")
            return summary
        decision = decide(candidate.metrics, entry.metrics if entry else None)
        candidate.metrics = {**candidate.metrics, "approval": {
            "current": summary["current"], "approved": decision.approved, "comparisons": decision.comparisons}}
        # imported here: imports scikit-learn (tests/test_architecture.py LAZY)
        from ml.bundle import json_safe

        candidate.metrics = json_safe(candidate.metrics)
        registry.register(candidate, status=APPROVED if decision.approved else REJECTED, reason=decision.reason,
                          run_id=run_id, dag_id=dag_id)
    summary.update(decision=APPROVED if decision.approved else REJECTED, reason=decision.reason)
    (log.info if decision.approved else log.warning)("retrain as of %s: %s %s (%s)", as_of_date, summary["decision"],
                                                     candidate.model_version, decision.reason)
    return summary
