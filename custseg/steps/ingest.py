"""Ingest one source's landing partitions into `raw`, quarantining what cannot be loaded.

Files are parsed and checked in an in-memory DuckDB (its native CSV / JSON / Parquet readers),
whatever the target warehouse is; the clean rows then go to the warehouse through its bulk path.
Every row read ends up in `raw.<table>` or in `raw.quarantine`, or, when it belongs to a person erased with
`custseg erase` (custseg/erasure.py: its keys hash into `raw.erasure_suppression`), nowhere; `ops.load_audit`
records `rows_read = rows_loaded + rows_quarantined + rows_suppressed` per partition.

Which partitions a run loads: every landing file dated on or before the as-of date that has
not been loaded successfully yet (so the first run on an empty warehouse catches up on history),
plus the as-of date itself, which is always reloaded (so a rerun replaces that day's rows).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.catalogue import SQL_TYPES, Column
from custseg.clock import utc_now
from custseg.config import ConfigError, Settings
from custseg.erasure import suppressed_keys, suppression_sql
from custseg.sources import ColumnMapping, SourceConfig, load_sources
from custseg.steps.extract import ExtractError, extract_pending
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import quote_ident

log = logging.getLogger(__name__)


#: ops.load_audit status of a source that a rebuild did not read from landing (see ingest)
FROM_RAW = "from_raw"


def source_names(settings: Settings) -> list[str]:
    return list(load_sources(settings.sources_file))


def ingest(settings: Settings, source: str, as_of_date: dt.date, run_id: str,
           from_raw: bool = False) -> dict[str, int | str]:
    """Load one source's pending partitions; a source this run does not declare is skipped and audited.

    The DAG has one task per configured source; a bring-your-own-orders run (custseg.steps.byo) declares
    only its order export, so the other channels load nothing that night and say so in ops.load_audit.
    With `from_raw` (the DAG param of the same name, set by `custseg rebuild`), nothing is read from
    the landing files (they may be gone): `raw` already holds every row, and the load is audited as
    `from_raw` with zero counts.
    """
    if from_raw:
        reason = "rebuild from raw: landing files not read (custseg rebuild)"
        with connect(settings) as wh:
            record_load(wh, run_id, as_of_date, source, as_of_date, None, 0, 0, 0, (), FROM_RAW, reason)
        log.info("%s: %s", source, reason)
        return {"partitions": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0, "skipped": reason}
    if source not in load_sources(settings.sources_file):
        reason = f"source not declared in {settings.sources_file} for this run (bring-your-own-orders run)"
        with connect(settings) as wh:
            record_load(wh, run_id, as_of_date, source, as_of_date, None, 0, 0, 0, (), "skipped", reason)
        log.info("%s: skipped: %s", source, reason)
        return {"partitions": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0, "skipped": reason}
    results: list[LoadResult] = ingest_source(settings, source, as_of_date, run_id)
    return {
        "partitions": len(results),
        "rows_read": sum(r.rows_read for r in results),
        "rows_loaded": sum(r.rows_loaded for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "rows_suppressed": sum(r.rows_suppressed for r in results),
    }


#: A timestamp more than this long after the end of its landing date is treated as "in the future".
#: A day later than the UTC day covers every time zone's local evening (late rows are always earlier).
FUTURE_TOLERANCE = dt.timedelta(hours=24)


#: Landing files parsed per query. The first run catches up on history file by file, so chunking
#: keeps the per-query overhead (~15 ms) off every file while memory stays bounded.
FILES_PER_CHUNK = 64


#: A mapped field longer than this is quarantined (no real id, email or category is this long; a
#: field this size is a broken export or an attack). DuckDB's line limit is raised well above it so
#: such a row is quarantined with a reason instead of failing the whole file.
MAX_FIELD_CHARS = 10_000


#: ... and at most this many bytes of input per query, so memory stays bounded when files grow.
MAX_CHUNK_BYTES = 64 * 1024 * 1024


MAX_LINE_BYTES = 64 * 1024 * 1024


class IngestError(RuntimeError):
    """A landing file cannot be read at all; the message names the file and the problem, on one line
    (a column name or a reader's message may hold line breaks: they are shown as spaces)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class ParsedBatch:
    """Several landing files parsed together: one per partition date."""
    files: tuple[tuple[dt.date, Path], ...]
    rows_read: dict[dt.date, int]
    valid: pa.Table
    quarantined: pa.Table
    extra_columns: tuple[str, ...]
    #: per partition: loaded rows that exactly repeat an earlier row of the same key (staging keeps one)
    duplicates: dict[dt.date, int]
    #: per partition: rows of an order export dated after the run's date, not read tonight
    after_as_of: dict[dt.date, int]
    #: per partition: rows of an erased person (raw.erasure_suppression), neither loaded nor quarantined
    suppressed: dict[dt.date, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadResult:
    source: str
    partition_date: dt.date
    source_file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    extra_columns: tuple[str, ...]
    rows_duplicate: int = 0
    rows_after_as_of: int = 0
    rows_suppressed: int = 0


class _Binds:
    """Named parameters of one DuckDB statement.

    Every value that comes from a landing file, its header or ``sources.yml`` (paths, column names used
    as strings, formats, the delimiter) is bound through here, never pasted into the SQL text; column
    names used as identifiers go through ``_ident``.
    """
    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def __call__(self, value: object) -> str:
        name = f"v{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def _typed_expr(col: Column, mapping: ColumnMapping, text: str, bind: _Binds) -> str:
    """SQL turning the trimmed text `text` into the canonical type; NULL when it does not parse."""
    if mapping.decimal == "," and col.type in ("numeric", "double", "integer"):
        text = f"replace({text}, ',', '.')"
    if col.type == "timestamp":
        if mapping.parse == "epoch_ms":
            return f"epoch_ms(try_cast({text} as bigint))"
        if mapping.parse == "local":
            tz = f"nullif(trim({quote_ident(mapping.parse_arg or '')}), '')"
            # an unknown zone name must not fail the file: the row is quarantined as unparseable
            return (f"case when {tz} in (select name from pg_timezone_names()) "
                    f"then timezone('UTC', timezone({tz}, try_cast({text} as timestamp))) end")
        return f"timezone('UTC', try_cast({text} as timestamptz))"
    if col.type == "date":
        if mapping.parse == "date":
            return f"cast(try_strptime({text}, {bind(mapping.parse_arg or '')}) as date)"
        return f"try_cast({text} as date)"
    if col.type == "text":
        return quote_ident(mapping.source_column)
    return f"try_cast({text} as {SQL_TYPES[col.type]})"


def _reason_exprs(col: Column, text: str, typed: str) -> list[str]:
    # column names, bounds and allowed values below come from the channel catalogue, not from users
    name = col.name
    shown = f"left({text}, 200)"
    reasons = [
        f"case when length({text}) > {MAX_FIELD_CHARS} "
        f"then '{name} longer than {MAX_FIELD_CHARS} characters (' || length({text}) || ')' end",
        # PostgreSQL text cannot hold NUL, and no legitimate export contains one
        f"case when strpos({text}, chr(0)) > 0 then '{name} contains a NUL character' end",
    ]
    if col.required:
        reasons.append(f"case when {text} is null then 'missing {name}' end")
    if col.type != "text":
        reasons.append(
            f"case when {text} is not null and length({text}) <= {MAX_FIELD_CHARS} and {typed} is null "
            f"then 'unparseable {name}: ' || {shown} end"
        )
    if col.min_value is not None:
        reasons.append(f"case when {typed} < {col.min_value} then '{name} below {col.min_value:g}: ' || {shown} end")
    if col.allowed:
        allowed = ", ".join("'" + a.upper() + "'" for a in col.allowed)
        reasons.append(f"case when upper({text}) not in ({allowed}) then 'unknown {name}: ' || {shown} end")
    if col.not_future:
        hours = int(FUTURE_TOLERANCE.total_seconds() // 3600) + 24
        reasons.append(
            f"case when {typed} > _partition_date + interval {hours} hour "
            f"then 'future {name}: ' || {shown} end"
        )
    return reasons


def scratch_connection(memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB used to parse landing files; reuse one per task (connecting costs ~20 ms)."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    # the warehouse's cap (CUSTSEG_DUCKDB_MEMORY_LIMIT); a setting cannot be a bound parameter
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit.strip(), re.IGNORECASE):
        raise ConfigError(f"CUSTSEG_DUCKDB_MEMORY_LIMIT={memory_limit!r}: use a size such as 2GB or 512MB")
    con.execute(f"set memory_limit = '{memory_limit.strip()}'")
    return con


#: Leading bytes of files that are not text at all, whatever their name says.
_BINARY_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"PK\x03\x04", "a zip archive or an Excel workbook (export it as CSV)"),
    (b"PAR1", "a Parquet file (declare format: parquet)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (export it as CSV)"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"\xfd7zXZ", "xz-compressed data (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"),
)


def _check_is_text(src: SourceConfig, path: Path) -> None:
    """A text format's file must be text: compressed, archived or binary data fails as a whole, at once."""
    if path.is_dir():
        raise IngestError(f"{src.name}: {path} is a directory, not a {src.file_format} file")
    with path.open("rb") as fh:
        head = fh.read(8192)
    for signature, what in _BINARY_SIGNATURES:
        if head.startswith(signature):
            raise IngestError(f"{src.name}: cannot read {path} as {src.file_format}: it is {what}")
    if head.count(b"\x00") > len(head) // 10:
        raise IngestError(f"{src.name}: cannot read {path} as {src.file_format}: binary data (many NUL bytes); "
                          "is it UTF-16 or not a text export? re-export it as UTF-8 CSV")


def _decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """The file's physical lines, decoded one by one; undecodable bytes survive as surrogates, so one
    bad line is found (``_undecodable``) and quarantined without failing the others."""
    with path.open("rb") as fh:
        head = fh.read(65536)
        fh.seek(0)
        # classic Mac OS line ends (CR only): rare enough to split in memory
        lines = iter(fh.read().splitlines(keepends=True)) if b"\r" in head and b"\n" not in head else fh
        for number, line in enumerate(lines):
            if number == 0:
                line = line.removeprefix(codecs.BOM_UTF8)
            yield line.decode(encoding, errors="surrogateescape")


def _undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str, encoding: str) -> str:
    """Text for raw.quarantine: undecodable bytes become U+FFFD (PostgreSQL stores valid UTF-8 only)."""
    return text.encode(encoding, errors="surrogateescape").decode(encoding, errors="replace").replace("\x00", "\ufffd")


