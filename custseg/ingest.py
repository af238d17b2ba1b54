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

import csv
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.config import ConfigError, Settings
from custseg.schemas import SQL_TYPES, Column
from custseg.sources import ColumnMapping, SourceConfig, load_sources
from custseg.warehouse import Warehouse, connect

log = logging.getLogger(__name__)

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
    """A landing file cannot be read at all; the message names the file and the problem."""


@dataclass(frozen=True)
class ParsedBatch:
    """Several landing files parsed together: one per partition date."""

    files: tuple[tuple[dt.date, Path], ...]
    rows_read: dict[dt.date, int]
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
            # an unknown zone name must not fail the file: the row is quarantined as unparseable
            return (f"case when {tz} in (select name from pg_timezone_names()) "
                    f"then timezone('UTC', timezone({tz}, try_cast({text} as timestamp))) end")
        return f"timezone('UTC', try_cast({text} as timestamptz))"
    if col.type == "date":
        if mapping.parse == "date":
            return f"cast(try_strptime({text}, {_lit(mapping.parse_arg or '')}) as date)"
        return f"try_cast({text} as date)"
    if col.type == "text":
        return _ident(mapping.source_column)
    return f"try_cast({text} as {SQL_TYPES[col.type]})"


def _reason_exprs(col: Column, text: str, typed: str) -> list[str]:
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
        allowed = ", ".join(_lit(a.upper()) for a in col.allowed)
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
    con.execute(f"set memory_limit = '{memory_limit}'")  # the warehouse's cap (CUSTSEG_DUCKDB_MEMORY_LIMIT)
    return con


def _file_columns(src: SourceConfig, path: Path) -> list[str]:
    """Column names of one landing file, read from its header (CSV) or schema (Parquet).

    JSONL records carry their own keys, so there is nothing to check up front.
    """
    try:
        if src.file_format == "csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh, delimiter=src.delimiter), [])
            if not header:
                raise IngestError(f"{src.name}: {path} is empty (no header); a day without rows must still "
                                  "have its header line")
            return [h.strip() for h in header]
        if src.file_format == "parquet":
            return list(pq.read_schema(path).names)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{src.name}: cannot read {path} as {src.file_format}: header is not valid UTF-8 "
                          f"({exc})") from exc
    except (csv.Error, pa.ArrowException, OSError) as exc:
        raise IngestError(f"{src.name}: cannot read {path} as {src.file_format}: {exc}") from exc
    return []


def _delimiter_hint(src: SourceConfig, file_cols: list[str]) -> str:
    if src.file_format == "csv" and len(file_cols) == 1:
        found = [d for d in (";", "\t", "|", ",") if d != src.delimiter and d in file_cols[0]]
        if found:
            return f" (wrong delimiter? the header does not split on {src.delimiter!r} but contains {found[0]!r})"
    return ""


def _json_object(columns: list[str]) -> str:
    return "cast(json_object(" + ", ".join(f"{_lit(c)}, {_ident(c)}" for c in columns) + ") as varchar)"


def _file_select(src: SourceConfig, path: Path, day: dt.date, file_cols: list[str]) -> tuple[str, tuple[str, ...]]:
    """One file as rows of text: load metadata, the raw record, extras, and every mapped column."""
    p = _lit(str(path))
    wanted = sorted(src.mapped_source_columns)
    meta = f"date '{day.isoformat()}' as _partition_date, {p} as _source_file, row_number() over () as _source_line"
    if src.file_format == "jsonl":
        drop_mapped = "{" + ", ".join(f'"{c}": null' for c in wanted) + "}"
        cols = ", ".join(f"json ->> {_lit(c)} as {_ident(c)}" for c in wanted)
        return (
            f"select {meta}, cast(json as varchar) as _raw_record, "
            f"nullif(cast(json_merge_patch(json, {_lit(drop_mapped)}) as varchar), '{{}}') as _extras, "
            f"json_type(json) = 'OBJECT' as _is_object, {cols} "
            f"from read_ndjson_objects({p}, maximum_object_size = {MAX_LINE_BYTES})",
            (),
        )
    extras = tuple(c for c in file_cols if c not in src.mapped_source_columns)
    extras_expr = _json_object(list(extras)) if extras else "cast(null as varchar)"
    cols = ", ".join(f"cast({_ident(c)} as varchar) as {_ident(c)}" for c in wanted)
    if src.file_format == "csv":
        # The header was read already, so nothing is sniffed: a ragged or truncated row is an error
        # that names its line instead of a vague "could not detect the dialect".
        columns = "{" + ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in file_cols) + "}"
        reader = (
            f"read_csv({p}, header = true, auto_detect = false, columns = {columns}, "
            f"delim = {_lit(src.delimiter)}, quote = '\"', escape = '\"', max_line_size = {MAX_LINE_BYTES})"
        )
    else:
        reader = f"read_parquet({p})"
    raw_record = _json_object(file_cols)
    return (f"select {meta}, {raw_record} as _raw_record, {extras_expr} as _extras, true as _is_object, {cols} "
            f"from {reader}", extras)


