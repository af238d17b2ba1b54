"""The quality gates: Great Expectations suites on the loaded batch (`validate_raw`) and on the
assembled build (`audit`), with the warehouse reads they need; nothing is published unless they pass.

The suites themselves and the GX plumbing live in the pure `expectations/` package; this module
feeds them warehouse data (PostgreSQL: GX's SQL datasource; DuckDB: DataFrames, chunked) and records
every outcome in `ops.quality_results` and the Data Docs before any gate raises.

* PostgreSQL: GX's SQL datasource validates the raw partition and the build table in the database.
* DuckDB (GX has no DuckDB datasource): the batch is read into pandas. Batches up to
  ``QualityConfig.chunk_rows`` rows are validated whole; larger ones are **chunked** (never sampled): every
  row is checked, but uniqueness only within a chunk (the report's note says so; dbt's primary-key tests
  check uniqueness of the published models over the whole table).
* Checks against the previous batch (raw row counts, segment shares) compare with the latest earlier
  partition or published date; without one they are skipped with a recorded note.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from custseg.catalogue import Channel
from custseg.clock import utc_now
from custseg.config import Settings
from custseg.dbt import release_dbt_duckdb
from custseg.ops.reconcile import ReconciliationError, reconcile
from custseg.sources import SourceConfig, load_sources
from custseg.steps.ingest import FUTURE_TOLERANCE
from custseg.warehouse import DuckDBWarehouse, Warehouse, connect
from custseg.warehouse.sql import qualified, quote_ident
from expectations import runner
from expectations.config import QualityConfig
from expectations.data_docs import build_data_docs
from expectations.gates import quarantine_share_report
from expectations.report import (
    ExpectationOutcome,
    QualityGateError,
    ValidationReport,
    raise_if_any_blocking,
    skipped_report,
)
from expectations.suites import (
    BLOCKING,
    SEGMENT_SHARE_DIMENSIONS,
    Suite,
    campaign_audience_suite,
    campaign_uplift_suite,
    customer_alerts_suite,
    published_suite,
    raw_suite,
    row_count_suite,
    segment_share_suite,
    share_column,
)


def record_quality(wh: Warehouse, run_id: str, as_of_date: dt.date, rows: list[dict]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows)
    frame["as_of_date"] = as_of_date
    frame["recorded_at"] = utc_now()
    wh.execute(
        "delete from ops.quality_results where run_id = %s and suite_name in ("
        + ", ".join(["%s"] * frame["suite_name"].nunique()) + ")",
        (run_id, *frame["suite_name"].unique().tolist()),
    )
    cols = ["run_id", "as_of_date", "suite_name", "expectation", "check_description", "column_name", "severity",
            "success", "observed_value", "unexpected_sample", "recorded_at"]
    wh.write_arrow("ops", "quality_results", pa.Table.from_pandas(frame[cols], preserve_index=False))


def data_docs(settings: Settings, name: str, reports: list, run_id: str, as_of_date: dt.date) -> Path:
    """GX Data Docs for this step's reports, written before any gate raises so failures are browsable."""


    run_time = dt.datetime.combine(as_of_date, dt.time(), tzinfo=dt.UTC)
    return build_data_docs(settings.docs_dir / "gx" / name, reports, run_name=run_id, run_time=run_time)


def validate_raw(settings: Settings, as_of_date: dt.date, run_id: str) -> dict[str, object]:
    """GX checks on the rows this run loaded, per source. A blocking failure stops the run.

    PostgreSQL: validated in the database through GX's SQL datasource; DuckDB: as DataFrames (chunked
    above ``CUSTSEG_GX_CHUNK_ROWS``). Each source's row count is compared with its previous partition,
    and the share of the rows this run read that went to ``raw.quarantine`` with
    ``CUSTSEG_MAX_QUARANTINE_SHARE`` (blocking: a wrong mapping must not publish a near-empty night).
    A date on which no customer has a purchase in ``raw`` fails too (:func:`visible_purchases_report`).
    Every outcome goes to ``ops.quality_results`` and the Data Docs before any gate raises.
    """

    config = QualityConfig.from_env()
    sources = load_sources(settings.sources_file)
    reports = []
    with connect(settings) as wh:
        # what went in (quarantined share per source) and what is there (purchases as of the date)
        gates = [*quarantine_share_reports(wh, list(sources), run_id, as_of_date, config),
                 visible_purchases_report(wh, sources, as_of_date)]
        for src in sources.values():
            # same tolerance as ingestion: local evening times can fall on the next UTC day
            reports += raw_batch_reports(wh, settings, src.channel, as_of_date,
                                         event_time_grace=FUTURE_TOLERANCE, config=config,
                                         row_count_check=src.row_count_check)
        rows = sum(r.row_count or 0 for r in reports if not r.suite_name.endswith(".row_count"))
        reports += gates
        record_quality(wh, run_id, as_of_date, [row for r in reports for row in r.to_rows(run_id)])
    data_docs(settings, "raw", reports, run_id, as_of_date)
    _raise_raw_gates(reports, gates)
    return {"suites": {r.suite_name: r.success for r in reports}, "rows_in": rows, "rows_out": rows}


