"""The nightly pipeline's steps as plain functions. The DAG wires them; the CLI and tests call them.

Each step takes the settings and the run's logical date explicitly, and never reads the clock
for anything it computes.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import gc
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from custseg.config import DBT_PROJECT_DIR, PUBLISHED_TABLES, Settings
from custseg.dbt import release_dbt_duckdb, run_dbt
from custseg.ingest import FUTURE_TOLERANCE, LoadResult, ingest_source, record_load
from custseg.sources import SourceConfig, load_sources
from custseg.warehouse import Warehouse, connect, quote_ident

if TYPE_CHECKING:
    from expectations.report import ValidationReport
    from ml.bundle import ModelBundle
    from ml.scoring import ScoringResult

log = logging.getLogger(__name__)


def _utc_now() -> dt.datetime:
    """Only for operational records (when a row was written), never for computed values."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def prepare_warehouse(settings: Settings) -> None:
    """Create schemas and pipeline tables, and store the hash key where the SQL can join it.

    The key (CUSTSEG_HASH_KEY) goes into `raw.pii_salt` (its historical name), bound as a parameter:
    dbt and custseg/identity.py read it from there, so it is never rendered into SQL text, logs or docs.
    """
    with connect(settings) as wh:
        wh.bootstrap()
        with wh.transaction():
            wh.execute("create table if not exists raw.pii_salt (pii_salt text not null)")
            wh.execute("delete from raw.pii_salt")
            wh.execute("insert into raw.pii_salt (pii_salt) values (%s)", (settings.hash_key,))


#: ops.load_audit status of a source that a rebuild did not read from landing (see ingest)
FROM_RAW = "from_raw"


def source_names(settings: Settings) -> list[str]:
    return list(load_sources(settings.sources_file))