def parse_files(
    src: SourceConfig, files: list[tuple[dt.date, Path]], run_id: str, con: duckdb.DuckDBPyConnection
) -> ParsedBatch:
    """Parse and check several landing files in one pass (one query per chunk, not per file).

    Raises IngestError naming the file if one cannot be read at all: missing, not the declared
    format, or without a mapped column.
    """
    selects, extras = [], set()
    for day, path in files:
        if not path.exists():
            raise IngestError(f"{src.name}: landing file {path} is missing (the export did not arrive)")
        file_cols = _file_columns(src, path)
        missing = sorted(c for c in src.mapped_source_columns if c not in file_cols)
        if src.file_format != "jsonl" and missing:
            raise IngestError(f"{src.name}: {path} lacks required column(s) {', '.join(missing)}"
                              + _delimiter_hint(src, file_cols))
        sql, file_extras = _file_select(src, path, day, file_cols)
        selects.append(sql)
        extras.update(file_extras)
    try:
        con.execute("create or replace temp table incoming as " + "\nunion all\n".join(selects))
    except duckdb.Error:
        _raise_for_unreadable_file(src, files, selects, con)
        raise
    _check(src, con)
    if src.file_format == "jsonl":
        extras.update(r[0] for r in con.execute(
            "select distinct unnest(json_keys(_extras)) from incoming where _extras is not null").fetchall())
    canonical = ", ".join(_ident(c.name) for c in src.channel.columns)
    valid = con.sql(
        f"select {canonical}, _partition_date, _source_file, _source_line, {_lit(run_id)} as _run_id, _extras "
        "from checked where _reason is null order by _partition_date, _source_line"
    ).to_arrow_table()
    quarantined = con.sql(
        f"select {_lit(src.name)} as source, _source_file as source_file, _source_line as source_line, "
        f"_partition_date as partition_date, {_lit(run_id)} as run_id, _raw_record as raw_record, "
        "_reason as reason from checked where _reason is not null order by _partition_date, _source_line"
    ).to_arrow_table()
    counts = dict.fromkeys((day for day, _ in files), 0)
    for day, n in con.execute("select _partition_date, count(*) from incoming group by 1").fetchall():
        counts[day] = int(n)
    return ParsedBatch(tuple(files), counts, valid, quarantined, tuple(sorted(extras)))


def _raise_for_unreadable_file(
    src: SourceConfig, files: list[tuple[dt.date, Path]], selects: list[str], con: duckdb.DuckDBPyConnection
) -> None:
    for (_, path), sql in zip(files, selects, strict=True):
        try:
            con.execute(f"select count(*) from ({sql})").fetchall()
        except duckdb.Error as exc:
            raise IngestError(f"{src.name}: cannot read {path} as {src.file_format}: {_explain(exc)}") from exc