def visible_purchases_report(wh: Warehouse, sources: dict[str, SourceConfig], as_of_date: dt.date) -> ValidationReport:
    """Blocking: as of ``as_of_date`` some customer has a purchase in ``raw`` (a row of a purchase source
    in a partition up to the date, with a customer reference).

    An empty or header-only export, an ``--as-of`` before all data, or orders without any customer
    would otherwise publish an empty night over yesterday's. It counts what is visible as of the
    date (the whole history in ``raw``), not what this run loaded: a quiet night after a normal
    history, or a rebuild that loads nothing new, passes. Checked on ``raw`` in this task (no
    retries, before identity resolution and dbt), so such a night fails in seconds."""

    batch = as_of_date.isoformat()
    purchase_sources = {name: src for name, src in sources.items() if src.channel.purchases}
    if not purchase_sources:
        return skipped_report(VISIBLE_PURCHASES_SUITE, batch, "expect_visible_purchases",
                              "no purchase source is declared", BLOCKING)
    tables = {f"raw.{src.channel.table}": (qualified("raw", src.channel.table), _customer_reference(src))
              for src in purchase_sources.values()}
    # one row is enough, and a night that passes reads no more than that (raw grows with the history)
    success = any(wh.fetchall(f"select 1 from {rel} where _partition_date <= %s and ({known}) limit 1", (as_of_date,))
                  for rel, known in tables.values())
    rows = with_customer = 0
    observed = f"purchases with a customer are visible up to {as_of_date} in {', '.join(tables)}"
    if not success:  # the counts and the next data, for the message
        later: list[dt.date] = []
        for rel, known in tables.values():
            n, attributed = wh.fetchall(f"select count(*), sum(case when {known} then 1 else 0 end) from {rel} "
                                        "where _partition_date <= %s", (as_of_date,))[0]
            rows, with_customer = rows + int(n or 0), with_customer + int(attributed or 0)
            nxt = wh.fetchall(f"select min(_partition_date) from {rel} where _partition_date > %s", (as_of_date,))[0][0]
            later += [nxt] if nxt is not None else []
        observed = (f"as of {as_of_date} no purchase is visible ({rows:,} purchase rows loaded up to this date in "
                    f"{', '.join(tables)}, {with_customer:,} of them with a customer"
                    + (f"; the first later partition is dated {min(later)}" if later else "")
                    + "): is --as-of before the export's first order date, or is the export empty (header "
                    "only) or without customer references?")
    outcome = ExpectationOutcome("expect_visible_purchases", None, BLOCKING, success, observed, [],
                                 element_count=None if success else rows,
                                 unexpected_count=None if success else rows - with_customer)
    return ValidationReport(VISIBLE_PURCHASES_SUITE, batch, success, [outcome], row_count=None if success else rows,
                            sample_note="purchase rows in raw partitions up to the run's date (all loads)")


def _customer_reference(src: SourceConfig) -> str:
    """SQL: the row has a customer reference, a non-blank value of one of the channel's customer
    columns (from the catalogue, quoted)."""
    return " or ".join(f"nullif(trim(cast({quote_ident(c)} as text)), '') is not null"
                       for c in src.channel.customer_columns) or "false"


VISIBLE_PURCHASES_SUITE = "raw.visible_purchases"


def _raise_raw_gates(reports: list[ValidationReport], gates: list[ValidationReport]) -> None:
    """Raise on any blocking failure; a quarantine-share or empty-night failure leads the message,
    on its own first line, because it is the likely cause of the rest (a wrong mapping empties the
    batch) and the first line is what ``custseg run`` and ``custseg status`` show."""

    causes = [r.results[0].observed_value for r in gates if not r.success]
    try:
        raise_if_any_blocking(reports)
    except QualityGateError as exc:
        if not causes:
            raise
        raise QualityGateError("; ".join(causes) + "\n\n" + str(exc), exc.report) from None


