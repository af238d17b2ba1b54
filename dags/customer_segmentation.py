"""
# customer_segmentation

Nightly cross-channel customer segmentation, computed **as of the run's logical date**.

1. **prepare**: create schemas and pipeline tables (idempotent). With the param `orders` (a path to
   one order export, plus `orders_options` for its columns and formats; README "Bring your own
   orders"), it splits the export into daily landing files that this run reads instead.
2. **ingest**: one task per source in `config/sources.yml`; loads the landing partition(s) for the
   logical date into `raw`, quarantines bad rows, audits counts in `ops.load_audit`. In an `orders`
   run only the export is declared, and the other sources record a skipped load. With the param
   `from_raw` (`custseg rebuild`) no source reads landing files: `raw` already holds every row.
3. **validate_raw**: Great Expectations suites on the loaded batch; a blocking failure stops the run.
   **resolve_identities** then links CRM ids, emails, phones and loyalty cards across channels into
   stable customer ids (custseg/steps/identity.py) and writes `raw.identity_map` for dbt.
4. **transform**: one `dbt build` (seeds, staging -> intermediate -> feature marts, and their tests) into
   the build schema; every model's, seed's and test's outcome goes to `ops.dbt_node_results`
   (custseg/steps/transform.py).
5. **score**: ML clusters, churn risk and lifetime value, read and scored in chunks of customers
   (`CUSTSEG_SCORE_CHUNK_CUSTOMERS`) and written to the build schema.
6. **assemble**: a second `dbt build`: the published marts (`customer_segments`, `segment_history`, ...)
   in the build schema, with their contracts and tests.
7. **audit**: GX suite on the assembled build; nothing is published unless it passes.
8. **publish**: replaces the `analytics` tables in one transaction (the history tables: the run's date,
   not the whole history) and emits their Assets, with the run's date in the events' extra; the
   `activate_audiences` DAG is scheduled on them.
9. **docs**: regenerates the static dbt docs site when the dbt project or the catalogue changed.
10. **report**: writes the self-contained HTML run report with charts (`<docs dir>/report/index.html`, and
   `report-<date>.html` beside it; custseg/steps/report.py), read-only from the published tables, `ops` and `ml`.

A failure anywhere before publish leaves yesterday's `analytics` tables untouched; rerunning the
same date finishes the job. Every task try is recorded in `ops.run_audit` and a failure is logged
(and optionally notified) by the callbacks in `custseg/ops/run_audit.py`; `custseg status` summarises them.
See README.md for configuration.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, TaskGroup, task
from airflow.sdk.exceptions import AirflowFailException

from custseg import steps
from custseg.config import PUBLISHED_TABLES, load_settings
from custseg.ops.run_audit import EARLIEST_LOGICAL_DATE, default_args

settings = load_settings()

PUBLISHED_ASSETS = [Asset(steps.publish.asset_uri(settings, table)) for table in PUBLISHED_TABLES]


with DAG(
    dag_id="customer_segmentation",
    description="Nightly cross-channel customer segmentation (ingest -> validate -> dbt -> score -> publish)",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=EARLIEST_LOGICAL_DATE,
    catchup=False,
    max_active_runs=1,
    # DuckDB allows one writer per file: its tasks must never overlap.
    max_active_tasks=1 if settings.warehouse == "duckdb" else 8,
    default_args=default_args(),
    tags=["custseg", "segmentation", "nightly"],
    params={
        "orders": Param(None, type=["null", "string"],
                        description="Path of one order export to run on instead of the landing files "
                                    "(absolute, or relative to the data directory)"),
        "orders_options": Param({}, type="object",
                                description="columns, delimiter, names, date_format, currency, reporting_currency, "
                                            "encoding (the same as the custseg run flags; checked against "
                                            "allow-lists before the run starts work)"),
        "orders_work_dir": Param(None, type=["null", "string"],
                                 description="Where the export's daily split goes (default <data>/byo/<run id>)"),
        # custseg rebuild (custseg/rebuild.py): recompute a date from what raw already holds
        "from_raw": Param(False, type="boolean",
                          description="Read no landing files: raw already holds every row (custseg rebuild); "
                                      "each source records a from_raw load in ops.load_audit"),
    },
) as dag:

    @task
    def prepare(ds: str | None = None, run_id: str | None = None, params: dict | None = None) -> dict | None:
        try:
            # the export's options are checked before the run touches the warehouse or the disk
            steps.byo.check_params(params)
            steps.prepare.prepare_warehouse(settings)
            # split into this run's own folder (<data>/byo/<run id>, or orders_work_dir)
            return steps.byo.split_for_run(settings, params or {}, dt.date.fromisoformat(ds), run_id)
        except steps.byo.ByoError as exc:  # an unusable export does not fix itself on retry
            raise AirflowFailException(str(exc)) from exc

    @task(retries=0)  # bad data does not fix itself on retry
    def validate_raw(ds: str | None = None, run_id: str | None = None, params: dict | None = None) -> dict:
        run_settings = steps.byo.run_settings(settings, params, run_id)
        return steps.quality.validate_raw(run_settings, dt.date.fromisoformat(ds), run_id)

    @task
    def resolve_identities(ds: str | None = None) -> dict[str, int]:
        return steps.identity.resolve_identities(settings, dt.date.fromisoformat(ds))

    # one `dbt build` per group (custseg/steps/transform.py); dbt tests fail the task, and a retry would not help
    @task(retries=0)
    def dbt_build(ds: str | None = None, run_id: str | None = None, params: dict | None = None, ti=None) -> dict:
        return steps.transform.build(steps.byo.reporting_settings(settings, params), ti.task_id,
                                     dt.date.fromisoformat(ds), run_id, try_number=ti.try_number)

    @task
    def score(ds: str | None = None, run_id: str | None = None) -> dict[str, object]:
        return steps.score.score(settings, dt.date.fromisoformat(ds), run_id)

    @task(retries=0)
    def audit(ds: str | None = None, run_id: str | None = None) -> dict[str, bool]:
        return steps.quality.audit(settings, dt.date.fromisoformat(ds), run_id)

    @task(outlets=PUBLISHED_ASSETS)
    def publish(ds: str | None = None, outlet_events=None) -> dict[str, int]:
        counts = steps.publish.publish(settings, dt.date.fromisoformat(ds))
        # emitted only when the task succeeds: the activation DAG reads the date it was published for
        for asset in PUBLISHED_ASSETS:
            outlet_events[asset].extra = steps.publish.asset_extra(dt.date.fromisoformat(ds))
        return counts

    @task
    def docs(ds: str | None = None, params: dict | None = None) -> str:
        return str(steps.docs.build_docs(steps.byo.reporting_settings(settings, params), dt.date.fromisoformat(ds)))

    @task
    def report(ds: str | None = None) -> str:
        return str(steps.report.build_report(settings, dt.date.fromisoformat(ds)))

    with TaskGroup("ingest") as ingest:
        for source in steps.ingest.source_names(settings):

            @task(task_id=source)
            def ingest_source(source: str = source, ds: str | None = None, run_id: str | None = None,
                              params: dict | None = None) -> dict:
                run_settings = steps.byo.run_settings(settings, params, run_id)
                return steps.ingest.ingest(run_settings, source, dt.date.fromisoformat(ds), run_id,
                                           from_raw=bool((params or {}).get("from_raw")))

            ingest_source()

    transform = dbt_build.override(task_id="transform")()
    assemble = dbt_build.override(task_id="assemble")()
    prepare() >> ingest >> validate_raw() >> resolve_identities() >> transform
    # the docs site and the run report both read what was published; one failing leaves the other
    transform >> score() >> assemble >> audit() >> publish() >> [docs(), report()]