def _encoding_hint(src: SourceConfig) -> str:
    if src.encoding.startswith("utf-8"):
        return "not valid UTF-8 (if the file is Latin-1 or Windows-1252, set encoding: cp1252 for this source)"
    return f"not valid {src.encoding}"


@dataclass
class _PythonParsed:
    """One file read line by line: its good records (text columns + ``_source_line``) and its rejects."""
    good: pa.Table
    rejects: list[tuple[int, str, str]]  # (record number, raw text, reason)


def _python_csv(src: SourceConfig, path: Path, file_cols: list[str]) -> _PythonParsed:
    """Read a CSV file record by record: a short, long, undecodable or unparseable record is rejected
    with its record number and reason, and every other record loads (record 1 = the first after the
    header, as DuckDB's reader counts them)."""
    csv.field_size_limit(MAX_LINE_BYTES)
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in _decoded_lines(path, src.encoding):
            consumed.append(line)
            yield line

    reader = csv.reader(lines(), delimiter=src.delimiter, quotechar='"', doublequote=True, strict=False)
    columns: list[list[str]] = [[] for _ in file_cols]
    line_numbers: list[int] = []
    rejects: list[tuple[int, str, str]] = []
    record, header_seen = 0, False
    while True:
        consumed.clear()
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # the reader carries on with the next record after an error
            if header_seen:
                record += 1
                rejects.append((record, _printable("".join(consumed).rstrip("\r\n"), src.encoding),
                                f"not parseable as CSV: {exc}"))
            header_seen = True
            continue
        if not header_seen:
            header_seen = True
            continue
        if not fields:  # a blank line is no record
            continue
        record += 1
        text = "".join(consumed).rstrip("\r\n")
        if _undecodable(text):
            rejects.append((record, _printable(text, src.encoding), _encoding_hint(src)))
        elif len(fields) != len(file_cols):
            rejects.append((record, _printable(text, src.encoding),
                            f"expected {len(file_cols)} fields, found {len(fields)}"))
        else:
            for values, value in zip(columns, fields, strict=True):
                values.append(value)
            line_numbers.append(record)
    good = pa.table({**{c: pa.array(v, pa.string()) for c, v in zip(file_cols, columns, strict=True)},
                     "_source_line": pa.array(line_numbers, pa.int64())})
    return _PythonParsed(good, rejects)


