"""The part of dbt's Jinja context that sqlfluff's jinja templater lacks, for `sqlfluff lint` only.

The repo's `.sqlfluff` loads this package (`library_path`): each name below is a global when a model,
test or macro file is rendered. sqlfluff itself provides ref, source, config, var, is_incremental, this
and return (`apply_dbt_builtins`); `var` here replaces its placeholder with the project's values.
Rendering follows dbt at parse time on DuckDB: `execute` is false, so nothing reads a warehouse, and
the run date is the parse-time date of macros/as_of.sql. dbt never imports this package.
"""

from __future__ import annotations

import datetime
import re
import types
from pathlib import Path
from typing import Any

import yaml

_PROJECT_FILE = Path(__file__).resolve().parent.parent / "dbt_project.yml"
#: a var defined as "{{ env_var('NAME', 'default') }}" in dbt_project.yml renders as its default
_ENV_VAR_DEFAULT = re.compile(r"\{\{\s*env_var\(\s*'[^']*'\s*,\s*'([^']*)'\s*\)\s*\}\}")


def _project_vars() -> dict[str, Any]:
    values = yaml.safe_load(_PROJECT_FILE.read_text())["vars"]
    return {name: _ENV_VAR_DEFAULT.sub(r"\1", value) if isinstance(value, str) else value
            for name, value in values.items()}


_VARS = _project_vars()
_MISSING = object()

execute = False
modules = types.SimpleNamespace(datetime=datetime, re=re)
target = types.SimpleNamespace(type="duckdb", name="duckdb", database="warehouse", schema="analytics_build")
graph: dict[str, Any] = {"nodes": {}}
model: dict[str, Any] = {}


def var(name: str, default: Any = _MISSING) -> Any:
    """dbt's var(): the value in dbt_project.yml, else the default; an unknown var fails the lint."""
    if name in _VARS:
        return _VARS[name]
    if default is _MISSING:
        raise KeyError(f"var {name!r} is not in dbt_project.yml and has no default")
    return default


def env_var(name: str, default: str = "") -> str:
    """dbt's env_var(), always its default: the lint does not depend on the environment."""
    return default


def log(msg: str, info: bool = False) -> str:
    return ""


def _raise_compiler_error(msg: str) -> None:
    raise RuntimeError(msg)


exceptions = types.SimpleNamespace(raise_compiler_error=_raise_compiler_error)


def _call(name: str) -> Any:
    """A macro that dbt dispatches to the adapter, rendered as a call of a function of its name."""
    return lambda *args: f"{name}({', '.join(str(arg) for arg in args)})"


dbt = types.SimpleNamespace(
    type_string=lambda: "varchar",
    dateadd=lambda datepart, interval, from_date: _call("date_add")(from_date, f"interval ({interval}) {datepart}"),
    datediff=lambda first, second, datepart: _call("date_diff")(f"'{datepart}'", first, second),
)


class _Adapter:
    """adapter: dispatch renders a call; the look-ups behind `execute` find nothing."""

    def dispatch(self, macro_name: str, macro_namespace: str | None = None) -> Any:
        return _call(macro_name)

    def get_relation(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get_columns_in_relation(self, relation: Any) -> list[Any]:
        return []


adapter = _Adapter()


def _relation(**kwargs: Any) -> str:
    return ".".join(str(kwargs[part]) for part in ("database", "schema", "identifier") if kwargs.get(part))


api = types.SimpleNamespace(Relation=types.SimpleNamespace(create=_relation))


def run_query(sql: str) -> Any:
    return types.SimpleNamespace(rows=[])


def statement(name: str | None = None, fetch_result: bool = False, auto_begin: bool = True) -> str:
    return ""
