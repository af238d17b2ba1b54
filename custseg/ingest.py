"""Ingest one source's landing partitions into `raw`, quarantining what cannot be loaded.

Files are parsed and checked in an in-memory DuckDB (its native CSV / JSON / Parquet readers),
whatever the target warehouse is; the clean rows then go to the warehouse through its bulk path.
Every row read ends up in `raw.<table>` or in `raw.quarantine`, and `ops.load_audit` records
`rows_read = rows_loaded + rows_quarantined` per partition.

Which partitions a run loads: every landing file dated on or before the logical date that has
not been loaded successfully yet (so the first run on an empty warehouse catches up on history),
plus the logical date itself, which is always reloaded (so a rerun replaces that day's rows).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from custseg.config import Settings
from custseg.schemas import SQL_TYPES, Column
from custseg.sources import ColumnMapping, SourceConfig, load_sources
from custseg.warehouse import Warehouse, connect

log = logging.getLogger(__name__)

#: A timestamp more than this long after the end of its landing date is treated as "in the future".
FUTURE_TOLERANCE = dt.timedelta(hours=24)


class IngestError(RuntimeError):
    """A landing file cannot be read at all; the message names the file and the problem."""


@dataclass(frozen=True)
class ParsedBatch:
    source_file: Path
    partition_date: dt.date
    rows_read: int
    valid: pa.Table
    quarantined: pa.Table
    extra_columns: tuple[str, ...]


@dataclass(frozen=True)
class LoadResult:
    source: str
    partition_date: dt.date
    source_file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    extra_columns: tuple[str, ...]


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed_expr(col: Column, mapping: ColumnMapping, text: str) -> str:
    """SQL turning the trimmed text `text` into the canonical type; NULL when it does not parse."""
    if mapping.decimal == "," and col.type in ("numeric", "double", "integer"):
        text = f"replace({text}, ',', '.')"
    if col.type == "timestamp":
        if mapping.parse == "epoch_ms":
            return f"epoch_ms(try_cast({text} as bigint))"
        if mapping.parse == "local":
            tz = f"nullif(trim({_ident(mapping.parse_arg or '')}), '')"
            return f"timezone('UTC', timezone({tz}, try_cast({text} as timestamp)))"
        return f"timezone('UTC', try_cast({text} as timestamptz))"
    if col.type == "date":
        if mapping.parse == "date":
            return f"cast(try_strptime({text}, {_lit(mapping.parse_arg or '')}) as date)"
        return f"try_cast({text} as date)"
    if col.type == "text":
        return _ident(mapping.source_column)
    return f"try_cast({text} as {SQL_TYPES[col.type]})"


def _reason_exprs(col: Column, text: str, typed: str, partition_date: dt.date) -> list[str]:
    name = col.name
    shown = f"left({text}, 200)"
    reasons = []
    if col.required:
        reasons.append(f"case when {text} is null then 'missing {name}' end")
    if col.type != "text":
        reasons.append(
            f"case when {text} is not null and {typed} is null then 'unparseable {name}: ' || {shown} end"
        )
    if col.min_value is not None:
        reasons.append(f"case when {typed} < {col.min_value} then '{name} below {col.min_value:g}: ' || {shown} end")
    if col.allowed:
        allowed = ", ".join(_lit(a.upper()) for a in col.allowed)
        reasons.append(f"case when upper({text}) not in ({allowed}) then 'unknown {name}: ' || {shown} end")
    if col.not_future:
        limit = dt.datetime.combine(partition_date + dt.timedelta(days=1), dt.time()) + FUTURE_TOLERANCE
        reasons.append(
            f"case when {typed} > timestamp '{limit:%Y-%m-%d %H:%M:%S}' "
            f"then 'future {name}: ' || {shown} end"
        )
    return reasons


def _load_incoming(con: duckdb.DuckDBPyConnection, src: SourceConfig, path: Path) -> list[str]:
    """Materialise the file as table `incoming` (all text) and return its column names."""
    p = _lit(str(path))
    if src.format == "csv":
        reader = (
            f"read_csv({p}, header = true, all_varchar = true, delim = {_lit(src.delimiter)}, "
            "quote = '\"', escape = '\"')"
        )
        con.execute(f"create or replace temp table incoming as select * from {reader}")
        cols = [r[0] for r in con.execute("describe incoming").fetchall()]
        con.execute(
            "create or replace temp table incoming as "
            f"select row_number() over () as _source_line, * from {reader}"
        )
        return cols
    if src.format == "parquet":
        con.execute(
            "create or replace temp table incoming as "
            f"select row_number() over () as _source_line, * from read_parquet({p})"
        )
        cols = [r[0] for r in con.execute("describe incoming").fetchall() if r[0] != "_source_line"]
        casts = ", ".join(f"cast({_ident(c)} as varchar) as {_ident(c)}" for c in cols)
        con.execute(f"create or replace temp table incoming as select _source_line, {casts} from incoming")
        return cols
    # jsonl: keep each record as JSON so unexpected keys survive, then project the keys as text.
    con.execute(
        "create or replace temp table incoming_json as "
        f"select row_number() over () as _source_line, json from read_ndjson_objects({p})"
    )
    keys = [
        r[0]
        for r in con.execute(
            "select k from (select distinct unnest(json_keys(json)) as k from incoming_json) order by k"
        ).fetchall()
    ]
    projections = ", ".join(f"json ->> {_lit(k)} as {_ident(k)}" for k in keys)
    con.execute(
        "create or replace temp table incoming as select _source_line, json as _raw_json"
        + (f", {projections}" if projections else "")
        + " from incoming_json"
    )
    return keys


def parse_file(src: SourceConfig, path: Path, partition_date: dt.date, run_id: str) -> ParsedBatch:
    """Parse and check one landing file. Raises IngestError if the file cannot be read at all."""
    if not path.exists():
        raise IngestError(f"{src.name}: landing file {path} is missing (the export did not arrive)")
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        try:
            file_cols = _load_incoming(con, src, path)
        except duckdb.Error as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise IngestError(f"{src.name}: cannot read {path} as {src.format}: {first_line}") from exc
        missing = sorted(c for c in src.mapped_source_columns if c not in file_cols)
        if missing and not (src.format == "jsonl" and _count(con) == 0):
            raise IngestError(f"{src.name}: {path} lacks required column(s) {', '.join(missing)}")
        for c in missing:  # an empty JSONL file has no keys at all
            con.execute(f"alter table incoming add column {_ident(c)} varchar")
        extras = tuple(c for c in file_cols if c not in src.mapped_source_columns)

        select_cols, reasons = [], []
        for mapping in src.columns:
            col = src.channel.column(mapping.canonical)
            text = f"nullif(trim({_ident(mapping.source_column)}), '')"
            typed = _typed_expr(col, mapping, text)
            select_cols.append(f"{typed} as {_ident(col.name)}")
            reasons += _reason_exprs(col, text, typed, partition_date)
        for col in src.channel.columns:  # canonical columns this source does not provide
            if col.name not in {m.canonical for m in src.columns}:
                select_cols.append(f"cast(null as {SQL_TYPES[col.type]}) as {_ident(col.name)}")
        if src.format == "jsonl":
            raw_record = "_raw_json"
        else:
            raw_record = "cast(json_object(" + ", ".join(f"{_lit(c)}, {_ident(c)}" for c in file_cols) + ") as varchar)"
        extras_expr = (
            "cast(json_object(" + ", ".join(f"{_lit(c)}, {_ident(c)}" for c in extras) + ") as varchar)"
            if extras
            else "cast(null as varchar)"
        )
        reason = "nullif(concat_ws('; ', " + ", ".join(reasons) + "), '')"
        con.execute(
            "create temp table checked as select _source_line, "
            + ", ".join(select_cols)
            + f", {reason} as _reason, {raw_record} as _raw_record, {extras_expr} as _extras from incoming"
        )
        canonical = ", ".join(_ident(c.name) for c in src.channel.columns)
        meta = (
            f"date '{partition_date.isoformat()}' as _partition_date, {_lit(str(path))} as _source_file, "
            f"_source_line, {_lit(run_id)} as _run_id, _extras"
        )
        valid = con.execute(
            f"select {canonical}, {meta} from checked where _reason is null order by _source_line"
        ).fetch_arrow_table()
        quarantined = con.execute(
            f"select {_lit(src.name)} as source, {_lit(str(path))} as source_file, _source_line as source_line, "
            f"date '{partition_date.isoformat()}' as partition_date, {_lit(run_id)} as run_id, "
            "_raw_record as raw_record, _reason as reason from checked where _reason is not null "
            "order by _source_line"
        ).fetch_arrow_table()
        rows_read = _count(con)
    finally:
        con.close()
    return ParsedBatch(path, partition_date, rows_read, valid, quarantined, extras)


def _count(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("select count(*) from incoming").fetchone()[0])  # type: ignore[index]


def partitions_to_load(wh: Warehouse, src: SourceConfig, landing_dir: Path, logical_date: dt.date) -> list[dt.date]:
    """Landing dates on disk up to the logical date that were never loaded, plus the logical date."""
    pattern = re.escape(src.path).replace(re.escape("{date}"), r"(\d{4}-\d{2}-\d{2})")
    regex = re.compile(pattern + "$")
    on_disk = set()
    for path in landing_dir.glob(src.path.replace("{date}", "*")):
        m = regex.search(path.relative_to(landing_dir).as_posix())
        if m:
            day = dt.date.fromisoformat(m.group(1))
            if day <= logical_date:
                on_disk.add(day)
    loaded = {
        r[0] if isinstance(r[0], dt.date) else dt.date.fromisoformat(str(r[0]))
        for r in wh.fetchall(
            "select distinct partition_date from ops.load_audit where source = %s and status = 'success'",
            (src.name,),
        )
    }
    return sorted((on_disk - loaded) | {logical_date})


def load_partition(
    wh: Warehouse, src: SourceConfig, batch: ParsedBatch, run_id: str, logical_date: dt.date
) -> LoadResult:
    """Replace one partition in raw and quarantine, and audit it, in a single transaction."""
    table = src.channel.table
    with wh.transaction():
        wh.execute(f"delete from raw.{table} where _partition_date = %s", (batch.partition_date,))
        wh.execute(
            "delete from raw.quarantine where source = %s and partition_date = %s",
            (src.name, batch.partition_date),
        )
        loaded = wh.write_arrow("raw", table, batch.valid)
        quarantined = wh.write_arrow("raw", "quarantine", batch.quarantined)
        if loaded + quarantined != batch.rows_read:
            raise IngestError(
                f"{src.name}: {batch.source_file}: row counts do not add up "
                f"(read {batch.rows_read}, loaded {loaded}, quarantined {quarantined})"
            )
        _audit(wh, run_id, logical_date, src.name, batch.partition_date, str(batch.source_file),
               batch.rows_read, loaded, quarantined, batch.extra_columns, "success", None)
    if batch.extra_columns:
        log.warning("%s: %s has unexpected columns kept in _extras: %s", src.name, batch.source_file,
                    ", ".join(batch.extra_columns))
    return LoadResult(src.name, batch.partition_date, str(batch.source_file), batch.rows_read, loaded,
                      quarantined, batch.extra_columns)


def _audit(wh: Warehouse, run_id: str, logical_date: dt.date, source: str, partition_date: dt.date | None,
           source_file: str | None, read: int, loaded: int, quarantined: int, extras: tuple[str, ...],
           status: str, error: str | None) -> None:
    wh.execute(
        "insert into ops.load_audit (run_id, logical_date, source, partition_date, source_file, rows_read, "
        "rows_loaded, rows_quarantined, extra_columns, status, error, recorded_at) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run_id, logical_date, source, partition_date, source_file, read, loaded, quarantined,
         json.dumps(list(extras)) if extras else None, status, error,
         dt.datetime.now(dt.UTC).replace(tzinfo=None)),
    )


def ingest_source(settings: Settings, source_name: str, logical_date: dt.date, run_id: str) -> list[LoadResult]:
    """Load every pending partition of one source; a bad file fails the task and is audited."""
    sources = load_sources(settings.sources_file)
    if source_name not in sources:
        raise KeyError(f"{settings.sources_file}: no source named {source_name!r}")
    src = sources[source_name]
    results = []
    with connect(settings) as wh:
        for day in partitions_to_load(wh, src, settings.landing_dir, logical_date):
            path = src.file_for(settings.landing_dir, day.isoformat())
            try:
                batch = parse_file(src, path, day, run_id)
                results.append(load_partition(wh, src, batch, run_id, logical_date))
            except IngestError as exc:
                _audit(wh, run_id, logical_date, src.name, day, str(path), 0, 0, 0, (), "failed", str(exc))
                raise
    total = sum(r.rows_read for r in results)
    log.info("%s: %d partition(s), %d rows read, %d loaded, %d quarantined", source_name, len(results), total,
             sum(r.rows_loaded for r in results), sum(r.rows_quarantined for r in results))
    return results


def ingest_all(settings: Settings, logical_date: dt.date, run_id: str) -> dict[str, list[LoadResult]]:
    return {name: ingest_source(settings, name, logical_date, run_id) for name in load_sources(settings.sources_file)}
