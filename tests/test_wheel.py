"""custseg as a data engineer installs it: a wheel in a fresh virtualenv, used from another directory.

The wheel carries the project files (dbt project, sources file, seeds, DAGs) at custseg/_project/; with no
CUSTSEG_PROJECT_DIR the installed package finds them there, and writes nothing inside itself: its data
directory is CUSTSEG_DATA_DIR. The fresh virtualenv installs from requirements.lock, as CI does, through uv's
cache (filled by `make install`), so this needs no network once the project has been installed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")
NIGHT = dt.date(2026, 10, 31)


def _run(args: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_installs_imports_its_dags_and_runs_a_night_elsewhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([UV, "build", "--wheel", "--out-dir", dist, REPO], cwd=REPO)
    (wheel,) = dist.glob("custseg-*.whl")
    venv = tmp_path / "venv"
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv])
    python = venv / "bin" / "python"
    _run([UV, "pip", "install", "--quiet", "--python", python, "-c", REPO / "requirements.lock", wheel])

    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CUSTSEG_", "AIRFLOW_", "AIRFLOW__", "VIRTUAL_ENV", "PYTHON"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        "HOME": str(tmp_path / "home"),
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "CUSTSEG_DATA_DIR": str(data),
        "CUSTSEG_DUCKDB_PATH": str(data / "fresh.duckdb"),
        "GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    })
    site = Path(_run([python, "-c", "import custseg, pathlib; print(pathlib.Path(custseg.__file__).parent)"],
                     env=env, cwd=elsewhere).stdout.strip())
    assert site.is_relative_to(venv), f"custseg imported from {site}, not from the fresh virtualenv"
    paths = dict(line.split("  ", 1) for line in
                 _run([venv / "bin" / "custseg", "paths"], env=env, cwd=elsewhere).stdout.splitlines())
    paths = {name: Path(value.strip()) for name, value in paths.items()}
    project = site / "_project"
    assert paths["project (CUSTSEG_PROJECT_DIR)"] == project
    assert (project / "dbt_project" / "dbt_project.yml").is_file()
    assert (project / "config" / "sources.yml").is_file()
    assert (project / "dbt_project" / "seeds" / "segment_playbook_rules.csv").is_file()
    assert not (project / "dbt_project" / "target").exists()
    dags = paths["DAGs (point AIRFLOW__CORE__DAGS_FOLDER here)"]
    assert dags == project / "dags" and paths["data (CUSTSEG_DATA_DIR)"] == data

    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    bag = _run([python, "-c", "from airflow.dag_processing.dagbag import DagBag; import os; "
                "bag = DagBag(os.environ['AIRFLOW__CORE__DAGS_FOLDER']); "
                "print(sorted(bag.dag_ids)); print(bag.import_errors)"], env=env, cwd=elsewhere).stdout
    # the last two lines (Airflow logs that it fills the DagBag before them)
    assert bag.splitlines()[-2:] == ["['activate_audiences', 'customer_segmentation', 'retrain_models']", "{}"]

    installed = _files(site)
    _run([venv / "bin" / "custseg", "generate", "--customers", "150", "--days", "30", "--end-date",
          NIGHT.isoformat(), "--seed", "3", "--out", data], env=env, cwd=elsewhere)
    night = _run([venv / "bin" / "custseg", "run", "--as-of", NIGHT.isoformat()], env=env, cwd=elsewhere,
                 timeout=1200)
    assert f"as of {NIGHT}: success" in night.stdout, night.stdout[-3000:]
    with duckdb.connect(str(data / "fresh.duckdb"), read_only=True) as con:
        customers, as_of = con.execute("select count(*), max(as_of_date) from analytics.customer_segments").fetchone()
    assert customers > 100 and as_of == NIGHT
    # the package is read, never written: dbt's target, the logs and the docs all went to the data directory
    assert _files(site) == installed
    assert (data / "dbt" / "target" / "manifest.json").is_file()
    assert (data / "docs").is_dir() and (data / "logs").is_dir()


def _paths(env: dict[str, str], cwd: Path) -> dict[str, Path]:
    out = _run([Path(sys.executable).with_name("custseg"), "paths"], env=env, cwd=cwd).stdout
    return {name: Path(value.strip()) for name, value in (line.split("  ", 1) for line in out.splitlines())}


def test_a_checkout_finds_itself_from_any_directory_and_the_setting_moves_the_project(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTSEG_", "AIRFLOW_HOME"))}
    paths = _paths(env, tmp_path)
    assert paths["project (CUSTSEG_PROJECT_DIR)"] == REPO
    assert paths["data (CUSTSEG_DATA_DIR)"] == REPO / "data"
    assert paths["sources (CUSTSEG_SOURCES_FILE)"] == REPO / "config" / "sources.yml"
    # a project folder of the user's own: its sources file and its published models are the ones read
    project = tmp_path / "my-project"
    for folder in ("dbt_project", "config", "dags"):
        shutil.copytree(REPO / folder, project / folder, ignore=shutil.ignore_patterns("target", "logs", "__pycache__"))
    (project / "dbt_project" / "models" / "marts" / "published" / "segment_summary.sql").unlink()
    env["CUSTSEG_PROJECT_DIR"] = str(project)
    paths = _paths(env, tmp_path)
    assert paths["project (CUSTSEG_PROJECT_DIR)"] == project
    assert paths["DAGs (point AIRFLOW__CORE__DAGS_FOLDER here)"] == project / "dags"
    assert paths["sources (CUSTSEG_SOURCES_FILE)"] == project / "config" / "sources.yml"
    assert paths["data (CUSTSEG_DATA_DIR)"] == project / "data"
    published = _run([sys.executable, "-c", "from custseg.config import PUBLISHED_TABLES; print(PUBLISHED_TABLES)"],
                     env=env, cwd=tmp_path).stdout
    assert "customer_segments" in published and "segment_summary" not in published
