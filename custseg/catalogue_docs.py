"""The files written from the channel catalogue: each channel's dbt sources YAML and the
"Canonical raw tables" section of ``docs/sources.md``.

``custseg catalogue --write`` rewrites them after a catalogue change; ``custseg catalogue`` (and
``tests/test_catalogue.py``) fails, naming the file, when one disagrees with the catalogue.
"""

from __future__ import annotations

import json
from pathlib import Path

from custseg.catalogue import CHANNELS, LOAD_METADATA, SQL_TYPES, Channel

GENERATED_HEADER = ("# Generated from custseg/catalogue.py by `custseg catalogue --write`: "
                    "edit the catalogue, not this file.\n")
DOCS_BEGIN = "<!-- BEGIN generated from custseg/catalogue.py by `custseg catalogue --write` -->"
DOCS_END = "<!-- END generated -->"
#: landing data older than this warns / errors in `dbt source freshness` (same for every channel)
FRESHNESS = "        warn_after: {count: 2, period: day}\n        error_after: {count: 4, period: day}\n"


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def dbt_sources_path(project_root: Path, channel: Channel) -> Path:
    folder = project_root / "dbt_project" / "models" / "staging" / channel.dbt_source
    return folder / f"_{channel.dbt_source}__sources.yml"


def dbt_sources_yaml(channel: Channel) -> str:
    """The dbt sources file of ``channel``'s staging folder."""
    lines = [
        GENERATED_HEADER,
        "version: 2\n\nsources:\n",
        f"  - name: {channel.dbt_source}\n",
        f"    description: {_q(channel.description)}\n",
        "    schema: raw\n",
        # under config: since dbt 1.10 (the top-level keys are deprecated); judged as of the run's date
        # (dbt_project/macros/source_freshness.sql)
        "    config:\n",
        '      loaded_at_field: "cast(_partition_date as timestamp)"\n',
        "      freshness:\n",
        FRESHNESS,
        "    tables:\n",
        f"      - name: {channel.table}\n",
        f"        description: {_q(channel.table_description)}\n",
        "        columns:\n",
    ]
    for name, description in [(c.name, c.description) for c in channel.columns] + [
        (name, description) for name, _, description in LOAD_METADATA
    ]:
        lines.append(f"          - name: {name}\n            description: {_q(description)}\n")
    return "".join(lines)


def _type(sql_type: str, column_type: str) -> str:
    return f"{sql_type} (UTC)" if column_type == "timestamp" else sql_type


def raw_tables_markdown() -> str:
    """One section per channel: its raw table's columns, types, rules and descriptions."""
    parts = []
    for channel in CHANNELS.values():
        keys = ", ".join(f"{kind} `{column}`" for kind, column in channel.identity_keys.items())
        identity = f"identity keys: {keys}" if keys else "no identity keys (attaches to customers found elsewhere)"
        parts.append(
            f"### `raw.{channel.table}`: channel `{channel.name}`\n\n"
            f"{channel.description} Read by dbt as source `{channel.dbt_source}`, staged in "
            f"`{channel.staging_model}`. One row: {channel.table_description[0].lower()}"
            f"{channel.table_description[1:]} Key `{channel.key}`, dated by `{channel.event_time}`; {identity}.\n\n"
            "| column | type | load rule | description |\n|---|---|---|---|\n"
        )
        for col in channel.columns:
            rules = []
            if col.required:
                rules.append("required")
            if col.min_value is not None:
                rules.append(f">= {col.min_value:g}")
            if col.allowed:
                rules.append("one of " + ", ".join(col.allowed))
            if col.not_future:
                rules.append("not after the as-of date")
            parts.append(f"| `{col.name}` | {_type(SQL_TYPES[col.type], col.type)} | {'; '.join(rules)} | "
                         f"{col.description} |\n")
        parts.append("\n")
    return "".join(parts).rstrip("\n") + "\n"


def docs_with_raw_tables(docs: str) -> str:
    """``docs`` (docs/sources.md) with its generated section replaced by :func:`raw_tables_markdown`."""
    head, begin, rest = docs.partition(DOCS_BEGIN)
    _, end, tail = rest.partition(DOCS_END)
    if not begin or not end:
        raise ValueError(f"docs/sources.md has no {DOCS_BEGIN} ... {DOCS_END} section")
    return f"{head}{DOCS_BEGIN}\n{raw_tables_markdown()}{DOCS_END}{tail}"


def generated_files(project_root: Path) -> dict[Path, str]:
    """Every file derived from the catalogue, with the content it must have."""
    files = {dbt_sources_path(project_root, c): dbt_sources_yaml(c) for c in CHANNELS.values()}
    docs = project_root / "docs" / "sources.md"
    files[docs] = docs_with_raw_tables(docs.read_text(encoding="utf-8"))
    return files


def stale_files(project_root: Path) -> list[Path]:
    """The derived files whose content disagrees with the catalogue (or that do not exist)."""
    return [path for path, text in generated_files(project_root).items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def write_files(project_root: Path) -> list[Path]:
    """Rewrite the stale derived files; returns them."""
    stale = stale_files(project_root)
    for path, text in generated_files(project_root).items():
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return stale
