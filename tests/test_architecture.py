"""The house rules of the code base, checked on its source (docs/architecture.md explains them).

* No import cycle between modules, nor between the packages and sub-packages (``custseg.steps``,
  ``custseg.ops``, ``custseg.warehouse``, ``custseg.demo``, ``ml``, ``expectations``): every import
  counts, those inside functions too.
* ``ml/`` and ``expectations/`` are pure: they import nothing from ``custseg``.
* An import inside a function is allowed only for the slow imports listed in ``LAZY``, which keep
  the DAG files' parse and ``custseg --help`` fast; anything else belongs at the top of the module.
* ``custseg.clock`` is the one reader of the wall clock: everything else is as of ``as_of_date``.
* The published tables are the dbt models in ``models/marts/published/``, nowhere else.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from custseg.config import DBT_PROJECT_DIR, PROJECT_DIR, PUBLISHED_BY_DATE, PUBLISHED_TABLES

PACKAGES = ("custseg", "ml", "expectations")

#: Imports that may stay inside a function, and why (seconds measured on the 2-core dev machine).
LAZY = {
    "airflow": "Airflow (3 s): the CLI's quick commands and the plain-Python steps do not need it",
    "dbt": "dbt-core (3.3 s): only the dbt runner needs it",
    "great_expectations": "GX (5.7 s): only the gates that run a suite need it",
    "sklearn": "scikit-learn (2.2 s): only fitting and scoring need it",
    "joblib": "loaded with scikit-learn, for artifacts only",
    "ml.bundle": "imports scikit-learn",
    "ml.scoring": "imports scikit-learn",
    "ml.approval": "imports scikit-learn",
    "ml.drift": "imports scikit-learn",
    "ml.clustering": "imports scikit-learn",
    "ml.churn": "imports scikit-learn",
    "pymc": "pymc (about 10 s): only the Bayesian CLV fit needs it",
    "pymc_marketing": "pymc (about 10 s): only the Bayesian CLV fit needs it",
    "pymc_extras": "pymc (about 10 s): only the Bayesian CLV fit needs it",
    "expectations._gx": "the lazy GX loader itself",
    "custseg.demo.generate": "the demo generator: only `custseg demo` and `custseg generate` need it",
    "fcntl": "POSIX only: the run lock's fallback",
}
#: The CLI imports each command's modules inside the command: `custseg --help`, `custseg query`
#: and `custseg status` start without Airflow, dbt, GX or the ML stack.
LAZY_MODULES = {"custseg.cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT_DIR / package).rglob("*.py"):
            name = ".".join(path.relative_to(PROJECT_DIR).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) for every import of one of our modules or any other."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
             for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in inner, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            # `from package import module` imports the module
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            found += [(target, id(node) in inner, node.lineno) for target in targets or [base]]
    return found


def _graph(group) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for target, _, _ in _imports(module, path):
            while target and target not in MODULES:  # `import a.b.c` of ours, or someone else's
                target = target.rpartition(".")[0]
            if target and group(target) != group(module):
                edges[group(module)].add(group(target))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(edges) | {n for targets in edges.values() for n in targets}):
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    """custseg's sub-packages and top-level modules, and the other packages whole."""
    parts = module.split(".")
    if parts[0] != "custseg":
        return parts[0]
    return ".".join(parts[:2])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(("level", "group"), [("module", lambda m: m), ("package", _package)])
def test_no_import_cycles(level: str, group) -> None:
    assert _cycles(_graph(group)) == [], f"import cycle between these {level}s"


@pytest.mark.parametrize("package", ["ml", "expectations"])
def test_ml_and_expectations_import_nothing_from_custseg(package: str) -> None:
    offending = [f"{module}:{line} imports {target}" for module, path in MODULES.items() if module.startswith(package)
                 for target, _, line in _imports(module, path) if target.split(".")[0] == "custseg"]
    assert offending == []


def _lazy(target: str) -> bool:
    return any(target == name or target.startswith(name + ".") for name in LAZY)


def test_imports_inside_functions_only_where_they_save_a_slow_import() -> None:
    offending = [f"{module}:{line} imports {target} inside a function"
                 for module, path in MODULES.items() if module not in LAZY_MODULES
                 for target, inner, line in _imports(module, path) if inner and not _lazy(target)]
    assert offending == [], "move these to the top of the module, or add the import to LAZY with its reason"


def test_only_the_clock_module_reads_the_wall_clock() -> None:
    reads = re.compile(r"\b(datetime|dt)\.(datetime\.)?(now|utcnow|today)\(|\bdate\.today\(|time\.time\(\)")
    offending = [f"{module}:{number}" for module, path in MODULES.items()
                 if module.startswith("custseg") and module != "custseg.clock"
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if reads.search(line) and not line.lstrip().startswith("#")]
    assert offending == [], "use custseg.clock.utc_now (operational timestamps only)"


def test_the_published_tables_are_the_dbt_published_folder() -> None:
    folder = DBT_PROJECT_DIR / "models" / "marts" / "published"
    assert set(PUBLISHED_TABLES) == {p.stem for p in folder.glob("*.sql")}
    assert {"customer_segments", "customer_interests", "segment_history", "segment_migration"} <= set(PUBLISHED_TABLES)
    # published by date: incremental models that replace one as_of_date per run
    assert PUBLISHED_BY_DATE == ("customer_alerts", "customer_events", "segment_history", "segment_migration")
    for table in PUBLISHED_BY_DATE:
        config = (folder / f"{table}.sql").read_text(encoding="utf-8")
        assert "materialized='incremental'" in config and "unique_key=['as_of_date']" in config, table
