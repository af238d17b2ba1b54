"""Every user error of the `custseg` CLI is one line on stderr naming the problem and the fix, with a
non-zero exit; `--debug` shows the traceback instead. The real CLI in its own process (conftest
`run_cli`), on real DuckDB files and PostgreSQL; one real DAG run (failed on purpose at its first task).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from pathlib import Path

import pytest

from custseg.config import PROJECT_DIR, load_settings
from custseg.ops.locks import run_lock
from tests.conftest import AIRFLOW_HOME, run_cli, warehouse_env

EXAMPLE_ORDERS = PROJECT_DIR / "docs" / "examples" / "orders.csv"


def one_line(result: subprocess.CompletedProcess, command: str) -> str:
    """The one error line of a failed command: non-zero exit, one non-empty stderr line, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout[-2000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"custseg{' ' + command if command else ''}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "warehouse.duckdb")


@pytest.fixture
def small_warehouse(env: dict[str, str]) -> dict[str, str]:
    """A DuckDB warehouse with a small analytics.customer_segments."""
    import duckdb

    with duckdb.connect(env["CUSTSEG_DUCKDB_PATH"]) as con:
        con.execute("create schema analytics")
        con.execute("create table analytics.customer_segments (customer_id varchar, rfm_segment varchar)")
        con.execute("insert into analytics.customer_segments values ('c1', 'Champions')")
    return env


@pytest.mark.parametrize(("args", "command", "code", "expected"), [
    (["run"], "run", 2, "one of the arguments --as-of --from is required (see custseg run --help)"),
    (["run", "--from", "2026-10-01"], "run", 2, "--from needs --to (see custseg run --help)"),
    (["run", "--as-of", "2026-10-31", "--bogus"], "", 2, "unrecognized arguments: --bogus (see custseg --help)"),
    (["frobnicate"], "", 2, "invalid choice: 'frobnicate'"),
    (["query", "--limit", "many"], "query", 2,
     "argument --limit: invalid int value: 'many' (see custseg query --help)"),
    (["run", "--as-of", "2026-02-30"], "run", 1,
     "not a date (day is out of range for month): write dates as YYYY-MM-DD"),
    (["query", "--table", "analytics.x; drop table analytics.y"], "query", 2,
     "--table 'analytics.x; drop table analytics.y': give a table name such as analytics.customer_segments"),
])
def test_bad_flags_and_missing_arguments(args: list[str], command: str, code: int, expected: str,
                                         env: dict[str, str]) -> None:
    result = run_cli(args, env, AIRFLOW_HOME)
    assert expected in one_line(result, command)
    assert result.returncode == code


def test_missing_files(env: dict[str, str], tmp_path: Path) -> None:
    line = one_line(run_cli(["query", "select 1"], env, AIRFLOW_HOME), "query")
    assert f"no warehouse at {tmp_path / 'warehouse.duckdb'}: run `custseg run --as-of YYYY-MM-DD` first" in line
    missing = tmp_path / "no_such_sources.yml"
    line = one_line(run_cli(["run", "--as-of", "2026-10-31"], {**env, "CUSTSEG_SOURCES_FILE": str(missing)},
                            AIRFLOW_HOME), "run")
    assert line.endswith(f"{missing}: sources file not found")
    line = one_line(run_cli(["run", "--orders", str(tmp_path / "no_such_export.csv"), "--as-of", "2026-06-30"], env,
                            AIRFLOW_HOME), "run")
    assert "no_such_export.csv" in line


def test_a_lock_held_by_another_run(env: dict[str, str]) -> None:
    with run_lock(load_settings(env)):
        line = one_line(run_cli(["run", "--as-of", "2026-10-31"], env, AIRFLOW_HOME), "run")
    assert "another customer_segmentation run holds" in line and "not starting a second one" in line


def test_a_warehouse_file_open_in_another_process(small_warehouse: dict[str, str]) -> None:
    import duckdb

    with duckdb.connect(small_warehouse["CUSTSEG_DUCKDB_PATH"]):
        line = one_line(run_cli(["query", "select 1"], small_warehouse, AIRFLOW_HOME), "query")
    assert "is open in another process" in line and "wait for it to finish" in line


def _can_create_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def test_a_read_only_warehouse_folder(tmp_path: Path) -> None:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if _can_create_in(folder):  # root writes anyway: sysfs refuses new files even to root
        folder = Path("/sys/custseg-test")
        if _can_create_in(Path("/sys")):
            pytest.skip("no read-only folder available to this user")
    env = warehouse_env("duckdb", tmp_path, duckdb_path=folder / "warehouse.duckdb")
    try:
        line = one_line(run_cli(["run", "--as-of", "2026-10-31"], env, AIRFLOW_HOME), "run")
    finally:
        (tmp_path / "read_only").chmod(0o755)
    assert (f"cannot create or open the warehouse {folder / 'warehouse.duckdb'}: the folder {folder} must exist "
            "and be writable by you; or set CUSTSEG_DUCKDB_PATH") in line


def test_a_wrong_column_or_table_in_query_on_duckdb(small_warehouse: dict[str, str]) -> None:
    line = one_line(run_cli(["query", "select nope from analytics.customer_segments"], small_warehouse,
                            AIRFLOW_HOME), "query")
    assert line.startswith('custseg query: error: DuckDB: Binder Error: Referenced column "nope" not found')
    assert 'Candidate bindings: "customer_id"' in line
    assert "custseg query --table analytics.customer_segments --limit 1" in line
    line = one_line(run_cli(["query", "--table", "analytics.customer_segment"], small_warehouse, AIRFLOW_HOME),
                    "query")
    assert "Catalog Error: Table with name customer_segment does not exist!" in line
    assert 'Did you mean "customer_segments"' in line and "information_schema.tables" in line
    line = one_line(run_cli(["query", "selec 1"], small_warehouse, AIRFLOW_HOME), "query")
    assert "Parser Error" in line and "check the SQL" in line
    shown = run_cli(["query", "--table", "analytics.customer_segments"], small_warehouse, AIRFLOW_HOME)
    assert shown.returncode == 0 and "Champions" in shown.stdout


@pytest.mark.postgres
def test_a_wrong_column_or_table_in_query_on_postgres(pg_database: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("create schema analytics")
        conn.execute("create table analytics.customer_segments (customer_id text, rfm_segment text)")
    env = warehouse_env("postgres", tmp_path, pg_url=pg_database)
    line = one_line(run_cli(["query", "select nope from analytics.customer_segments"], env, AIRFLOW_HOME), "query")
    assert 'PostgreSQL: column "nope" does not exist' in line and "custseg query --table" in line
    line = one_line(run_cli(["query", "--table", "analytics.nope"], env, AIRFLOW_HOME), "query")
    assert 'PostgreSQL: relation "analytics.nope" does not exist' in line and "information_schema.tables" in line


def test_bad_configuration(env: dict[str, str], tmp_path: Path) -> None:
    line = one_line(run_cli(["status"], {**env, "CUSTSEG_WAREHOUSE": "oracle"}, AIRFLOW_HOME), "status")
    assert line.endswith("CUSTSEG_WAREHOUSE must be 'duckdb' or 'postgres', got 'oracle'")
    broken = tmp_path / "sources.yml"
    broken.write_text("sources: [unclosed\n")
    line = one_line(run_cli(["run", "--as-of", "2026-10-31"], {**env, "CUSTSEG_SOURCES_FILE": str(broken)},
                            AIRFLOW_HOME), "run")
    assert f"{broken}: not valid YAML" in line
    campaigns = tmp_path / "campaigns.yml"
    campaigns.write_text("campaigns:\n  - campaign_id: autumn\n    target_rfm_segments: [Champs]\n"
                         "    start_date: 2026-10-01\n    end_date: 2026-10-31\n    conversion_window_days: 7\n")
    line = one_line(run_cli(["run", "--as-of", "2026-10-31"], {**env, "CUSTSEG_CAMPAIGNS_FILE": str(campaigns)},
                            AIRFLOW_HOME), "run")
    assert f"{campaigns}: campaign autumn: target_rfm_segments has unknown 'Champs'; one of: About To Sleep" in line
    line = one_line(run_cli(["run", "--as-of", "2026-10-31"], {**env, "CUSTSEG_MIN_BUYERS": "lots"}, AIRFLOW_HOME),
                    "run")
    assert line.endswith("CUSTSEG_MIN_BUYERS must be a whole number of customers (0 or more), got 'lots'")
    line = one_line(run_cli(["run", "--as-of", "2026-10-31"], {**env, "CUSTSEG_MAX_QUARANTINE_SHARE": "5"},
                            AIRFLOW_HOME), "run")
    assert "CUSTSEG_MAX_QUARANTINE_SHARE is a share between 0 and 1" in line
    line = one_line(run_cli(["run", "--orders", str(EXAMPLE_ORDERS), "--as-of", "2026-06-30", "--delimiter", "|;"],
                            env, AIRFLOW_HOME), "run")  # custseg.steps.byo.ByoError
    assert "delimiter" in line


def test_debug_shows_the_traceback(small_warehouse: dict[str, str]) -> None:
    for args in (["--debug", "query", "select nope from analytics.customer_segments"],
                 ["query", "select nope from analytics.customer_segments", "--debug"]):
        result = run_cli(args, small_warehouse, AIRFLOW_HOME)
        assert result.returncode != 0
        assert "Traceback (most recent call last)" in result.stderr and "BinderException" in result.stderr


@pytest.mark.e2e
def test_a_failed_dag_run_names_its_failed_task_and_reason(env: dict[str, str], airflow_home: Path) -> None:
    as_of_date = dt.date(2026, 10, 31)
    result = run_cli(["run", "--as-of", as_of_date.isoformat()], {**env, "CUSTSEG_FAIL_TASK": "prepare"}, airflow_home)
    assert result.returncode != 0 and f"as of {as_of_date}: failed" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("custseg run: error:")]
    assert lines == [
        f"custseg run: error: customer_segmentation as of {as_of_date} failed in task prepare: AirflowFailException: "
        "injected failure in task 'prepare' (CUSTSEG_FAIL_TASK) (run " + lines[0].split("(run ", 1)[1]
    ], result.stderr[-3000:]
    assert lines[0].endswith(f"the published analytics tables were not changed by it; fix the cause and rerun the "
                             f"date (custseg run --as-of {as_of_date})")
