"""Shared, session-scoped fixtures: one generated dataset, one Airflow DB, one PostgreSQL database.

PostgreSQL: the server on 127.0.0.1:5432 (user postgres, trust auth) or CUSTSEG_TEST_PG_URL.
Without a server the Postgres tests skip with a loud reason, except under CI=true, where
they fail: CI must exercise both warehouses.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from custseg.config import PROJECT_DIR

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("CUSTSEG_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

#: The small end-to-end dataset every test shares (kept small so `make test` stays fast).
E2E_CUSTOMERS = 400
E2E_DAYS = 150
E2E_END = dt.date(2026, 10, 31)
E2E_SEED = 7
#: every DAG run of the suite scores its ~400 customers in chunks of this many (the path a large
#: customer base takes), so the end-to-end and backfill comparisons cover chunked scoring
E2E_SCORE_CHUNK_CUSTOMERS = 150


def airflow_env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # a busy 2-core box imports the DAG files (Airflow, pandas, the steps) slowly
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
    }


# Airflow reads AIRFLOW_HOME when it is first imported, so the session's home is fixed up front.
# Test modules import helpers from this file as `tests.conftest`, which runs this code a second
# time: reuse the home chosen by the first import instead of pointing Airflow somewhere new.
AIRFLOW_HOME = Path(os.environ.get("CUSTSEG_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="custseg-airflow-"))
os.environ["CUSTSEG_TEST_AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ.update(airflow_env(AIRFLOW_HOME))
# the `airflow` and `custseg` commands the tests start are this interpreter's
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("custseg")


@pytest.fixture(scope="session")
def demo_data(session_dir: Path):
    """One generated dataset for the whole session."""
    from custseg.demo.generate import generate

    return generate(session_dir / "data", customers=E2E_CUSTOMERS, days=E2E_DAYS, end_date=E2E_END, seed=E2E_SEED)


@pytest.fixture(scope="session")
def airflow_home(session_dir: Path) -> Path:
    """One Airflow metadata DB (SQLite) for the whole session."""
    home = AIRFLOW_HOME
    env = {**os.environ, **airflow_env(home)}
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, env=env, capture_output=True)
    (home / ".custseg-db-ready").touch()
    return home


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means "no usable server"
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    problem = _pg_available()
    if problem:
        message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; under CI=true the PostgreSQL tests must run, not skip")
        pytest.skip(f"!!! SKIPPING POSTGRES TESTS: {message}")
    return PG_ADMIN_URL


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards. Yields its URL."""
    name = f"custseg_test_{uuid.uuid4().hex[:10]}"
    _admin(pg_server, f'create database "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _admin(pg_server, f'drop database if exists "{name}" with (force)')


def warehouse_env(kind: str, data_dir: Path, *, duckdb_path: Path | None = None, pg_url: str | None = None,
                  landing_dir: Path | None = None) -> dict[str, str]:
    """The CLI's environment for a warehouse; a generated dataset's landing files bring its campaigns file
    (the generator writes `campaigns.yml` beside `landing/`)."""
    env = {
        "CUSTSEG_WAREHOUSE": kind,
        "CUSTSEG_DATA_DIR": str(data_dir),
        "CUSTSEG_LANDING_DIR": str(landing_dir or data_dir / "landing"),
        "CUSTSEG_DOCS_DIR": str(data_dir / "docs"),
        "CUSTSEG_SCORE_CHUNK_CUSTOMERS": str(E2E_SCORE_CHUNK_CUSTOMERS),
    }
    if landing_dir is not None and (landing_dir.parent / "campaigns.yml").exists():
        env["CUSTSEG_CAMPAIGNS_FILE"] = str(landing_dir.parent / "campaigns.yml")
    if duckdb_path:
        env["CUSTSEG_DUCKDB_PATH"] = str(duckdb_path)
    if pg_url:
        env["CUSTSEG_POSTGRES_URL"] = pg_url
    return env


def run_cli(args: list[str], env: dict[str, str], home: Path, timeout: int = 900,
            program: str = "custseg") -> subprocess.CompletedProcess:
    """Run the real `custseg` CLI (and so the real DAG) in its own process; `program="airflow"` for Airflow's."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTSEG_", "AIRFLOW_CONN_"))}
    full_env.update(airflow_env(home))
    full_env.update(env)
    exe = Path(sys.executable).with_name(program)
    return subprocess.run([str(exe), *args], env=full_env, capture_output=True, text=True, timeout=timeout)


def run_nightly(env: dict[str, str], home: Path, as_of_date: dt.date = E2E_END) -> None:
    """`custseg run --as-of` (the real DAG) that must succeed."""
    result = run_cli(["run", "--as-of", as_of_date.isoformat()], env, home)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, f"DAG run failed:\n{tail}"
    assert f"as of {as_of_date}: success" in result.stdout, tail


@pytest.fixture(scope="session")
def e2e_duckdb_env(demo_data, airflow_home: Path, session_dir: Path) -> dict[str, str]:
    """The session's one end-to-end DuckDB run: the nightly DAG as of E2E_END on the demo data.

    Shared by the tests that only read what a normal night publishes (test_e2e, test_pii), so the
    suite pays for this DAG run once."""
    data_dir = session_dir / "duckdb_run"
    env = warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb",
                        landing_dir=demo_data.landing_dir)
    run_nightly(env, airflow_home)
    return env
