"""What the project installs: every package its code imports is declared in pyproject.toml, nothing declared
goes unused, and requirements.lock (the constraints `make install` uses) pins every declared package at the
version pyproject.toml names."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

from custseg.config import PROJECT_DIR

#: the project's own code (tests and bench may use dev tools)
CODE = ("custseg", "ml", "expectations", "dags")
#: declared but used without an import of their own, and why
USED_WITHOUT_IMPORT = {
    "dbt-duckdb": "dbt's adapter for the DuckDB target, loaded by dbt from profiles.yml",
    "dbt-postgres": "dbt's adapter for the PostgreSQL target, loaded by dbt from profiles.yml",
    "apache-airflow-providers-celery": "the CeleryExecutor, loaded by Airflow from its configuration (compose, "
                                       "tests/test_scheduler.py)",
    "celery": "held below 5.7 for the Celery provider (it imports what 5.7 removed)",
    "pytest": "the test runner",
    "pytest-timeout": "a pytest plugin",
    "ruff": "the linter (make test)",
    "sqlfluff": "the SQL linter (make test)",
    "selenium": "drives Chromium in tests/test_report.py (tests only)",
    "polars": "the bench's baseline-polars notebook (bench/baseline_polars.py, make bench only)",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared() -> dict[str, str]:
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return {_name(r): r for r in requirements}


def _imports() -> dict[str, tuple[set[str], set[str]]]:
    """Each third-party module the project's code imports -> (the distributions that provide it, the files)."""
    providers = {module: {d.lower().replace("_", "-") for d in dists}
                 for module, dists in metadata.packages_distributions().items()}
    found: dict[str, tuple[set[str], set[str]]] = {}
    for folder in CODE:
        for path in (PROJECT_DIR / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                         else [])
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in CODE or top == "__future__":
                        continue
                    if name.startswith("airflow.providers."):  # a provider is a distribution of its own
                        module = ".".join(name.split(".")[:3])
                        dists = {"apache-airflow-providers-" + name.split(".")[2].replace("_", "-")}
                    else:
                        # Airflow's core and task SDK come with the apache-airflow release that pins them
                        module, dists = top, ({"apache-airflow"} if top == "airflow" else providers.get(top, {top}))
                    found.setdefault(module, (dists, set()))[1].add(str(path.relative_to(PROJECT_DIR)))
    return found


def test_every_imported_package_is_declared() -> None:
    declared = set(_declared())
    undeclared = {module: sorted(files) for module, (dists, files) in _imports().items() if not dists & declared}
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


def test_nothing_declared_goes_unused() -> None:
    imported = set().union(*(dists for dists, _ in _imports().values()))
    unused = sorted(name for name in _declared() if name not in imported and name not in USED_WITHOUT_IMPORT)
    assert unused == [], f"declared in pyproject.toml but imported nowhere in {', '.join(CODE)}: {unused}"


def test_the_lock_pins_every_declared_package_at_its_declared_version() -> None:
    locked = {}
    for line in (PROJECT_DIR / "requirements.lock").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            locked[match.group(1).lower().replace("_", "-")] = match.group(2)
    assert len(locked) > 100  # the whole tree, transitive packages included
    for name, requirement in _declared().items():
        assert name in locked, f"{name} is declared but not in requirements.lock (run `make lock`)"
        pinned = re.search(r"==([^;,\s]+)", requirement)
        if pinned:
            assert locked[name] == pinned.group(1), f"{name}: pyproject says {pinned.group(1)}, lock {locked[name]}"
    # and the installed environment is the locked one (make install uses the lock as constraints)
    for name in _declared():
        assert metadata.version(name) == locked[name], name


def test_the_lock_is_what_make_install_uses() -> None:
    makefile = (PROJECT_DIR / "Makefile").read_text(encoding="utf-8")
    assert "-c requirements.lock -e '.[dev]'" in makefile and "$(STAMP): pyproject.toml requirements.lock" in makefile
    assert Path(PROJECT_DIR / "requirements.lock").read_text(encoding="utf-8").startswith(
        "# This file was autogenerated by uv via the following command:")