def ingest(settings: Settings, source: str, logical_date: dt.date, run_id: str,
           from_raw: bool = False) -> dict[str, int | str]:
    """Load one source's pending partitions; a source this run does not declare is skipped and audited.

    The DAG has one task per configured source; a bring-your-own-orders run (custseg.byo) declares
    only its order export, so the other channels load nothing that night and say so in ops.load_audit.
    With `from_raw` (the DAG param of the same name, set by `custseg rebuild`), nothing is read from
    the landing files (they may be gone): `raw` already holds every row, and the load is audited as
    `from_raw` with zero counts.
    """
    if from_raw:
        reason = "rebuild from raw: landing files not read (custseg rebuild)"
        with connect(settings) as wh:
            record_load(wh, run_id, logical_date, source, logical_date, None, 0, 0, 0, (), FROM_RAW, reason)
        log.info("%s: %s", source, reason)
        return {"partitions": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0, "skipped": reason}
    if source not in load_sources(settings.sources_file):
        reason = f"source not declared in {settings.sources_file} for this run (bring-your-own-orders run)"
        with connect(settings) as wh:
            record_load(wh, run_id, logical_date, source, logical_date, None, 0, 0, 0, (), "skipped", reason)
        log.info("%s: skipped: %s", source, reason)
        return {"partitions": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0, "skipped": reason}
    results: list[LoadResult] = ingest_source(settings, source, logical_date, run_id)
    return {
        "partitions": len(results),
        "rows_read": sum(r.rows_read for r in results),
        "rows_loaded": sum(r.rows_loaded for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
    }


def _record_quality(wh: Warehouse, run_id: str, logical_date: dt.date, rows: list[dict]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows)
    frame["logical_date"] = logical_date
    frame["recorded_at"] = _utc_now()
    wh.execute(
        "delete from ops.quality_results where run_id = %s and suite_name in ("
        + ", ".join(["%s"] * frame["suite_name"].nunique()) + ")",
        (run_id, *frame["suite_name"].unique().tolist()),
    )
    cols = ["run_id", "logical_date", "suite_name", "expectation", "column_name", "severity", "success",
            "observed_value", "unexpected_sample", "recorded_at"]
    wh.write_arrow("ops", "quality_results", pa.Table.from_pandas(frame[cols], preserve_index=False))


def _data_docs(settings: Settings, name: str, reports: list, run_id: str, as_of: dt.date) -> Path:
    """GX Data Docs for this step's reports, written before any gate raises so failures are browsable."""
    from expectations.data_docs import build_data_docs

    run_time = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
    return build_data_docs(settings.docs_dir / "gx" / name, reports, run_name=run_id, run_time=run_time)


def validate_raw(settings: Settings, logical_date: dt.date, run_id: str) -> dict[str, object]:
    """GX checks on the rows this run loaded, per source. A blocking failure stops the run.

    PostgreSQL: validated in the database through GX's SQL datasource; DuckDB: as DataFrames (chunked
    above ``CUSTSEG_GX_CHUNK_ROWS``). Each source's row count is compared with its previous partition,
    and the share of the rows this run read that went to ``raw.quarantine`` with
    ``CUSTSEG_MAX_QUARANTINE_SHARE`` (blocking: a wrong mapping must not publish a near-empty night).
    A date on which no customer has a purchase in ``raw`` fails too (:func:`visible_purchases_report`).
    Every outcome goes to ``ops.quality_results`` and the Data Docs before any gate raises.
    """
    from expectations.config import QualityConfig
    from expectations.gates import quarantine_share_reports, raw_batch_reports

    config = QualityConfig.from_env()
    sources = load_sources(settings.sources_file)
    reports = []
    with connect(settings) as wh:
        # what went in (quarantined share per source) and what is there (purchases as of the date)
        gates = [*quarantine_share_reports(wh, list(sources), run_id, logical_date, config),
                 visible_purchases_report(wh, sources, logical_date)]
        for name, src in sources.items():
            # same tolerance as ingestion: local evening times can fall on the next UTC day
            reports += raw_batch_reports(wh, settings, name, src.channel.table, logical_date,
                                         event_time_grace=FUTURE_TOLERANCE, config=config)
        rows = sum(r.row_count or 0 for r in reports if not r.suite_name.endswith(".row_count"))
        reports += gates
        _record_quality(wh, run_id, logical_date, [row for r in reports for row in r.to_rows(run_id)])
    _data_docs(settings, "raw", reports, run_id, logical_date)
    _raise_raw_gates(reports, gates)
    return {"suites": {r.suite_name: r.success for r in reports}, "rows_in": rows, "rows_out": rows}


#: Channels whose rows are purchases (dbt's fct_purchases unions them), for the empty-night gate.
PURCHASE_CHANNELS = ("online_orders", "store_sales")


def visible_purchases_report(wh: Warehouse, sources: dict[str, SourceConfig], as_of: dt.date) -> ValidationReport:
    """Blocking: as of ``as_of`` some customer has a purchase in ``raw`` (a row of a purchase source
    in a partition up to the date, with a customer reference).

    An empty or header-only export, an ``--as-of`` before all data, or orders without any customer
    would otherwise publish an empty night over yesterday's. It counts what is visible as of the
    date (the whole history in ``raw``), not what this run loaded: a quiet night after a normal
    history, or a rebuild that loads nothing new, passes. Checked on ``raw`` in this task (no
    retries, before identity resolution and dbt), so such a night fails in seconds."""
    from expectations.report import ExpectationOutcome, ValidationReport, skipped_report
    from expectations.suites import BLOCKING

    batch = as_of.isoformat()
    purchase_sources = {name: src for name, src in sources.items() if src.channel.name in PURCHASE_CHANNELS}
    if not purchase_sources:
        return skipped_report(VISIBLE_PURCHASES_SUITE, batch, "expect_visible_purchases",
                              "no purchase source is declared", BLOCKING)
    tables = {f"raw.{src.channel.table}": _customer_reference(src) for src in purchase_sources.values()}
    # one row is enough, and a night that passes reads no more than that (raw grows with the history)
    success = any(wh.fetchall(f"select 1 from {_raw(t)} where _partition_date <= %s and ({known}) limit 1", (as_of,))
                  for t, known in tables.items())
    rows = with_customer = 0
    observed = f"purchases with a customer are visible up to {as_of} in {', '.join(tables)}"
    if not success:  # the counts and the next data, for the message
        later: list[dt.date] = []
        for table, known in tables.items():
            n, attributed = wh.fetchall(f"select count(*), sum(case when {known} then 1 else 0 end) from {_raw(table)} "
                                        "where _partition_date <= %s", (as_of,))[0]
            rows, with_customer = rows + int(n or 0), with_customer + int(attributed or 0)
            nxt = wh.fetchall(f"select min(_partition_date) from {_raw(table)} where _partition_date > %s",
                              (as_of,))[0][0]
            later += [nxt] if nxt is not None else []
        observed = (f"as of {as_of} no purchase is visible ({rows:,} purchase rows loaded up to this date in "
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


def _raw(table: str) -> str:
    schema, name = table.split(".", 1)
    return f"{quote_ident(schema)}.{quote_ident(name)}"


VISIBLE_PURCHASES_SUITE = "raw.visible_purchases"


def _raise_raw_gates(reports: list[ValidationReport], gates: list[ValidationReport]) -> None:
    """Raise on any blocking failure; a quarantine-share or empty-night failure leads the message,
    on its own first line, because it is the likely cause of the rest (a wrong mapping empties the
    batch) and the first line is what ``custseg run`` and ``custseg status`` show."""
    from expectations.report import QualityGateError, raise_if_any_blocking

    causes = [r.results[0].observed_value for r in gates if not r.success]
    try:
        raise_if_any_blocking(reports)
    except QualityGateError as exc:
        if not causes:
            raise
        raise QualityGateError("; ".join(causes) + "\n\n" + str(exc), exc.report) from None


def score(settings: Settings, as_of: dt.date, run_id: str) -> dict[str, object]:
    """Score every customer with the latest approved model and write the labels to the build schema.

    The model is the registry's latest approved one trained on or before ``as_of`` (the weekly
    ``retrain_models`` DAG approves new ones); on the first run, with no approved model yet, one is
    fitted on this date's data and approved (custseg/models.py), unless the date has fewer buyers
    than ``FitMinimum`` (then the labels are null and ``ml.scoring_runs`` says why; the next night
    with enough buyers fits). Feature drift against the model's
    training data goes to ``ml.feature_drift`` (a warning above the PSI threshold), and the model
    that scored the date to ``ml.scoring_runs``.

    Customers are read and scored in chunks of ``CUSTSEG_SCORE_CHUNK_CUSTOMERS``, so the
    task's memory is bounded by a chunk, not by the customer base. The labels go to a staging table
    chunk by chunk, and replace ``ml_customer_labels`` only once every chunk passed the label checks.
    """
    from custseg.models import APPROVED, Registry, bootstrap_model, choose_model, read_ml_inputs, record_scoring
    from expectations.report import combine_reports
    from ml.features import prepare_transactions

    release_dbt_duckdb()  # this task's frames must not come on top of dbt's DuckDB buffer pool
    _return_free_memory()  # nor on what earlier tasks of this process freed but the allocator kept
    build = settings.build_schema
    with connect(settings) as wh:
        choice = choose_model(wh, Registry(wh), as_of)
        training = read_ml_inputs(wh, build) if choice.bundle is None else None
    bundle = choice.bundle
    if training is not None:
        # The first night fits on the whole date's data, with the warehouse closed: the file is not
        # held for minutes, nor DuckDB's buffer pool next to the frames (the task's peak memory).
        transactions, customers, engagement = training
        del training
        # cleaned and sorted once: every model of the fit reuses it instead of making a copy
        transactions = prepare_transactions(transactions, as_of)
        _return_free_memory()
        bundle = bootstrap_model(choice, transactions, customers, as_of, engagement)
        del transactions, customers, engagement
        _return_free_memory()

    staged = f"{LABELS_TABLE}_scoring"
    result, reports = _score_in_chunks(settings, bundle, as_of, staged)
    # one chunk: its own report (with the GX result for Data Docs); more: their sum, each chunk's
    # GX result on its own Data Docs page
    report = reports[0] if len(reports) == 1 else dataclasses.replace(combine_reports(reports, sample_note=(
        f"validated in {len(reports)} chunks of customers, {result.metrics['n_customers']} rows in all; "
        "each customer is in one chunk, so customer_id is checked unique over all of them")),
        batch_name=as_of.isoformat())
    profiles = _profile_table(result.cluster_profiles)
    profiles["model_version"] = result.model_version
    with connect(settings) as wh:
        if choice.bundle is None and bundle.has_models:
            Registry(wh).register(bundle, status=APPROVED, reason=choice.reason, run_id=run_id,
                                  dag_id="customer_segmentation")
        _record_quality(wh, run_id, as_of, report.to_rows(run_id))
        _data_docs(settings, "ml_labels", reports, run_id, as_of)
        if not report.success:
            wh.execute(f"drop table if exists {quote_ident(build)}.{quote_ident(staged)}")
        report.raise_if_blocking_failed()
        with wh.transaction():
            wh.execute(f"drop table if exists {quote_ident(build)}.{quote_ident(LABELS_TABLE)}")
            wh.execute(f"alter table {quote_ident(build)}.{quote_ident(staged)} rename to {quote_ident(LABELS_TABLE)}")
        _replace_table(wh, build, "ml_cluster_profiles", profiles)
        drifted = record_scoring(wh, run_id, as_of, result)
    summary: dict[str, object] = {"model_version": result.model_version,
                                  "model_trained_as_of": bundle.trained_as_of.isoformat(),
                                  "customers": result.metrics["n_customers"], "drifted_features": drifted}
    if not bundle.has_models:  # too few buyers: the labels are null tonight, and this is why
        summary["models_not_fitted"] = bundle.metrics.get("not_fitted")
    return summary


def _score_in_chunks(settings: Settings, bundle: ModelBundle, as_of: dt.date, staged: str
                     ) -> tuple[ScoringResult, list[ValidationReport]]:
    """Score every customer chunk by chunk into the build table ``staged`` (made anew), validating
    each chunk's labels; the scoring result over all chunks and each chunk's validation report."""
    from custseg.models import customer_chunks, read_ml_inputs
    from expectations.runner import validate_dataframe
    from expectations.suites import ml_labels_suite
    from ml.scoring import ChunkScorer

    build, suite = settings.build_schema, ml_labels_suite()
    with connect(settings) as wh:
        snapshot_exists = _has_engagement_snapshot(wh, build, as_of)
        chunks = customer_chunks(wh, build, settings.score_chunk_customers)
        _create_table(wh, build, staged, LABEL_COLUMNS)
    scorer = ChunkScorer(bundle, as_of, snapshot_exists=snapshot_exists)
    reports = []
    for number, customer_range in enumerate(chunks, start=1):
        # A connection per read and per write: DuckDB's buffer pool (every purchase block a range
        # scan touched) is freed before the chunk's frames grow, and the file is not held while
        # the models score.
        with connect(settings) as wh:
            transactions, customers, engagement = read_ml_inputs(wh, build, customer_range, snapshot_date=as_of)
        labels = scorer.score(transactions, customers, engagement)
        labels["model_version"] = bundle.model_version
        batch = as_of.isoformat() if len(chunks) == 1 else f"{as_of.isoformat()} customers {number} of {len(chunks)}"
        reports.append(validate_dataframe(labels, suite, suite_name="ml.customer_labels", batch_name=batch))
        with connect(settings) as wh:
            _append_frame(wh, build, staged, labels, LABEL_COLUMNS)
        del transactions, customers, engagement, labels
        _return_free_memory()
    return scorer.result(), reports


def _has_engagement_snapshot(wh: Warehouse, build_schema: str, as_of: dt.date) -> bool:
    return bool(wh.fetchall(
        f"select 1 from {quote_ident(build_schema)}.fct_customer_engagement_snapshots where snapshot_date = %s limit 1",
        (as_of,),
    ))


def _return_free_memory() -> None:
    """Give the memory of freed frames back to the OS between the score task's phases.

    glibc keeps freed heap pages and pyarrow's pool keeps freed buffers for reuse, and the score
    task's RSS ratcheted up phase after phase (read, fit, score): 3.6 GB at 1M customers when
    what was alive at any moment was far less. Returned between phases, the peak is what is alive.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


LABELS_TABLE = "ml_customer_labels"

LABEL_COLUMNS = {
    "customer_id": "text",
    "cluster_id": "integer",
    "cluster_name": "text",
    "churn_probability": "double precision",
    "churn_risk_band": "text",
    "p_alive": "double precision",
    "expected_purchases_90d": "double precision",
    "predicted_clv_12m": "double precision",
    "model_version": "text",
}

PROFILE_FEATURES = ("recency_days", "frequency", "monetary", "online_share", "store_share", "app_share",
                    "discount_share", "category_breadth")


def _profile_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """Cluster profiles with the columns analytics.cluster_profiles publishes."""
    out = pd.DataFrame({
        "cluster_id": profiles["cluster_id"].astype("int64"),
        "cluster_name": profiles["cluster_name"].astype(str),
        "customers": profiles["customers"].astype("int64"),
    })
    for feature in PROFILE_FEATURES:
        out[f"avg_{feature}"] = profiles[feature].astype(float) if feature in profiles else float("nan")
    return out


def _replace_table(wh: Warehouse, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Replace a build-schema table with a DataFrame, with explicit column types for both engines."""
    types = {c: LABEL_COLUMNS.get(c) or _sql_type(frame[c]) for c in frame.columns}
    with wh.transaction():
        _create_table(wh, schema, table, types)
        _append_frame(wh, schema, table, frame, types)


def _sql_type(column: pd.Series) -> str:
    kind = column.dtype.kind
    return "bigint" if kind in "iu" else "double precision" if kind == "f" else "text"


def _create_table(wh: Warehouse, schema: str, table: str, types: dict[str, str]) -> None:
    """(Re)create an empty build-schema table with these column types."""
    target = f"{quote_ident(schema)}.{quote_ident(table)}"
    wh.execute(f"drop table if exists {target}")
    wh.execute(f"create table {target} ({', '.join(f'{quote_ident(c)} {t}' for c, t in types.items())})")


def _append_frame(wh: Warehouse, schema: str, table: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
    """Insert a DataFrame's rows (bulk, through Arrow) into a table made by :func:`_create_table`."""
    data = frame.loc[:, list(types)].copy()
    for col, typ in types.items():
        if typ == "integer":
            data[col] = data[col].astype("Int32")
        elif typ == "text":
            data[col] = data[col].astype("string")
    wh.write_arrow(schema, table, pa.Table.from_pandas(data, preserve_index=False))


def audit(settings: Settings, as_of: dt.date, run_id: str) -> dict[str, object]:
    """GX suites on the build schema's published tables; nothing is published unless they pass.

    The published-model suite runs on the build's ``customer_segments`` (PostgreSQL: SQL datasource; DuckDB:
    DataFrame, chunked when large), and each segment's share is compared with the previous published date
    (skipped, with a recorded note, on the first run).
    """
    from custseg.reconcile import ReconciliationError, reconcile
    from expectations.config import QualityConfig
    from expectations.gates import published_reports
    from expectations.report import raise_if_any_blocking

    release_dbt_duckdb()  # the suites read 1M rows into pandas: not next to dbt's DuckDB buffer pool
    with connect(settings) as wh:
        reports = published_reports(wh, settings, as_of, QualityConfig.from_env())
        _record_quality(wh, run_id, as_of, [row for r in reports for row in r.to_rows(run_id)])
        _data_docs(settings, "audit", reports, run_id, as_of)
        stale = wh.fetchall(
            f"select count(*) from {quote_ident(settings.build_schema)}.customer_segments where as_of_date <> %s",
            (as_of,),
        )[0][0]
        # every landed row is published, quarantined, or in a documented, counted merge or exclusion
        channels = {name: src.channel.name for name, src in load_sources(settings.sources_file).items()}
        try:
            reconcile(wh, settings, channels, as_of, run_id)
            unaccounted = None
        except ReconciliationError as exc:
            unaccounted = exc
    raise_if_any_blocking(reports)
    if stale:
        raise RuntimeError(f"audit: {stale} rows of the build's customer_segments are not as of {as_of}")
    if unaccounted:
        raise unaccounted
    rows = reports[0].row_count
    return {"suites": {r.suite_name: r.success for r in reports}, "rows_in": rows, "rows_out": rows}


def publish(settings: Settings, as_of: dt.date | None = None) -> dict[str, int]:
    """Replace every published table with the audited build in one transaction (see Warehouse.publish):
    the history tables with the run's ``as_of`` date only (and newer ones), without it whole."""
    from custseg.ops import explain_lock_error

    try:
        with connect(settings) as wh:
            counts = wh.publish(PUBLISHED_TABLES, as_of)
    except Exception as exc:
        clear = explain_lock_error(settings, exc)
        if clear is exc:
            raise
        raise clear from exc
    log.info("published %s", counts)
    return counts


def build_docs(settings: Settings, as_of: dt.date) -> Path:
    """Generate the static dbt docs site (a single self-contained HTML file) into docs_dir."""
    from custseg.dbt import dbt_run_env

    run_dbt(settings, ["docs", "generate", "--static"], dbt_run_env(as_of))
    settings.docs_dir.mkdir(parents=True, exist_ok=True)
    target = settings.docs_dir / "dbt"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("static_index.html", "index.html", "manifest.json", "catalog.json"):
        src = DBT_PROJECT_DIR / "target" / name
        if src.exists():
            shutil.copy2(src, target / name)
    return target / "static_index.html"
