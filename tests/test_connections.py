"""The warehouse's connection: a plain URL for the CLI, else Airflow's connection API, looked up on first use.

Airflow's metadata database as the connection's home is covered under the scheduler (tests/test_scheduler.py);
here, the environment forms Airflow reads outside a task, and what happens when the connection is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from custseg.config import DAGS_DIR, ConfigError, PostgresParams, load_settings

POSTGRES = {"CUSTSEG_WAREHOUSE": "postgres"}


@pytest.fixture(autouse=True)
def _no_connection_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_") or name == "CUSTSEG_POSTGRES_URL":
            monkeypatch.delenv(name)


def test_the_plain_url_is_parsed_by_libpq_rules() -> None:
    settings = load_settings({**POSTGRES, "CUSTSEG_POSTGRES_URL": "postgresql://bi%40corp:p%3As%2Fw@db.example:6543/wh"})
    assert settings.postgres == PostgresParams(host="db.example", port=6543, user="bi@corp", password="p:s/w",
                                               dbname="wh")
    # and back: the URL custseg connects with quotes what needs quoting
    assert settings.postgres.url == "postgresql://bi%40corp:p%3As%2Fw@db.example:6543/wh"


@pytest.mark.parametrize("url, problem", [
    ("mysql://root@db/wh", "must be a postgresql:// URL"),
    ("postgresql://db.example:notaport/wh", "is not a valid PostgreSQL URL"),
    ("postgresql://me:secret@[::1/wh", "is not a valid PostgreSQL URL: end of string reached"),
])
def test_a_bad_url_is_one_line_before_any_work(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"CUSTSEG_POSTGRES_URL {problem}") as error:
        load_settings({**POSTGRES, "CUSTSEG_POSTGRES_URL": url})
    assert "\n" not in str(error.value) and "secret" not in str(error.value)


@pytest.mark.parametrize("form", ["uri", "json"])
def test_without_a_url_the_airflow_connection_is_used(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value = ("postgresql://loader:s%20cret@wh.internal:5433/segments" if form == "uri" else json.dumps(
        {"conn_type": "postgres", "host": "wh.internal", "port": 5433, "login": "loader", "password": "s cret",
         "schema": "segments"}))
    monkeypatch.setenv("AIRFLOW_CONN_CUSTSEG_WAREHOUSE", value)
    settings = load_settings(dict(POSTGRES))
    assert settings.postgres == PostgresParams(host="wh.internal", port=5433, user="loader", password="s cret",
                                               dbname="segments")
    # dbt gets the same connection
    env = settings.dbt_env()
    assert (env["CUSTSEG_PG_HOST"], env["CUSTSEG_PG_PORT"], env["CUSTSEG_PG_DBNAME"]) == ("wh.internal", "5433",
                                                                                         "segments")
    # the plain URL, when set, wins (the CLI outside Airflow)
    with_url = load_settings({**POSTGRES, "CUSTSEG_POSTGRES_URL": "postgresql://other@127.0.0.1/x"})
    assert with_url.postgres.host == "127.0.0.1" and with_url.postgres.dbname == "x"


def test_a_missing_or_foreign_connection_fails_on_first_use_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(dict(POSTGRES))  # settings load: the DAG file parses without the connection
    with pytest.raises(ConfigError, match=r"connection 'custseg_warehouse' is not defined: add it to Airflow "
                                          r"\(AIRFLOW_CONN_CUSTSEG_WAREHOUSE"):
        settings.postgres  # noqa: B018 (the lookup is the point)
    monkeypatch.setenv("AIRFLOW_CONN_CUSTSEG_WAREHOUSE", "mysql://root@db:3306/wh")
    with pytest.raises(ConfigError, match="connection 'custseg_warehouse' is of type 'mysql', not postgres"):
        load_settings(dict(POSTGRES)).postgres  # noqa: B018
    assert load_settings({}).postgres is None  # DuckDB needs none


def test_the_dags_import_with_no_connection_defined(tmp_path: Path) -> None:
    """A scheduler parses the DAG files where the warehouse connection may not be readable (it lives in a
    secrets backend the dag-processor cannot reach, or in the metadata database): parsing never looks it up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "CUSTSEG_"))}
    env.update(POSTGRES, AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_DIR))
    code = ("from airflow.dag_processing.dagbag import DagBag; import os; "
            "bag = DagBag(os.environ['AIRFLOW__CORE__DAGS_FOLDER']); "
            "print(sorted(bag.dag_ids), bag.import_errors)")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == (
        "['activate_audiences', 'customer_segmentation', 'retrain_models'] {}")


def test_the_cli_says_in_one_line_which_connection_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "CUSTSEG_"))}
    env.update(POSTGRES, CUSTSEG_DATA_DIR=str(tmp_path))
    result = subprocess.run([str(Path(sys.executable).with_name("custseg")), "status"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "custseg status: error: connection 'custseg_warehouse' is not defined: add it to Airflow "
        "(AIRFLOW_CONN_CUSTSEG_WAREHOUSE, `airflow connections add`, or a secrets backend); "
        "or set CUSTSEG_POSTGRES_URL outside Airflow"]
