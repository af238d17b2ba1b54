"""Running the real DAG from a command: the project-local Airflow set-up and ``dag.test`` for one date.

``custseg run``, ``custseg demo`` and ``custseg rebuild`` run the same ``customer_segmentation`` DAG
the scheduler runs, in-process, one logical date at a time.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import subprocess
import sys
from pathlib import Path

from custseg.config import DAGS_DIR, DEFAULT_HOME
from custseg.ops import progress


def airflow_env_defaults() -> None:
    """Project-local Airflow (SQLite metadata) unless the user configured their own: ``airflow_home/``
    beside ``data/`` (custseg.config.DEFAULT_HOME), and the project's ``dags/``."""
    os.environ.setdefault("AIRFLOW_HOME", str(DEFAULT_HOME / "airflow_home"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # a busy machine imports the DAG files (Airflow, pandas, the steps) slowly
    os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")


def ensure_airflow_db() -> None:
    home = Path(os.environ["AIRFLOW_HOME"])
    marker = home / ".custseg-db-ready"
    if marker.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    marker.touch()


# Imported by the tasks of every run anyway (dbt by transform, GX by validate_raw and audit), here so
# that the first task's gc.freeze() (custseg.ops.run_audit.freeze_long_lived_objects) covers them too; pymc
# is left out, as only a run that fits models needs it and it takes ~10 s to import.
EVERY_RUN_IMPORTS = ("dbt.cli.main", "great_expectations", "custseg.steps.quality", "custseg.steps.score")


def run_dag(as_of_date: dt.date, conf: dict | None = None, dag_id: str = "customer_segmentation") -> str:
    """Run a real DAG (the nightly one unless told) for one logical date (dag.test: in-process, no scheduler)."""
    airflow_env_defaults()
    ensure_airflow_db()
    # imported here: Airflow (3 s) (tests/test_architecture.py LAZY)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    logical = dt.datetime.combine(as_of_date, dt.time(), tzinfo=dt.UTC)
    for module in EVERY_RUN_IMPORTS:
        importlib.import_module(module)
    display = progress.active()
    if display is not None:
        display.run_started(f"{dag_id} {as_of_date}", len(dag.tasks))
    dag_run = dag.test(logical_date=logical, run_conf=conf or {})
    state = str(getattr(dag_run, "state", "unknown")).rsplit(".", 1)[-1].lower()
    if display is not None:
        display.run_finished(state)
    ran = [ti for ti in dag_run.get_task_instances() if ti.state is not None]
    if state == "success" and not ran:
        # Airflow marks a run without schedulable tasks (e.g. a logical date before the DAG's
        # start_date) successful; nothing was computed, so that is a failure for the caller.
        raise SystemExit(f"{dag_id} as of {as_of_date}: no task ran (logical date before start_date?)")
    return state