def _python_jsonl(src: SourceConfig, path: Path) -> _PythonParsed:
    """Read a JSONL file line by line: a truncated, malformed or undecodable line is rejected, the rest load."""
    texts: list[str] = []
    line_numbers: list[int] = []
    rejects: list[tuple[int, str, str]] = []
    record = 0
    for line in _decoded_lines(path, src.encoding):
        text = line.strip()
        if not text:
            continue
        record += 1
        if _undecodable(text):
            rejects.append((record, _printable(text, src.encoding), _encoding_hint(src)))
            continue
        try:
            json.loads(text)
        except ValueError as exc:
            rejects.append((record, _printable(text, src.encoding), f"malformed JSON: {exc}"))
            continue
        texts.append(text)
        line_numbers.append(record)
    good = pa.table({"_line": pa.array(texts, pa.string()), "_source_line": pa.array(line_numbers, pa.int64())})
    return _PythonParsed(good, rejects)


def _file_columns(src: SourceConfig, path: Path) -> list[str]:
    """Column names of one landing file, read from its header (CSV) or schema (Parquet).

    JSONL records carry their own keys, so there is nothing to check up front.
    """
    if src.file_format in ("csv", "jsonl"):
        _check_is_text(src, path)
    try:
        if src.file_format == "csv":
            header_line = next(_decoded_lines(path, src.encoding), "")
            if _undecodable(header_line):
                raise IngestError(f"{src.name}: cannot read {path} as csv: the header is {_encoding_hint(src)}")
            header = next(csv.reader([header_line], delimiter=src.delimiter), [])
            if not header:
                raise IngestError(f"{src.name}: {path} is empty (no header); a day without rows must still "
                                  "have its header line")
            names = [h.strip() for h in header]
            duplicated = sorted({n for n in names if names.count(n) > 1})
            if duplicated:
                raise IngestError(f"{src.name}: cannot read {path} as csv: the header repeats column(s) "
                                  f"{', '.join(duplicated)}")
            return names
        if src.file_format == "parquet":
            return list(pq.read_schema(path).names)
    except (csv.Error, pa.ArrowException, OSError) as exc:
        raise IngestError(f"{src.name}: cannot read {path} as {src.file_format}: {exc}") from exc
    return []


def _delimiter_hint(src: SourceConfig, file_cols: list[str]) -> str:
    if src.file_format == "csv" and len(file_cols) == 1:
        found = [d for d in (";", "\t", "|", ",") if d != src.delimiter and d in file_cols[0]]
        if found:
            return f" (wrong delimiter? the header does not split on {src.delimiter!r} but contains {found[0]!r})"
    return ""


