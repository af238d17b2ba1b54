"""One module per task of the nightly DAG, in the order they run.

``prepare`` (and ``byo``, the order-export split) -> ``ingest`` (``extract`` for table sources)
-> ``quality.validate_raw`` -> ``identity`` -> ``transform`` (dbt) -> ``score`` -> ``transform`` (dbt's assemble) ->
``quality.audit`` -> ``publish`` -> ``docs`` -> ``report`` (the self-contained HTML run report); ``retrain``
is the weekly ``retrain_models`` DAG's task, and ``activate`` is the ``activate_audiences`` DAG's task
(audiences and alerts for CRM and ad tools after each publish) and ``custseg export``'s.

Each step is a plain function of the settings, the run's ``as_of_date`` and its run id: the DAGs
wire them, and the CLI and the tests call them directly.
"""

from custseg.steps import (
    activate,
    byo,
    docs,
    extract,
    identity,
    ingest,
    prepare,
    publish,
    quality,
    report,
    retrain,
    score,
    transform,
)

__all__ = ["activate", "byo", "docs", "extract", "identity", "ingest", "prepare", "publish", "quality", "report",
           "retrain", "score", "transform"]
