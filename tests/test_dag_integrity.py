"""DAG integrity: every DAG imports cleanly and carries tags, retries and an owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from custseg.catalogue import CHANNELS_BY_TABLE
from custseg.config import PROJECT_DIR


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_DIR / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "customer_segmentation" in dagbag.dag_ids


def test_every_dag_has_tags_owner_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id} has no retries by default"


def test_nightly_dag_shape(dagbag) -> None:
    dag = dagbag.get_dag("customer_segmentation")
    assert dag.max_active_runs == 1
    ids = set(dag.task_ids)
    # one ingest task per source of the default sources file, which declares every catalogue channel
    assert {t for t in ids if t.startswith("ingest.")} == {f"ingest.{table}" for table in CHANNELS_BY_TABLE}
    for step in ("prepare", "validate_raw", "score", "audit", "publish", "docs"):
        assert step in ids
    # dbt runs as two tasks, one `dbt build` each (custseg/steps/transform.py): no task per model
    assert {"transform", "assemble"} <= ids
    assert not any(t.startswith(("transform.", "assemble.")) for t in ids)
    # order: ingest -> validate -> identities -> transform -> score -> assemble -> audit -> publish -> docs
    assert dag.get_task("transform").upstream_task_ids == {"resolve_identities"}
    assert dag.get_task("score").upstream_task_ids == {"transform"}
    assert dag.get_task("assemble").upstream_task_ids == {"score"}
    assert dag.get_task("audit").upstream_task_ids == {"assemble"}
    publish = dag.get_task("publish")
    assert publish.upstream_task_ids == {"audit"}
    assert dag.get_task("docs").upstream_task_ids == {"publish"}
    assert dag.get_task("report").upstream_task_ids == {"publish"}
    assert publish.outlets, "publish must emit the Assets of the published tables"
    # bad data is not retried; validation and audit fail fast
    assert dag.get_task("validate_raw").retries == 0
    assert dag.get_task("audit").retries == 0
    # a failed dbt test fails its build; a retry would rebuild the same tables and fail the same way
    assert dag.get_task("transform").retries == dag.get_task("assemble").retries == 0


def test_duckdb_tasks_never_overlap(dagbag) -> None:
    dag = dagbag.get_dag("customer_segmentation")
    assert dag.max_active_tasks == 1
