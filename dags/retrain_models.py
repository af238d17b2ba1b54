"""
# retrain_models

Weekly refit of the ML models (behavioural clusters, churn risk, BG/NBD + Gamma-Gamma lifetime
value), **as of the day before the run's logical date**: the run triggered on Sunday 06:00 UTC
trains on the data of Saturday's nightly `customer_segmentation` run, which must have finished
(the task checks the build schema's `as_of_date` and fails, then retries, if it has not).

1. **retrain**: fits a candidate bundle on the build schema's feature marts, compares its
   out-of-fold churn metrics and silhouette with the current approved model's (tolerances in
   `ml/approval.py`: ROC AUC and PR AUC −0.01, Brier +0.005, silhouette −0.05; a BG/NBD
   fallback is never approved over a real fit), and registers it in `ml.model_runs` as
   `approved` or `rejected` with the reason. Artifacts go to `CUSTSEG_MODEL_DIR` and to
   `ml.model_artifacts`. A rejected candidate leaves the current model in place.
   Below the minimum (`CUSTSEG_MIN_BUYERS`, default 200 buyers, of whom `CUSTSEG_MIN_REPEAT_BUYERS`,
   default 50, bought on two days or more) nothing is fitted: the task records a `not_fitted` row
   with the reason in `ml.model_runs`, returns it, and the current model stays.

The nightly run scores with the latest approved model trained on or before its date.
Business logic lives in `custseg/steps/retrain.py` and `ml/`; this file only wires it.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, CronTriggerTimetable, task

from custseg import steps
from custseg.config import load_settings
from custseg.ops.run_audit import EARLIEST_LOGICAL_DATE, default_args

settings = load_settings()

# The data of the last complete nightly run: the day before the trigger date.
AS_OF = "{{ macros.ds_add(ds, -1) }}"

with DAG(
    dag_id="retrain_models",
    description="Weekly refit of clusters, churn and CLV models; approve only if not worse than the current",
    doc_md=__doc__,
    schedule=CronTriggerTimetable("0 6 * * 0", timezone="UTC"),
    start_date=EARLIEST_LOGICAL_DATE,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args=default_args(retry_delay=dt.timedelta(minutes=15)),
    tags=["custseg", "ml", "weekly"],
) as dag:

    @task(execution_timeout=dt.timedelta(hours=2))
    def retrain(as_of: str, run_id: str | None = None) -> dict[str, object]:
        return steps.retrain.retrain(settings, dt.date.fromisoformat(as_of), run_id)

    retrain(as_of=AS_OF)
