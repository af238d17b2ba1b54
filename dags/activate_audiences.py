"""
# activate_audiences

Hands the published segment tables to the tools that act on them, **after each successful publish** of
`customer_segmentation`: the DAG is scheduled on the Asset its publish task emits for
`analytics.customer_segments`. A failed publish emits no Asset event, so a failed night writes nothing.

1. **activate**: writes what `config/activation.yml` (CUSTSEG_ACTIVATION_FILE) lists into
   `<CUSTSEG_EXPORT_DIR>/<as-of date>/`, each file beside its manifest and recorded in `ops.audience_exports`:
   - its audiences (a playbook rule, an RFM segment or a campaign's treated side), one file per channel;
   - the run's `customer_alerts`, one file per channel listed under `alerts`.

   Campaign controls and customers without the channel's consent are left out; the CRM's own reference is
   mapped from `raw`, and e-mail or phone only where the file asks for them. The file is checked, and every
   audience name is checked against the published tables, before anything is written. When the tables have
   been published again since the publish that triggered the run (a later date), the task skips: that
   publish's own run writes them.

Triggered by hand (`airflow dags trigger activate_audiences`, or `dag.test()`), it writes for the date
published now. Rerunning a date writes the same bytes. Logic: `custseg/steps/activate.py`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Asset, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from custseg import steps
from custseg.config import ConfigError, load_settings
from custseg.errors import UsageError
from custseg.ops.run_audit import EARLIEST_LOGICAL_DATE, default_args

settings = load_settings()
PUBLISHED = Asset(steps.publish.asset_uri(settings, steps.publish.ACTIVATION_TRIGGER_TABLE))

with DAG(
    dag_id="activate_audiences",
    description="After each successful publish: audience and alert files for CRM and ad tools",
    doc_md=__doc__,
    schedule=[PUBLISHED],
    start_date=EARLIEST_LOGICAL_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["custseg", "activation"],
) as dag:

    @task
    def activate(triggering_asset_events=None) -> dict:
        published_as_of = steps.activate.published_date_of(triggering_asset_events)
        try:
            return steps.activate.activate(settings, published_as_of)
        except steps.activate.Superseded as exc:
            raise AirflowSkipException(str(exc)) from exc
        except (ConfigError, UsageError) as exc:  # a wrong activation file does not fix itself on retry
            raise AirflowFailException(str(exc)) from exc

    activate()