def audit(settings: Settings, as_of_date: dt.date, run_id: str) -> dict[str, object]:
    """GX suites on the build schema's published tables; nothing is published unless they pass.

    The published-model suite runs on the build's ``customer_segments`` (PostgreSQL: SQL datasource; DuckDB:
    DataFrame, chunked when large), and each segment's share is compared with the previous published date
    (skipped, with a recorded note, on the first run); the campaign tables have their own suites.
    """

    release_dbt_duckdb()  # the suites read 1M rows into pandas: not next to dbt's DuckDB buffer pool
    with connect(settings) as wh:
        config = QualityConfig.from_env()
        reports = published_reports(wh, settings, as_of_date, config) + action_reports(wh, settings, as_of_date,
                                                                                          config)
        record_quality(wh, run_id, as_of_date, [row for r in reports for row in r.to_rows(run_id)])
        data_docs(settings, "audit", reports, run_id, as_of_date)
        stale = wh.fetchall(
            f"select count(*) from {quote_ident(settings.build_schema)}.customer_segments where as_of_date <> %s",
            (as_of_date,),
        )[0][0]
        # every landed row is published, quarantined, or in a documented, counted merge or exclusion
        channels = {name: src.channel.name for name, src in load_sources(settings.sources_file).items()}
        try:
            reconcile(wh, settings, channels, as_of_date, run_id)
            unaccounted = None
        except ReconciliationError as exc:
            unaccounted = exc
    raise_if_any_blocking(reports)
    if stale:
        raise RuntimeError(f"audit: {stale} rows of the build's customer_segments are not as of {as_of_date}")
    if unaccounted:
        raise unaccounted
    rows = reports[0].row_count
    return {"suites": {r.suite_name: r.success for r in reports}, "rows_in": rows, "rows_out": rows}


PARTITION_COLUMN = "_partition_date"


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
    date_column: str = "",
) -> ValidationReport:
    """Validate ``schema.table`` (or its rows of ``partition_date`` in ``date_column``, by default the landing
    partition ``_partition_date``) on either engine."""
    config = config or QualityConfig.from_env()
    date_sql = quote_ident(date_column or PARTITION_COLUMN)
    if settings.warehouse == "postgres":
        assert settings.postgres is not None
        # a query asset, not GX's daily batch definition: that one fails outright on an empty partition
        where = f"{date_sql} = date '{partition_date.isoformat()}'" if partition_date else None
        report = runner.validate_postgres_table(settings.postgres.url, schema, table, suite, where=where,
                                                suite_name=suite.name, batch_name=batch_name)
        report.sample_note = "validated in PostgreSQL through GX's SQL datasource, every row"
        return report
    where, params = (f" where {date_sql} = %s", (partition_date,)) if partition_date else ("", ())
    total = int(wh.fetchall(f"select count(*) from {qualified(schema, table)}{where}", params)[0][0])
    columns = wh.columns(schema, table)
    names, row_checks = suite.split_structure()
    read = row_checks.columns_read()
    kept = [c for c in columns if read is not None and c in read]
    if not names.checks or not kept:
        return _validate_rows(wh, f"select * from {qualified(schema, table)}{where}", params, suite, total,
                              batch_name, config.chunk_rows, "")
    # GX copies every column of the frame for each column check, so the rows are read with only the
    # columns the row checks use (1M-row customer_segments: 16 of 28; read + GX 12.6 -> 5.7 s), and the checks on
    # the column names run on the table's full list of columns, without rows.


    narrow = f"select {', '.join(quote_ident(c) for c in kept)} from {qualified(schema, table)}{where}"
    names_report = runner.validate_dataframe(pd.DataFrame(columns=columns), names, batch_name=batch_name)
    rows_report = _validate_rows(wh, narrow, params, row_checks, total, batch_name, config.chunk_rows,
                                 f" (the {len(kept)} columns the row checks read; the column checks on the "
                                 "table's column names)")
    return runner.join_halves(names_report, rows_report, suite)