def _explain(exc: duckdb.Error) -> str:
    """DuckDB's reader error in one line, in the words of the problem (encoding, truncation, ...)."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    where = next((ln for ln in lines if ln.startswith("CSV Error on Line")), "")
    where = (where.replace("CSV Error on Line:", "line").strip() + ": ") if where else ""
    if "Invalid unicode" in text or "not utf-8" in text.lower():
        return f"{where}not valid UTF-8 (re-export the file as UTF-8)"
    if "unterminated quote" in text:
        return f"{where}unterminated quote (truncated file?)"
    cols = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if cols:
        return f"{where}expected {cols.group(1)} fields, found {cols.group(2)} (truncated file or stray delimiter?)"
    if "state machine reached an invalid state" in text:
        return f"{where}not parseable as RFC 4180 CSV (mixed line endings or a stray quote?)"
    if "Malformed JSON" in text:
        return "malformed JSON: " + lines[0].split("Malformed JSON", 1)[1].strip(" :")
    return lines[0] if lines else type(exc).__name__


def _check(src: SourceConfig, con: duckdb.DuckDBPyConnection) -> None:
    """Type every mapped column and collect every reason a row cannot be loaded (table `checked`)."""
    select_cols, reasons = [], []
    mapped = {m.canonical for m in src.columns}
    for mapping in src.columns:
        col = src.channel.column(mapping.canonical)
        text = f"nullif(trim({_ident(mapping.source_column)}), '')"
        typed = _typed_expr(col, mapping, text)
        select_cols.append(f"{typed} as {_ident(col.name)}")
        reasons += _reason_exprs(col, text, typed)
    for col in src.channel.columns:  # canonical columns this source does not provide
        if col.name not in mapped:
            select_cols.append(f"cast(null as {SQL_TYPES[col.type]}) as {_ident(col.name)}")
    # a JSONL record that is not an object has no fields to complain about: its one reason says so
    reason = ("case when not _is_object then 'not a JSON object' else nullif(concat_ws('; ', "
              + ", ".join(reasons) + "), '') end")
    con.execute(
        "create or replace temp table checked as select _partition_date, _source_file, _source_line, "
        + ", ".join(select_cols)
        + f", {reason} as _reason, _raw_record, _extras from incoming"
    )


def loaded_partitions(wh: Warehouse, source: str) -> set[dt.date]:
    """Partition dates of a source that were loaded successfully at least once."""
    return {
        r[0] if isinstance(r[0], dt.date) else dt.date.fromisoformat(str(r[0]))
        for r in wh.fetchall(
            "select distinct partition_date from ops.load_audit where source = %s and status = 'success'",
            (source,),
        )
    }


def partitions_to_load(wh: Warehouse, src: SourceConfig, landing_dir: Path, logical_date: dt.date) -> list[dt.date]:
    """Landing dates on disk up to the logical date that were never loaded, plus the logical date.

    A snapshot source is one file that always holds the current state: it is loaded as the logical
    date's partition, and there is no history to catch up on.
    """
    if src.layout == "snapshot":
        return [logical_date]
    pattern = re.escape(src.path).replace(re.escape("{date}"), r"(\d{4}-\d{2}-\d{2})")
    regex = re.compile(pattern + "$")
    on_disk = set()
    for path in landing_dir.glob(src.path.replace("{date}", "*")):
        m = regex.search(path.relative_to(landing_dir).as_posix())
        if m:
            day = dt.date.fromisoformat(m.group(1))
            if day <= logical_date:
                on_disk.add(day)
    return sorted((on_disk - loaded_partitions(wh, src.name)) | {logical_date})


def pending_files(settings: Settings, wh: Warehouse, src: SourceConfig, logical_date: dt.date
                  ) -> list[tuple[dt.date, Path]]:
    """The (partition date, file) pairs this run loads: landing files, or fresh extracts of a table."""
    if src.format == "postgres_table":
        from custseg import extract  # psycopg only for table sources

        try:
            return extract.extract_pending(src, logical_date, loaded_partitions(wh, src.name),
                                           settings.data_dir / "extracts")
        except (extract.ExtractError, ConfigError) as exc:
            raise IngestError(str(exc)) from exc
    return [(day, src.file_for(settings.landing_dir, day.isoformat()))
            for day in partitions_to_load(wh, src, settings.landing_dir, logical_date)]


def load_batch(
    wh: Warehouse, src: SourceConfig, batch: ParsedBatch, run_id: str, logical_date: dt.date
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
        if ok + bad != read:
            raise IngestError(f"{src.name}: {path}: row counts do not add up (read {read}, loaded {ok}, "
                              f"quarantined {bad})")
        record_load(wh, run_id, logical_date, src.name, day, str(path), read, ok, bad, batch.extra_columns,
               "success", None)
        results.append(LoadResult(src.name, day, str(path), read, ok, bad, batch.extra_columns))
    if batch.extra_columns:
        log.warning("%s: unexpected columns kept in _extras: %s", src.name, ", ".join(batch.extra_columns))
    return results


def _count_by_day(table: pa.Table, column: str) -> dict[dt.date, int]:
    if table.num_rows == 0:
        return {}
    counts = table.group_by(column).aggregate([(column, "count")])
    return dict(zip(counts[column].to_pylist(), counts[f"{column}_count"].to_pylist(), strict=True))


def record_load(wh: Warehouse, run_id: str, logical_date: dt.date, source: str, partition_date: dt.date | None,
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


def ingest_source(settings: Settings, source_name: str, logical_date: dt.date, run_id: str) -> list[LoadResult]:
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
            pending = pending_files(settings, wh, src, logical_date)
            chunk = pending[:1]
            # One transaction per chunk, not per catch-up: DuckDB keeps a transaction's uncommitted
            # rows in memory (3.6 GB for a year of e-mail events at 1M customers, whatever the
            # memory limit), so a whole-history transaction would grow with the history.
            for chunk in _chunks(pending):
                with wh.transaction():
                    batch = parse_files(src, chunk, run_id, scratch)
                    results += load_batch(wh, src, batch, run_id, logical_date)
        except IngestError as exc:
            failed = str(exc)
            # the file named in the error, else the chunk's first; a table that could not be
            # extracted has no file yet and is audited under the logical date
            day, where = next(((d, str(p)) for d, p in chunk if str(p) in failed),
                              (chunk[0][0], str(chunk[0][1])) if chunk else (logical_date, src.table or src.path))
            record_load(wh, run_id, logical_date, src.name, day, where, 0, 0, 0, (), "failed", failed)
            raise
        finally:
            scratch.close()
    total = sum(r.rows_read for r in results)
    log.info("%s: %d partition(s), %d rows read, %d loaded, %d quarantined", source_name, len(results), total,
             sum(r.rows_loaded for r in results), sum(r.rows_quarantined for r in results))
    return results


def ingest_all(settings: Settings, logical_date: dt.date, run_id: str) -> dict[str, list[LoadResult]]:
    return {name: ingest_source(settings, name, logical_date, run_id) for name in load_sources(settings.sources_file)}


def main(argv: list[str] | None = None) -> int:
    """Measure load throughput: `python -m custseg.ingest --as-of D [--identity [--truth P]]`.

    Loads every source's pending partitions up to the date (a catch-up on an empty warehouse loads
    the whole history), then prints rows read per second and the process's peak memory. With
    `--truth`, the generator's `ground_truth/identities.parquet`, it also scores the identity map's
    pairwise precision and recall. Settings come from the usual environment.
    """
    import argparse
    import resource
    import time

    from custseg.config import load_settings

    parser = argparse.ArgumentParser(prog="python -m custseg.ingest", description=main.__doc__)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--identity", action="store_true", help="also time identity resolution")
    parser.add_argument("--truth", help="with --identity: score the map against this identities.parquet")
    args = parser.parse_args(argv)
    if args.truth and not args.identity:
        parser.error("--truth needs --identity")
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    day = dt.date.fromisoformat(args.as_of)
    from custseg.pipeline import prepare_warehouse

    prepare_warehouse(settings)
    total_rows, total_s = 0, 0.0
    for name in load_sources(settings.sources_file):
        t0 = time.perf_counter()
        results = ingest_source(settings, name, day, "bench")
        took = time.perf_counter() - t0
        rows = sum(r.rows_read for r in results)
        total_rows, total_s = total_rows + rows, total_s + took
        print(f"{name:<16} {rows:>11,} rows {took:7.1f} s {rows / took:>11,.0f} rows/s")
    print(f"{'all sources':<16} {total_rows:>11,} rows {total_s:7.1f} s {total_rows / total_s:>11,.0f} rows/s "
          f"({settings.warehouse})")

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"peak memory (max RSS) after the load: {peak_mb():,.0f} MB")
    if args.identity:
        from custseg.identity import resolve_identities

        t0 = time.perf_counter()
        summary = resolve_identities(settings, day)
        print(f"identity resolution: {time.perf_counter() - t0:.1f} s {summary}")
        print(f"peak memory (max RSS) after identity resolution: {peak_mb():,.0f} MB")
    if args.truth:
        from custseg.identity import score_against_truth

        with connect(settings) as wh:
            key_map = wh.query_df("select key_type, key_value, customer_id from raw.identity_map")
        scores = score_against_truth(key_map, args.truth, settings.pii_salt, settings.phone_country_code)
        print(f"identity precision {scores['precision']:.4f} recall {scores['recall']:.4f} "
              f"({scores['keys']:,} keys, {scores['persons']:,} persons, {scores['customers']:,} customers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
