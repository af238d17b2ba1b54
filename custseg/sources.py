"""Load and check `config/sources.yml`: which files to read and how they map onto a channel."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from custseg.catalogue import CHANNELS, Channel

FORMATS = ("csv", "jsonl", "parquet", "postgres_table")
LAYOUTS = ("daily", "snapshot")
PARSERS = ("iso", "epoch_ms", "local", "date")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Field separators a landing file may use (an allow-list: the value reaches the CSV reader).
DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "\\t": "\t", "tab": "\t"}
#: Encodings a landing file may be in, by Python's canonical codec name. All are ASCII-compatible, so a
#: file can be split into lines before decoding and one bad line quarantined without losing the rest.
#: Windows-1252 is what Excel writes as "ANSI"/"Latin-1" in Western Europe; anything else: re-export as UTF-8.
ENCODINGS = ("utf-8", "utf-8-sig", "iso8859-1", "iso8859-15", "cp1252", "cp1250", "ascii")
#: A strptime format: directives, letters, digits, spaces and date punctuation only, and short.
_DATE_FORMAT = re.compile(r"^(?:%[aAbBdHIjmMpSyYzZfT%]|[A-Za-z0-9 ./:,_T+-]){1,40}$")


def normalise_encoding(name: object) -> str:
    """The canonical name of an allowed encoding; ValueError naming the allowed ones otherwise."""
    try:
        canonical = codecs.lookup(str(name)).name
    except LookupError:
        canonical = ""
    if canonical not in ENCODINGS:
        raise ValueError(f"unsupported encoding {str(name)[:40]!r}; use one of utf-8, latin-1, cp1252 "
                         "(Excel's Western 'ANSI'), iso-8859-15, cp1250, or re-export the file as UTF-8")
    return canonical


def normalise_delimiter(value: object) -> str:
    """The one-character field separator for ``value``; ValueError naming the allowed ones otherwise."""
    if str(value) not in DELIMITERS:
        raise ValueError(f"unsupported delimiter {str(value)[:20]!r}; use one of ',', ';', '|' or '\\t'")
    return DELIMITERS[str(value)]


def check_date_format(value: object) -> str:
    """A strptime format made of directives and date punctuation only; ValueError otherwise."""
    text = str(value)
    if not _DATE_FORMAT.match(text):
        raise ValueError(f"unsupported date format {text[:40]!r}: use strptime directives (%Y, %m, %d, %H, %M, "
                         "%S, ...) separated by spaces or . / : , - T")
    return text


class SourceConfigError(ValueError):
    """The sources file is wrong; the message names the file, the source and the key."""


@dataclass(frozen=True)
class ColumnMapping:
    canonical: str
    source_column: str
    parse: str | None = None
    #: For parse=local: the column holding the IANA time zone; for parse=date: the strptime format.
    parse_arg: str | None = None
    decimal: str = "."


@dataclass(frozen=True)
class SourceConfig:
    name: str
    channel: Channel
    format: str
    path: str
    columns: tuple[ColumnMapping, ...]
    delimiter: str = ","
    consumed: tuple[str, ...] = field(default_factory=tuple)
    #: Python's canonical name of the file's text encoding (one of ENCODINGS).
    encoding: str = "utf-8"
    #: daily: one partition per date ({date} in the path, or the partition column of a table);
    #: snapshot: the whole file or table as it is now, loaded as the logical date's partition.
    layout: str = "daily"
    #: postgres_table only: the Airflow connection id, the table and the column that dates a row.
    connection: str | None = None
    table: str | None = None
    partition_column: str | None = None
    #: whether validate_raw compares the day's row count with the previous partition's (a source whose daily
    #: volume is irregular by nature, such as e-mail events on campaign days only, turns it off)
    row_count_check: bool = True

    @property
    def file_format(self) -> str:
        """How the partition's file is parsed: a PostgreSQL table is first extracted to CSV."""
        return "csv" if self.format == "postgres_table" else self.format

    def file_for(self, landing_dir: Path, day: str) -> Path:
        return landing_dir / self.path.format(date=day)

    @property
    def mapped_source_columns(self) -> set[str]:
        cols = {m.source_column for m in self.columns} | set(self.consumed)
        cols |= {m.parse_arg for m in self.columns if m.parse == "local" and m.parse_arg}
        return cols


def _err(path: Path, source: str, key: str, msg: str) -> SourceConfigError:
    return SourceConfigError(f"{path}: source {source!r}, key {key!r}: {msg}")


def load_sources(path: Path) -> dict[str, SourceConfig]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise SourceConfigError(f"{path}: sources file not found") from exc
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML: {exc}") from exc
    raw_sources = doc.get("sources")
    if not isinstance(raw_sources, dict) or not raw_sources:
        raise SourceConfigError(f"{path}: key 'sources' must map source names to their settings")
    sources = {name: _parse_source(path, name, spec) for name, spec in raw_sources.items()}
    by_channel: dict[str, list[str]] = {}
    for name, src in sources.items():
        by_channel.setdefault(src.channel.name, []).append(name)
    for channel, names in by_channel.items():
        if len(names) > 1:  # both would load into, and replace each other's partitions of, one raw table
            raise SourceConfigError(f"{path}: sources {', '.join(repr(n) for n in names)} share channel {channel!r}; "
                                    "declare one source per channel (combine the exports into one file per day)")
    return sources