def _json_object(columns: list[str], bind: _Binds) -> str:
    return "cast(json_object(" + ", ".join(f"{bind(c)}, {quote_ident(c)}" for c in columns) + ") as varchar)"


#: The columns every per-file select yields, in this order, before the mapped source columns.
_META = ("_partition_date", "_source_file", "_source_line", "_raw_record", "_extras", "_is_object", "_pre_reason")


@dataclass(frozen=True)
class _FileInput:
    """One landing file to parse: by DuckDB's reader, or (``parsed``) as read line by line in Python."""
    day: dt.date
    path: Path
    file_cols: tuple[str, ...]
    parsed: _PythonParsed | None = None
    #: rejected upstream (an order export's split), from the file's ``.rejects.jsonl`` sidecar
    upstream_rejects: tuple[tuple[str, int, str, str], ...] = ()


def _file_select(src: SourceConfig, item: _FileInput, index: int, bind: _Binds,
                 con: duckdb.DuckDBPyConnection) -> tuple[str, tuple[str, ...]]:
    """One file as rows of text: load metadata, the raw record, extras, and every mapped column."""
    p = bind(str(item.path))
    wanted = sorted(src.mapped_source_columns)
    file_cols = list(item.file_cols)
    line = "_source_line" if item.parsed else "row_number() over ()"
    meta = f"{bind(item.day)} as _partition_date, {p} as _source_file, {line} as _source_line"
    if item.parsed is not None:
        name = f"_parsed_{index}"
        con.register(name, item.parsed.good)
    if src.file_format == "jsonl":
        drop_mapped = "{" + ", ".join(f'"{c}": null' for c in wanted) + "}"
        cols = ", ".join(f"json ->> {bind(c)} as {quote_ident(c)}" for c in wanted)
        reader = (f"(select cast(_line as json) as json, _source_line from {name})" if item.parsed
                  else f"read_ndjson_objects({p}, maximum_object_size = {MAX_LINE_BYTES})")
        return (
            f"select {meta}, cast(json as varchar) as _raw_record, "
            f"nullif(cast(json_merge_patch(json, {bind(drop_mapped)}) as varchar), '{{}}') as _extras, "
            f"json_type(json) = 'OBJECT' as _is_object, cast(null as varchar) as _pre_reason, {cols} "
            f"from {reader}",
            (),
        )
    extras = tuple(c for c in file_cols if c not in src.mapped_source_columns)
    extras_expr = _json_object(list(extras), bind) if extras else "cast(null as varchar)"
    cols = ", ".join(f"cast({quote_ident(c)} as varchar) as {quote_ident(c)}" for c in wanted)
    if item.parsed is not None:
        reader = name
    elif src.file_format == "csv":
        # The header was read already, so nothing is sniffed: a ragged or truncated row is an error,
        # and the file is then read line by line (_python_csv) to quarantine just that row.
        reader = (
            f"read_csv({p}, header = true, auto_detect = false, columns = {bind(dict.fromkeys(file_cols, 'VARCHAR'))}, "
            f"delim = {bind(src.delimiter)}, quote = '\"', escape = '\"', max_line_size = {MAX_LINE_BYTES})"
        )
    else:
        reader = f"read_parquet({p})"
    raw_record = _json_object(file_cols, bind)
    return (f"select {meta}, {raw_record} as _raw_record, {extras_expr} as _extras, true as _is_object, "
            f"cast(null as varchar) as _pre_reason, {cols} from {reader}", extras)


def _rejects_select(src: SourceConfig, items: list[_FileInput], bind: _Binds, con: duckdb.DuckDBPyConnection) -> str:
    """Records rejected before the checks (unreadable lines, an export split's rejects), as `incoming` rows."""
    rows = [(item.day, str(item.path), line, raw, reason) for item in items if item.parsed
            for line, raw, reason in item.parsed.rejects]
    rows += [(item.day, file, line, raw, reason) for item in items for file, line, raw, reason in item.upstream_rejects]
    if not rows:
        return ""
    day, file, line, raw, reason = zip(*rows, strict=True)
    con.register("_rejected", pa.table({
        "_partition_date": pa.array(day, pa.date32()), "_source_file": pa.array(file, pa.string()),
        "_source_line": pa.array(line, pa.int64()), "_raw_record": pa.array(raw, pa.string()),
        "_pre_reason": pa.array(reason, pa.string()),
    }))
    cols = ", ".join(f"cast(null as varchar) as {quote_ident(c)}" for c in sorted(src.mapped_source_columns))
    return ("select _partition_date, _source_file, _source_line, _raw_record, cast(null as varchar) as _extras, "
            f"true as _is_object, _pre_reason, {cols} from _rejected")