def _validate_rows(wh: Warehouse, sql: str, params: tuple, suite: Suite, total: int, batch_name: str,
                   chunk_rows: int, columns_note: str) -> ValidationReport:
    """``suite`` on the rows of ``sql`` read from DuckDB: as one DataFrame, or in chunks when large."""
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
    assert isinstance(wh, DuckDBWarehouse)
    result = wh.conn.execute(DuckDBWarehouse._sql(sql), list(params))
    vectors = max(1, chunk_rows // 2048)
    while True:
        chunk = result.fetch_df_chunk(vectors)
        if chunk.empty:
            return
        yield chunk


def raw_batch_reports(
    wh: Warehouse, settings: Settings, channel: Channel, as_of_date: dt.date,
    *, event_time_grace: dt.timedelta, config: QualityConfig, row_count_check: bool = True,
) -> list[ValidationReport]:
    """The raw suite on this date's partition, and its row count against the previous partition."""
    batch, table = as_of_date.isoformat(), channel.table
    reports = [validate_table(
        wh, settings, "raw", table, raw_suite(channel.raw_table(as_of_date), as_of_date,
                                            event_time_grace=event_time_grace),
        batch_name=batch, partition_date=as_of_date, config=config,
    )]  # fmt: skip
    previous = wh.fetchall(
        f"select {PARTITION_COLUMN}, count(*) from {qualified('raw', table)} where {PARTITION_COLUMN} < %s "
        f"group by 1 order by 1 desc limit 1",
        (as_of_date,),
    )
    name = f"raw.{table}.row_count"
    if not row_count_check:
        reports.append(skipped_report(name, batch, "expect_table_row_count_to_be_between",
                                      "row_count_check: false for this source in the sources file (its daily "
                                      "volume is irregular by nature)", config.row_count_severity))
        return reports
    if not previous:
        reports.append(skipped_report(name, batch, "expect_table_row_count_to_be_between",
                                      "no earlier partition to compare the row count with",
                                      config.row_count_severity))
        return reports
    prev_date, prev_rows = previous[0][0], int(previous[0][1])
    suite = row_count_suite(table, prev_rows, config.row_count_band, config.row_count_severity,
                            int(config.row_count_min_change))
    rows = reports[0].row_count
    if rows is None:
        rows = int(wh.fetchall(f"select count(*) from {qualified('raw', table)} where {PARTITION_COLUMN} = %s",
                               (as_of_date,))[0][0])
    report = _validate_row_count(rows, suite, batch)
    report.sample_note = (
        f"{rows} rows vs {prev_rows} in the previous partition ({prev_date}), band ±{config.row_count_band:.0%} "
        f"(at least ±{int(config.row_count_min_change)} rows)"
    )
    reports.append(report)
    return reports


def _validate_row_count(rows: int, suite: Suite, batch_name: str) -> ValidationReport:
    """The row count was computed in the warehouse; GX checks it on a zero-column frame of that many rows
    (no data is read twice, and it works for chunked and SQL batches alike)."""


    return runner.validate_dataframe(pd.DataFrame(index=pd.RangeIndex(rows)), suite, suite_name=suite.name,
                                     batch_name=batch_name)


def segment_shares(wh: Warehouse, schema: str, table: str, as_of_date: dt.date | None) -> dict[str, float]:
    """Share of customers per segment value (``share_column`` keys) in ``schema.table`` at ``as_of_date``
    (``None``: the whole table)."""
    where, params = ("where as_of_date = %s", (as_of_date,)) if as_of_date is not None else ("", ())
    shares: dict[str, float] = {}
    for dimension in SEGMENT_SHARE_DIMENSIONS:
        rows = wh.fetchall(
            f"select {dimension}, count(*) from {qualified(schema, table)} {where} group by 1", params
        )
        total = sum(int(n) for _, n in rows)
        for value, n in rows:
            shares[share_column(dimension, value)] = int(n) / total if total else 0.0
    return shares


def previous_published_date(wh: Warehouse, settings: Settings, as_of_date: dt.date) -> dt.date | None:
    """The latest as-of date before ``as_of_date`` in the published ``segment_history``, if any."""
    pub = settings.publish_schema
    if not wh.table_exists(pub, "segment_history"):
        return None
    value = wh.fetchall(
        f"select max(as_of_date) from {qualified(pub, 'segment_history')} where as_of_date < %s", (as_of_date,)
    )[0][0]
    if value is None:
        return None
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else value.date()


def published_reports(
    wh: Warehouse, settings: Settings, as_of_date: dt.date, config: QualityConfig
) -> list[ValidationReport]:
    """The published-model suite on the build's ``customer_segments``, and segment shares vs the previous
    published date."""


    batch = as_of_date.isoformat()
    reports = [validate_table(wh, settings, settings.build_schema, "customer_segments", published_suite(),
                              batch_name=batch, config=config)]
    previous_date = previous_published_date(wh, settings, as_of_date)
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


def action_reports(wh: Warehouse, settings: Settings, as_of_date: dt.date,
                   config: QualityConfig) -> list[ValidationReport]:
    """The suites of the action loop's published tables in the build: ``campaign_audience``,
    ``campaign_uplift`` and the run's rows of ``customer_alerts`` (published by date)."""
    batch = as_of_date.isoformat()
    return [
        *(validate_table(wh, settings, settings.build_schema, table, suite, batch_name=batch, config=config)
          for table, suite in (("campaign_audience", campaign_audience_suite()),
                               ("campaign_uplift", campaign_uplift_suite()))),
        validate_table(wh, settings, settings.build_schema, "customer_alerts", customer_alerts_suite(),
                       batch_name=batch, config=config, partition_date=as_of_date, date_column="as_of_date"),
    ]


def quarantine_share_reports(wh: Warehouse, sources: list[str], run_id: str, as_of_date: dt.date,
                             config: QualityConfig) -> list[ValidationReport]:
    """:func:`quarantine_share_report` for every source, from this run's rows of ``ops.load_audit``.

    Skipped loads (a source a bring-your-own-orders run does not declare) read nothing and count
    for nothing. A partition loaded twice in one run (an ingest retry reloads the as-of date)
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
                                    batch_name=as_of_date.isoformat(), run_id=run_id)
            for source in sources]