def _parse_source(path: Path, name: str, spec: object) -> SourceConfig:
    if not isinstance(spec, dict):
        raise _err(path, name, "", "must be a mapping")
    channel_name = spec.get("channel")
    if channel_name not in CHANNELS:
        raise _err(path, name, "channel", f"unknown channel {channel_name!r}; known: {', '.join(CHANNELS)}")
    channel = CHANNELS[channel_name]
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise _err(path, name, "format", f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    layout = spec.get("layout", "daily")
    if layout not in LAYOUTS:
        raise _err(path, name, "layout", f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    table_keys: dict[str, str | None] = {"connection": None, "table": None, "partition_column": None}
    if fmt == "postgres_table":
        for key in ("connection", "table"):
            if not isinstance(spec.get(key), str) or not spec[key].strip():
                raise _err(path, name, key, "a postgres_table source needs it (an Airflow connection id; "
                           "schema.table)")
        if not _TABLE_NAME.match(spec["table"]):
            raise _err(path, name, "table", f"{spec['table']!r} is not a table name (schema.table)")
        partition_column = spec.get("partition_column")
        if layout == "daily" and not (isinstance(partition_column, str) and _COLUMN_NAME.match(partition_column)):
            raise _err(path, name, "partition_column", "a daily postgres_table source needs the column whose "
                       "date is the row's partition (e.g. updated_at); or use layout: snapshot")
        table_keys = {"connection": spec["connection"].strip(), "table": spec["table"],
                      "partition_column": partition_column if layout == "daily" else None}
        # where the extract of each partition lands (under the data directory), and is kept for audit
        loc = f"{name}/{{date}}.csv"
    else:
        loc = spec.get("path")
        if not isinstance(loc, str) or not loc:
            raise _err(path, name, "path", "must be a path relative to the landing root")
        if layout == "daily" and "{date}" not in loc:
            raise _err(path, name, "path", "a daily source's path must contain {date}; "
                       "for one file that is always the full current state, set layout: snapshot")
        if layout == "snapshot" and "{date}" in loc:
            raise _err(path, name, "path", "a snapshot source's path is one file, without {date}")
    raw_cols = spec.get("columns")
    if not isinstance(raw_cols, dict):
        raise _err(path, name, "columns", "must map canonical column names to file columns")
    known = {c.name for c in channel.columns}
    mappings = []
    for canonical, value in raw_cols.items():
        if canonical not in known:
            raise _err(path, name, f"columns.{canonical}", f"not a column of channel {channel.name!r}")
        mappings.append(_parse_mapping(path, name, canonical, value))
    mapped = {m.canonical for m in mappings}
    for col in channel.columns:
        if col.required and col.name not in mapped:
            raise _err(path, name, f"columns.{col.name}", "required column has no mapping")
    if channel.customer_required and not mapped & set(channel.customer_columns):
        raise _err(path, name, "columns", f"map at least one of {', '.join(channel.customer_columns)}: a "
                   f"{channel.name} row must name its customer")
    try:
        delimiter = normalise_delimiter(spec.get("delimiter", ","))
    except ValueError as exc:
        raise _err(path, name, "delimiter", str(exc)) from exc
    try:
        encoding = normalise_encoding(spec.get("encoding", "utf-8"))
    except ValueError as exc:
        raise _err(path, name, "encoding", str(exc)) from exc
    row_count_check = spec.get("row_count_check", True)
    if not isinstance(row_count_check, bool):
        raise _err(path, name, "row_count_check", "must be true or false")
    consumed = spec.get("consumed", ())
    if not isinstance(consumed, list | tuple) or not all(isinstance(c, str) for c in consumed):
        raise _err(path, name, "consumed", "must be a list of column names")
    return SourceConfig(
        name=name,
        channel=channel,
        format=fmt,
        path=loc,
        columns=tuple(mappings),
        delimiter=delimiter,
        consumed=tuple(consumed),
        encoding=encoding,
        layout=layout,
        row_count_check=row_count_check,
        **table_keys,
    )


def _parse_mapping(path: Path, source: str, canonical: str, value: object) -> ColumnMapping:
    if isinstance(value, str):
        return ColumnMapping(canonical, value)
    if not isinstance(value, dict) or "from" not in value:
        raise _err(path, source, f"columns.{canonical}", "must be a column name or {from: ..., parse: ...}")
    parse, arg = value.get("parse"), None
    if parse is not None:
        parse, _, arg = str(parse).partition(":")
        if parse not in PARSERS:
            raise _err(path, source, f"columns.{canonical}.parse", f"unknown parser {parse!r}")
        if parse in ("local", "date") and not arg:
            raise _err(path, source, f"columns.{canonical}.parse", f"'{parse}' needs an argument: {parse}:...")
        if parse == "date":
            try:
                check_date_format(arg)
            except ValueError as exc:
                raise _err(path, source, f"columns.{canonical}.parse", str(exc)) from exc
    decimal = str(value.get("decimal", "."))
    if decimal not in (".", ","):
        raise _err(path, source, f"columns.{canonical}.decimal", "must be '.' or ','")
    return ColumnMapping(canonical, str(value["from"]), parse, arg or None, decimal)
