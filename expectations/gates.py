"""The quality gates of the nightly run, against the warehouse: which batch, which suite, which engine.

* PostgreSQL: GX's SQL datasource validates the raw partition and the build table in the database.
* DuckDB (GX has no DuckDB datasource): the batch is read into pandas. Batches up to
  ``QualityConfig.chunk_rows`` rows are validated whole; larger ones are **chunked** (never sampled): every
  row is checked, but uniqueness only within a chunk (the report's note says so; dbt's primary-key tests
  check uniqueness of the published models over the whole table).
* Checks against the previous batch (raw row counts, segment shares) compare with the latest earlier
  partition or published date; without one they are skipped with a recorded note.

The same ``Suite`` values serve both engines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from expectations.config import QualityConfig
from expectations.report import ValidationReport, skipped_report
from expectations.suites import (
    SEGMENT_SHARE_DIMENSIONS,
    Suite,
    published_suite,
    raw_suite,
    row_count_suite,
    segment_share_suite,
    share_column,
)

if TYPE_CHECKING:
    import pandas as pd

    from custseg.config import Settings
    from custseg.warehouse import Warehouse

PARTITION_COLUMN = "_partition_date"


def _rel(schema: str, table: str) -> str:
    from custseg.warehouse import quote_ident

    return f"{quote_ident(schema)}.{quote_ident(table)}"


def validate_table(
    wh: Warehouse,
    settings: Settings,
    schema: str,
    table: str,
    suite: Suite,
    *,
    batch_name: str,
    partition_date: dt.date | None = None,
    config: QualityConfig | None = None,
) -> ValidationReport:
    """Validate ``schema.table`` (or its ``_partition_date`` partition) on either engine."""
    from expectations import runner

    config = config or QualityConfig.from_env()
    if settings.warehouse == "postgres":
        assert settings.postgres is not None
        # a query asset, not GX's daily batch definition: that one fails outright on an empty partition
        where = f"{PARTITION_COLUMN} = date '{partition_date.isoformat()}'" if partition_date else None
        report = runner.validate_postgres_table(settings.postgres.url, schema, table, suite, where=where,
                                                suite_name=suite.name, batch_name=batch_name)
        report.sample_note = "validated in PostgreSQL through GX's SQL datasource, every row"
        return report
    where, params = (f" where {PARTITION_COLUMN} = %s", (partition_date,)) if partition_date else ("", ())
    total = int(wh.fetchall(f"select count(*) from {_rel(schema, table)}{where}", params)[0][0])
    columns = wh.columns(schema, table)
    names, row_checks = suite.split_structure()
    read = row_checks.columns_read()
    kept = [c for c in columns if read is not None and c in read]
    if not names.checks or not kept:
        return _validate_rows(wh, f"select * from {_rel(schema, table)}{where}", params, suite, total,
                              batch_name, config.chunk_rows, "")
    # GX copies every column of the frame for each column check, so the rows are read with only the
    # columns the row checks use (1M-row customer_segments: 16 of 28; read + GX 12.6 -> 5.7 s), and the checks on
    # the column names run on the table's full list of columns, without rows.
    import pandas as pd

    from custseg.warehouse import quote_ident

    narrow = f"select {', '.join(quote_ident(c) for c in kept)} from {_rel(schema, table)}{where}"
    names_report = runner.validate_dataframe(pd.DataFrame(columns=columns), names, batch_name=batch_name)
    rows_report = _validate_rows(wh, narrow, params, row_checks, total, batch_name, config.chunk_rows,
                                 f" (the {len(kept)} columns the row checks read; the column checks on the "
                                 "table's column names)")
    return runner.join_halves(names_report, rows_report, suite)


def _validate_rows(wh: Warehouse, sql: str, params: tuple, suite: Suite, total: int, batch_name: str,
                   chunk_rows: int, columns_note: str) -> ValidationReport:
    """``suite`` on the rows of ``sql`` read from DuckDB: as one DataFrame, or in chunks when large."""
    from expectations import runner

    if total <= chunk_rows:
        return runner.validate_dataframe(
            wh.query_df(sql, params), suite, suite_name=suite.name, batch_name=batch_name,
            sample_note=f"validated as a pandas DataFrame read from DuckDB, all {total} rows{columns_note}",
        )  # fmt: skip
    return runner.validate_chunks(
        _duckdb_chunks(wh, sql, params, chunk_rows), suite, suite_name=suite.name, batch_name=batch_name,
        sample_note=f"validated from DuckDB in chunks of {chunk_rows} rows, all {total} rows{columns_note}; "
        "uniqueness is checked within each chunk only",
    )  # fmt: skip


def _duckdb_chunks(wh: Warehouse, sql: str, params: tuple, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The query's rows as DataFrames of about ``chunk_rows`` rows (whole DuckDB vectors of 2,048 rows)."""
    from custseg.warehouse import DuckDBWarehouse

    assert isinstance(wh, DuckDBWarehouse)
    result = wh.conn.execute(DuckDBWarehouse._sql(sql), list(params))
    vectors = max(1, chunk_rows // 2048)
    while True:
        chunk = result.fetch_df_chunk(vectors)
        if chunk.empty:
            return
        yield chunk


def raw_batch_reports(
    wh: Warehouse, settings: Settings, source: str, table: str, logical_date: dt.date,
    *, event_time_grace: dt.timedelta, config: QualityConfig,
) -> list[ValidationReport]:
    """The raw suite on this date's partition, and its row count against the previous partition."""
    batch = logical_date.isoformat()
    reports = [validate_table(
        wh, settings, "raw", table, raw_suite(source, logical_date, event_time_grace=event_time_grace),
        batch_name=batch, partition_date=logical_date, config=config,
    )]  # fmt: skip
    previous = wh.fetchall(
        f"select {PARTITION_COLUMN}, count(*) from {_rel('raw', table)} where {PARTITION_COLUMN} < %s "
        f"group by 1 order by 1 desc limit 1",
        (logical_date,),
    )
    name = f"raw.{source}.row_count"
    if not previous:
        reports.append(skipped_report(name, batch, "expect_table_row_count_to_be_between",
                                      "no earlier partition to compare the row count with",
                                      config.row_count_severity))
        return reports
    prev_date, prev_rows = previous[0][0], int(previous[0][1])
    suite = row_count_suite(source, prev_rows, config.row_count_band, config.row_count_severity)
    rows = reports[0].row_count
    if rows is None:
        rows = int(wh.fetchall(f"select count(*) from {_rel('raw', table)} where {PARTITION_COLUMN} = %s",
                               (logical_date,))[0][0])
    report = _validate_row_count(rows, suite, batch)
    report.sample_note = (
        f"{rows} rows vs {prev_rows} in the previous partition ({prev_date}), band ±{config.row_count_band:.0%}"
    )
    reports.append(report)
    return reports


def _validate_row_count(rows: int, suite: Suite, batch_name: str) -> ValidationReport:
    """The row count was computed in the warehouse; GX checks it on a zero-column frame of that many rows
    (no data is read twice, and it works for chunked and SQL batches alike)."""
    import pandas as pd

    from expectations import runner

    return runner.validate_dataframe(pd.DataFrame(index=pd.RangeIndex(rows)), suite, suite_name=suite.name,
                                     batch_name=batch_name)


def segment_shares(wh: Warehouse, schema: str, table: str, as_of: dt.date | None) -> dict[str, float]:
    """Share of customers per segment value (``share_column`` keys) in ``schema.table`` at ``as_of``
    (``None``: the whole table)."""
    where, params = ("where as_of_date = %s", (as_of,)) if as_of is not None else ("", ())
    shares: dict[str, float] = {}
    for dimension in SEGMENT_SHARE_DIMENSIONS:
        rows = wh.fetchall(
            f"select {dimension}, count(*) from {_rel(schema, table)} {where} group by 1", params
        )
        total = sum(int(n) for _, n in rows)
        for value, n in rows:
            shares[share_column(dimension, value)] = int(n) / total if total else 0.0
    return shares


def previous_published_date(wh: Warehouse, settings: Settings, as_of: dt.date) -> dt.date | None:
    """The latest as-of date before ``as_of`` in the published ``segment_history``, if any."""
    pub = settings.publish_schema
    if not wh.table_exists(pub, "segment_history"):
        return None
    value = wh.fetchall(
        f"select max(as_of_date) from {_rel(pub, 'segment_history')} where as_of_date < %s", (as_of,)
    )[0][0]
    if value is None:
        return None
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else value.date()


def published_reports(
    wh: Warehouse, settings: Settings, as_of: dt.date, config: QualityConfig
) -> list[ValidationReport]:
    """The published-model suite on the build's ``customer_segments``, and segment shares vs the previous
    published date."""
    import pandas as pd

    from expectations import runner

    batch = as_of.isoformat()
    reports = [validate_table(wh, settings, settings.build_schema, "customer_segments", published_suite(),
                              batch_name=batch, config=config)]
    previous_date = previous_published_date(wh, settings, as_of)
    if previous_date is None:
        reports.append(skipped_report("analytics.segment_shares", batch, "expect_column_mean_to_be_between",
                                      "no earlier published date to compare segment shares with (first run)",
                                      config.segment_share_severity))
        return reports
    previous = segment_shares(wh, settings.publish_schema, "segment_history", previous_date)
    today = segment_shares(wh, settings.build_schema, "customer_segments", None)
    columns = sorted(set(previous) | set(today))
    suite = segment_share_suite({c: previous.get(c, 0.0) for c in columns}, config.segment_share_band,
                                config.segment_share_tolerance, config.segment_share_severity)
    frame = pd.DataFrame([{c: today.get(c, 0.0) for c in columns}])
    report = runner.validate_dataframe(
        frame, suite, suite_name=suite.name, batch_name=batch,
        sample_note=f"shares of customers per segment vs the published {previous_date} (computed in the "
        f"warehouse); band ±{config.segment_share_band:.0%} of the share or ±{config.segment_share_tolerance:.0%} "
        "points, whichever is larger",
    )  # fmt: skip
    reports.append(report)
    return reports


QUARANTINE_SHARE_EXPECTATION = "expect_quarantined_share_to_be_at_most"


def quarantine_share_report(source: str, rows_read: int, rows_quarantined: int, max_share: float, *,
                            batch_name: str, run_id: str) -> ValidationReport:
    """One source's quarantined share of the rows this run read, against ``max_share`` (blocking).

    It fails when at least one row was quarantined and the share is above ``max_share``; there is
    no minimum night size, so one bad row of three fails too: the first night of a new export is
    often small, and a wrong column mapping or date format shows there first. The observed value
    is the one-line message the run fails with."""
    from expectations.report import ExpectationOutcome
    from expectations.suites import BLOCKING

    share = rows_quarantined / rows_read if rows_read else 0.0
    success = rows_quarantined == 0 or share <= max_share
    summary = f"{source}: {rows_quarantined:,} of {rows_read:,} rows quarantined ({share:.1%}"
    if success:
        observed = f"{summary} <= {_percent(max_share)})"
    else:
        query = (f"select reason, count(*) from raw.quarantine where run_id = '{run_id}' and source = '{source}' "
                 "group by 1 order by 2 desc")
        observed = (f"{summary} > {_percent(max_share)}): see raw.quarantine (custseg query \"{query}\"); wrong column "
                    "mapping, date format or delimiter? Fix the file or its mapping and rerun the date "
                    "(CUSTSEG_MAX_QUARANTINE_SHARE sets the limit)")
    outcome = ExpectationOutcome(QUARANTINE_SHARE_EXPECTATION, None, BLOCKING, success, observed, [],
                                 kwargs={"max_share": max_share}, element_count=rows_read,
                                 unexpected_count=rows_quarantined)
    return ValidationReport(f"raw.{source}.quarantine_share", batch_name, success, [outcome],
                            sample_note="rows read and quarantined by this run's loads (ops.load_audit)",
                            row_count=rows_read)


def _percent(share: float) -> str:
    """0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{share * 100:g}%"


def quarantine_share_reports(wh: Warehouse, sources: list[str], run_id: str, logical_date: dt.date,
                             config: QualityConfig) -> list[ValidationReport]:
    """:func:`quarantine_share_report` for every source, from this run's rows of ``ops.load_audit``.

    Skipped loads (a source a bring-your-own-orders run does not declare) read nothing and count
    for nothing. A partition loaded twice in one run (an ingest retry reloads the logical date)
    counts once, with its latest load."""
    rows = wh.fetchall(
        "select source, sum(rows_read), sum(rows_quarantined) from ("
        "select source, rows_read, rows_quarantined, row_number() over ("
        "partition by source, partition_date order by recorded_at desc) as attempt "
        "from ops.load_audit where run_id = %s and status <> 'skipped') as loads "
        "where attempt = 1 group by source",
        (run_id,),
    )
    counts = {str(source): (int(read or 0), int(bad or 0)) for source, read, bad in rows}
    return [quarantine_share_report(source, *counts.get(source, (0, 0)), config.max_quarantine_share,
                                    batch_name=logical_date.isoformat(), run_id=run_id)
            for source in sources]