def _upstream_rejects(src: SourceConfig, path: Path) -> tuple[tuple[str, int, str, str], ...]:
    """The ``<file>.rejects.jsonl`` sidecar: records a preparation step (custseg.steps.byo) could not turn into rows."""
    sidecar = path.with_name(path.name + ".rejects.jsonl")
    if not sidecar.exists():
        return ()
    out = []
    for number, line in enumerate(sidecar.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append((str(item["source_file"]), int(item["line"]), str(item["raw_record"]), str(item["reason"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise IngestError(f"{src.name}: {sidecar} line {number} is not a reject record: {exc}") from exc
    return tuple(out)


def _rows_after_as_of(path: Path) -> int:
    """Rows of an order export dated after the run's date (the ``<file>.meta.json`` sidecar), counted, not read."""
    sidecar = path.with_name(path.name + ".meta.json")
    if not sidecar.exists():
        return 0
    try:
        count = json.loads(sidecar.read_text(encoding="utf-8")).get("rows_after_as_of", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"rows_after_as_of is {count!r}, not a count")
        return count
    except (ValueError, TypeError, AttributeError) as exc:
        # a count we cannot read would silently break the reconciliation: say so instead
        raise IngestError(f"cannot read {sidecar}: {exc}; delete the split and rerun the export") from exc


def _prepare_input(src: SourceConfig, day: dt.date, path: Path) -> _FileInput:
    if not path.exists():
        raise IngestError(f"{src.name}: landing file {path} is missing (the export did not arrive)")
    file_cols = _file_columns(src, path)
    missing = sorted(c for c in src.mapped_source_columns if c not in file_cols)
    if src.file_format != "jsonl" and missing:
        raise IngestError(f"{src.name}: {path} lacks required column(s) {', '.join(map(repr, missing))}"
                          + _delimiter_hint(src, file_cols))
    item = _FileInput(day, path, tuple(file_cols), upstream_rejects=_upstream_rejects(src, path))
    # DuckDB's readers take UTF-8 only: a file in another encoding is decoded in Python
    if src.encoding not in ("utf-8", "utf-8-sig", "ascii"):
        return _read_in_python(src, item)
    return item


def _read_in_python(src: SourceConfig, item: _FileInput) -> _FileInput:
    if src.file_format == "csv":
        parsed = _python_csv(src, item.path, list(item.file_cols))
    elif src.file_format == "jsonl":
        parsed = _python_jsonl(src, item.path)
    else:
        raise AssertionError(src.file_format)
    return _FileInput(item.day, item.path, item.file_cols, parsed, item.upstream_rejects)


def parse_files(
    src: SourceConfig, files: list[tuple[dt.date, Path]], run_id: str, con: duckdb.DuckDBPyConnection,
    suppression: Suppression | None = None,
) -> ParsedBatch:
    """Parse and check several landing files in one pass (one query per chunk, not per file).

    A text file that DuckDB's reader refuses (a short or long row, a line that is not valid UTF-8,
    a truncated record, mixed line endings) is read again line by line, so only its bad records are
    quarantined. Raises IngestError naming the file if one cannot be read at all: missing, not the
    declared format (compressed, binary, a directory), or without a mapped column.
    """
    items = [_prepare_input(src, day, path) for day, path in files]
    try:
        extras = _create_incoming(src, items, con)
    except duckdb.Error:
        items = [_retry_in_python(src, item, con) for item in items]
        extras = _create_incoming(src, items, con)
    _check(src, con)
    suppressed = _mark_suppressed(src, con, suppression)
    if src.file_format == "jsonl":
        extras.update(r[0] for r in con.execute(
            "select distinct unnest(json_keys(_extras)) from incoming where _extras is not null").fetchall())
    bind = _Binds()
    canonical = ", ".join(quote_ident(c.name) for c in src.channel.columns)
    valid = con.sql(
        f"select {canonical}, _partition_date, _source_file, _source_line, {bind(run_id)} as _run_id, _extras "
        f"from checked where _reason is null and not {suppressed} order by _partition_date, _source_line",
        params=bind.values,
    ).to_arrow_table()
    bind = _Binds()
    quarantined = con.sql(
        f"select {bind(src.name)} as source, _source_file as source_file, _source_line as source_line, "
        f"_partition_date as partition_date, {bind(run_id)} as run_id, _raw_record as raw_record, "
        f"_reason as reason from checked where _reason is not null and not {suppressed} "
        "order by _partition_date, _source_line", params=bind.values,
    ).to_arrow_table()
    counts = dict.fromkeys((day for day, _ in files), 0)
    duplicates = dict.fromkeys((day for day, _ in files), 0)
    suppressed_rows = dict.fromkeys((day for day, _ in files), 0)
    for day, n, dups, erased in con.execute(
            f"select _partition_date, count(*), count(*) filter (where _is_duplicate and not {suppressed}), "
            f"count(*) filter (where {suppressed}) from checked group by 1"
    ).fetchall():
        counts[day], duplicates[day], suppressed_rows[day] = int(n), int(dups), int(erased)
    after_as_of = {day: _rows_after_as_of(path) for day, path in files}
    return ParsedBatch(tuple(files), counts, valid, quarantined, tuple(sorted(extras)), duplicates, after_as_of,
                       suppressed_rows)


@dataclass(frozen=True)
class Suppression:
    """The erased people's keyed hashes (raw.erasure_suppression, custseg/erasure.py) and what hashes a row's keys
    as staging does: the hash key and the phone country code."""
    keys: pa.Table
    hash_key: str
    country_code: str

    @classmethod
    def of(cls, settings: Settings, wh: Warehouse) -> Suppression:
        return cls(suppressed_keys(wh), settings.hash_key, settings.phone_country_code)


def _mark_suppressed(src: SourceConfig, con: duckdb.DuckDBPyConnection, suppression: Suppression | None) -> str:
    """Flag the rows of `checked` that belong to an erased person (`_suppressed`): they are neither loaded nor
    quarantined (quarantine would keep their PII), only counted. Returns the SQL that says so (a constant
    false when nobody was erased, which costs nothing)."""
    if suppression is None or suppression.keys.num_rows == 0:
        return "false"
    con.register("_suppressed_keys", suppression.keys)
    bind = _Binds()
    condition = suppression_sql(src.channel, suppression.country_code, bind(suppression.hash_key), "_suppressed_keys")
    con.execute(f"create or replace temp table checked as select *, {condition} as _suppressed from checked",
                bind.values)
    return "_suppressed"


def _create_incoming(src: SourceConfig, items: list[_FileInput], con: duckdb.DuckDBPyConnection) -> set[str]:
    """Table `incoming`: every record of the files as text, plus the records rejected before the checks."""
    bind, selects, extras = _Binds(), [], set()
    for index, item in enumerate(items):
        sql, file_extras = _file_select(src, item, index, bind, con)
        selects.append(sql)
        extras.update(file_extras)
    rejected = _rejects_select(src, items, bind, con)
    if rejected:
        selects.append(rejected)
    con.execute("create or replace temp table incoming as " + "\nunion all\n".join(selects), bind.values)
    return extras


def _retry_in_python(src: SourceConfig, item: _FileInput, con: duckdb.DuckDBPyConnection) -> _FileInput:
    """The file again, line by line when DuckDB's reader refused it; a binary format fails as a whole."""
    if item.parsed is not None:
        return item
    bind = _Binds()
    sql, _ = _file_select(src, item, 0, bind, con)
    try:
        # materialised, not counted: a count does not decode the values, and a bad byte would slip through
        con.execute(f"create or replace temp table _probe as {sql}", bind.values)
        con.execute("drop table _probe")
        return item
    except duckdb.Error as exc:
        if src.file_format == "parquet":
            raise IngestError(f"{src.name}: cannot read {item.path} as {src.file_format}: {_explain(exc)}") from exc
        log.warning("%s: %s: %s; reading it line by line to quarantine the bad records", src.name, item.path,
                    _explain(exc))
        return _read_in_python(src, item)


def _explain(exc: duckdb.Error) -> str:
    """DuckDB's reader error in one line, in the words of the problem (encoding, truncation, ...)."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    where = next((ln for ln in lines if ln.startswith("CSV Error on Line")), "")
    where = (where.replace("CSV Error on Line:", "line").strip() + ": ") if where else ""
    if "Invalid unicode" in text or "not utf-8" in text.lower():
        return f"{where}not valid UTF-8"
    if "unterminated quote" in text:
        return f"{where}unterminated quote (truncated file?)"
    cols = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if cols:
        return f"{where}expected {cols.group(1)} fields, found {cols.group(2)}"
    if "state machine reached an invalid state" in text:
        return f"{where}not parseable as RFC 4180 CSV (mixed line endings or a stray quote?)"
    if "Malformed JSON" in text:
        return "malformed JSON: " + lines[0].split("Malformed JSON", 1)[1].strip(" :")
    return lines[0] if lines else type(exc).__name__


def _check(src: SourceConfig, con: duckdb.DuckDBPyConnection) -> None:
    """Type every mapped column and collect every reason a row cannot be loaded (table `checked`).

    Besides each column's own checks: a row of a channel that must name its customer and names none
    is quarantined (it would vanish downstream otherwise), and rows of one partition that share a key
    (and version) are either exact duplicates, loaded and counted (staging keeps one), or a conflict,
    quarantined whole: which of two different orders with one id is the real one is not ours to guess.
    """
    bind = _Binds()
    select_cols, reasons = [], []
    mapped = {m.canonical: m for m in src.columns}
    texts: dict[str, str] = {}
    for mapping in src.columns:
        col = src.channel.column(mapping.canonical)
        text = f"nullif(trim({quote_ident(mapping.source_column)}), '')"
        texts[col.name] = text
        typed = _typed_expr(col, mapping, text, bind)
        select_cols.append(f"{typed} as {quote_ident(col.name)}")
        reasons += _reason_exprs(col, text, typed)
    for col in src.channel.columns:  # canonical columns this source does not provide
        if col.name not in mapped:
            select_cols.append(f"cast(null as {SQL_TYPES[col.type]}) as {quote_ident(col.name)}")
    if src.channel.customer_required:
        given = [texts[c] for c in src.channel.customer_columns if c in texts]
        names = ", ".join(src.channel.customer_columns)
        reasons.append(f"case when coalesce({', '.join(given)}) is null then 'missing customer (no {names})' end")
    # a record rejected before the checks keeps that reason; a JSONL record that is not an object has
    # no fields to complain about: its one reason says so
    reason = ("case when _pre_reason is not null then _pre_reason when not _is_object then 'not a JSON object' "
              "else nullif(concat_ws('; ', " + ", ".join(reasons) + "), '') end")
    con.execute(
        "create or replace temp table checked as select _partition_date, _source_file, _source_line, "
        + ", ".join(select_cols)
        + f", {reason} as _reason, _raw_record, _extras from incoming",
        bind.values,
    )
    _mark_shared_keys(src, con)


def _mark_shared_keys(src: SourceConfig, con: duckdb.DuckDBPyConnection) -> None:
    """Rows of one partition sharing a key (and version): exact duplicates are flagged, conflicts quarantined."""
    channel = src.channel
    key = quote_ident(channel.key)
    version = quote_ident(channel.version_column) if channel.version_column else "cast(null as varchar)"
    content = "md5(to_json([" + ", ".join(f"cast({quote_ident(c.name)} as varchar)" for c in channel.columns) + "]))"
    con.execute(f"""
        create or replace temp table shared_keys as
        select _partition_date, {key} as _key, {version} as _version,
               count(*) as _rows, count(distinct {content}) as _variants,
               list(_source_line order by _source_line) as _lines
        from checked
        where _reason is null
        group by 1, 2, 3
        having count(*) > 1
    """)
    conflict = (f"'conflicting {channel.key} ' || left(cast(shared._key as varchar), 200) || ': ' || shared._rows "
                "|| ' rows with different values (lines ' || array_to_string(shared._lines[1:10], ', ') "
                "|| case when shared._rows > 10 then ', ...' else '' end || ')'")
    con.execute(f"""
        create or replace temp table checked as
        select checked.* replace (
                   case when shared._variants > 1 then {conflict} else checked._reason end as _reason
               ),
               coalesce(shared._variants = 1 and checked._source_line <> shared._lines[1], false) as _is_duplicate
        from checked
        left join shared_keys as shared
            on checked._reason is null
            and shared._partition_date = checked._partition_date
            and shared._key = checked.{key}
            {f"and shared._version is not distinct from checked.{version}" if channel.version_column else ""}
    """)


def loaded_partitions(wh: Warehouse, source: str) -> set[dt.date]:
    """Partition dates of a source that were loaded successfully at least once."""
    return {
        r[0] if isinstance(r[0], dt.date) else dt.date.fromisoformat(str(r[0]))
        for r in wh.fetchall(
            "select distinct partition_date from ops.load_audit where source = %s and status = 'success'",
            (source,),
        )
    }


def partitions_to_load(wh: Warehouse, src: SourceConfig, landing_dir: Path, as_of_date: dt.date) -> list[dt.date]:
    """Landing dates on disk up to the as-of date that were never loaded, plus the as-of date.

    A snapshot source is one file that always holds the current state: it is loaded as the logical
    date's partition, and there is no history to catch up on.
    """
    if src.layout == "snapshot":
        return [as_of_date]
    pattern = re.escape(src.path).replace(re.escape("{date}"), r"(\d{4}-\d{2}-\d{2})")
    regex = re.compile(pattern + "$")
    on_disk = set()
    for path in landing_dir.glob(src.path.replace("{date}", "*")):
        m = regex.search(path.relative_to(landing_dir).as_posix())
        if m:
            day = dt.date.fromisoformat(m.group(1))
            if day <= as_of_date:
                on_disk.add(day)
    return sorted((on_disk - loaded_partitions(wh, src.name)) | {as_of_date})


def pending_files(settings: Settings, wh: Warehouse, src: SourceConfig, as_of_date: dt.date
                  ) -> list[tuple[dt.date, Path]]:
    """The (partition date, file) pairs this run loads: landing files, or fresh extracts of a table."""
    if src.format == "postgres_table":
        try:
            return extract_pending(src, as_of_date, loaded_partitions(wh, src.name), settings.data_dir / "extracts")
        except (ExtractError, ConfigError) as exc:
            raise IngestError(str(exc)) from exc
    return [(day, src.file_for(settings.landing_dir, day.isoformat()))
            for day in partitions_to_load(wh, src, settings.landing_dir, as_of_date)]


def load_batch(
    wh: Warehouse, src: SourceConfig, batch: ParsedBatch, run_id: str, as_of_date: dt.date
) -> list[LoadResult]:
    """Replace the batch's partitions in raw and quarantine, and audit each (caller's transaction)."""
    days = [day for day, _ in batch.files]
    marks = ", ".join(["%s"] * len(days))
    wh.execute(f"delete from raw.{src.channel.table} where _partition_date in ({marks})", days)
    wh.execute(f"delete from raw.quarantine where source = %s and partition_date in ({marks})", (src.name, *days))
    wh.write_arrow("raw", src.channel.table, batch.valid)
    wh.write_arrow("raw", "quarantine", batch.quarantined)
    loaded = _count_by_day(batch.valid, "_partition_date")
    quarantined = _count_by_day(batch.quarantined, "partition_date")
    results = []
    for day, path in batch.files:
        read, ok, bad = batch.rows_read[day], loaded.get(day, 0), quarantined.get(day, 0)
        erased = batch.suppressed.get(day, 0)
        if ok + bad + erased != read:
            raise IngestError(f"{src.name}: {path}: row counts do not add up (read {read}, loaded {ok}, "
                              f"quarantined {bad}, suppressed {erased})")
        dups, later = batch.duplicates.get(day, 0), batch.after_as_of.get(day, 0)
        record_load(wh, run_id, as_of_date, src.name, day, str(path), read, ok, bad, batch.extra_columns,
                    "success", None, duplicates=dups, after_as_of=later, suppressed=erased)
        results.append(LoadResult(src.name, day, str(path), read, ok, bad, batch.extra_columns, dups, later, erased))
    if batch.extra_columns:
        log.warning("%s: unexpected columns kept in _extras: %s", src.name, ", ".join(batch.extra_columns))
    return results


def _count_by_day(table: pa.Table, column: str) -> dict[dt.date, int]:
    if table.num_rows == 0:
        return {}
    counts = table.group_by(column).aggregate([(column, "count")])
    return dict(zip(counts[column].to_pylist(), counts[f"{column}_count"].to_pylist(), strict=True))


def record_load(wh: Warehouse, run_id: str, as_of_date: dt.date, source: str, partition_date: dt.date | None,
                source_file: str | None, read: int, loaded: int, quarantined: int, extras: tuple[str, ...],
                status: str, error: str | None, *, duplicates: int = 0, after_as_of: int = 0,
                suppressed: int = 0) -> None:
    wh.execute(
        "insert into ops.load_audit (run_id, as_of_date, source, partition_date, source_file, rows_read, "
        "rows_loaded, rows_quarantined, rows_duplicate, rows_after_as_of, rows_suppressed, extra_columns, status, "
        "error, recorded_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run_id, as_of_date, source, partition_date, source_file, read, loaded, quarantined, duplicates,
         after_as_of, suppressed, json.dumps(list(extras)) if extras else None, status, error,
         utc_now()),
    )


def _chunks(pending: list[tuple[dt.date, Path]]) -> list[list[tuple[dt.date, Path]]]:
    """Consecutive groups of at most FILES_PER_CHUNK files and (unless one file is larger) MAX_CHUNK_BYTES."""
    chunks: list[list[tuple[dt.date, Path]]] = []
    size = 0
    for day, path in pending:
        nbytes = path.stat().st_size if path.exists() else 0
        if not chunks or len(chunks[-1]) >= FILES_PER_CHUNK or size + nbytes > MAX_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append((day, path))
        size += nbytes
    return chunks


def ingest_source(settings: Settings, source_name: str, as_of_date: dt.date, run_id: str) -> list[LoadResult]:
    """Load every pending partition of one source, chunk by chunk, each chunk all or nothing.

    Partitions are parsed in chunks of at most FILES_PER_CHUNK files and MAX_CHUNK_BYTES, and each
    chunk is written in its own warehouse transaction, so memory stays bounded by the chunk, not
    the history. A file that cannot be read fails the task, rolls back its chunk (nothing of the
    file, nor of the other files parsed with it, is loaded), and is recorded as a failed load in
    ops.load_audit. Chunks committed before it stay loaded and audited, so the rerun continues from
    the failed file instead of redoing a year of catch-up.
    """
    sources = load_sources(settings.sources_file)
    if source_name not in sources:
        raise KeyError(f"{settings.sources_file}: no source named {source_name!r}")
    src = sources[source_name]
    results: list[LoadResult] = []
    scratch = scratch_connection(settings.duckdb_memory_limit)
    with connect(settings) as wh:
        chunk: list[tuple[dt.date, Path]] = []
        try:
            suppression = Suppression.of(settings, wh)
            pending = pending_files(settings, wh, src, as_of_date)
            chunk = pending[:1]
            # One transaction per chunk, not per catch-up: DuckDB keeps a transaction's uncommitted
            # rows in memory (3.6 GB for a year of e-mail events at 1M customers, whatever the
            # memory limit), so a whole-history transaction would grow with the history.
            for chunk in _chunks(pending):
                with wh.transaction():
                    batch = parse_files(src, chunk, run_id, scratch, suppression)
                    results += load_batch(wh, src, batch, run_id, as_of_date)
        except IngestError as exc:
            failed = str(exc)
            # the file named in the error, else the chunk's first; a table that could not be
            # extracted has no file yet and is audited under the as-of date
            day, where = next(((d, str(p)) for d, p in chunk if str(p) in failed),
                              (chunk[0][0], str(chunk[0][1])) if chunk else (as_of_date, src.table or src.path))
            record_load(wh, run_id, as_of_date, src.name, day, where, 0, 0, 0, (), "failed", failed)
            raise
        finally:
            scratch.close()
    total = sum(r.rows_read for r in results)
    log.info("%s: %d partition(s), %d rows read, %d loaded, %d quarantined, %d suppressed (erased people)",
             source_name, len(results), total, sum(r.rows_loaded for r in results),
             sum(r.rows_quarantined for r in results), sum(r.rows_suppressed for r in results))
    return results


def ingest_all(settings: Settings, as_of_date: dt.date, run_id: str) -> dict[str, list[LoadResult]]:
    return {name: ingest_source(settings, name, as_of_date, run_id) for name in load_sources(settings.sources_file)}
