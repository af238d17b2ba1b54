"""Validate batches against custseg suites with Great Expectations, offline.

* ``validate_dataframe``: a pandas DataFrame, through GX's pandas datasource. This is the DuckDB path (GX has
  no DuckDB datasource): query DuckDB into a DataFrame, in chunks or as a sample for large tables, and say
  so in ``sample_note``. ``validate_chunks`` validates chunk by chunk and combines the reports.
* ``validate_postgres_table``: a table (or one partition of it) in PostgreSQL, through GX's PostgreSQL
  datasource; the metrics are computed by the database.

GX is imported on first use, and one ephemeral GX context is shared by the whole process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from expectations._gx import import_gx
from expectations.data_docs import build_data_docs
from expectations.report import (
    ExpectationOutcome,
    QualityGateError,
    ValidationReport,
    combine_reports,
    in_suite_order,
    join_reports,
    jsonable,
    unexpected_summary,
)
from expectations.suites import BLOCKING, WARNING, Check, Severity, Suite

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite
    from great_expectations.data_context import AbstractDataContext

__all__ = [
    "ExpectationOutcome",
    "QualityGateError",
    "ValidationReport",
    "build_data_docs",
    "close_postgres_datasources",
    "combine_reports",
    "gx_context",
    "join_halves",
    "validate_chunks",
    "validate_dataframe",
    "validate_postgres_table",
]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_SIZE = 20
PANDAS_DATASOURCE = "custseg_pandas"

_lock = threading.RLock()
_context: AbstractDataContext | None = None
_batch_definitions: dict[str, Any] = {}
_postgres_datasources: dict[str, Any] = {}
_asset_counter = 0


def gx_context() -> AbstractDataContext:
    """The process-wide ephemeral GX context (no files, no progress bars, no default Data Docs site)."""
    global _context
    with _lock:
        if _context is None:
            gx = import_gx()
            # imported here: GX (5.7 s) (tests/test_architecture.py LAZY)
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            for site in list(context.list_data_docs_sites()):
                context.delete_data_docs_site(site)
            _context = context
        return _context


def validate_dataframe(
    df: pd.DataFrame,
    suite: Suite | ExpectationSuite,
    *,
    suite_name: str | None = None,
    batch_name: str,
    sample_note: str | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> ValidationReport:
    """Validate a DataFrame. ``sample_note`` says what part of the table ``df`` is, when it is not all of it
    (e.g. ``"chunk 3 of 10"`` or ``"random sample of 100000 of 5000000 rows"``)."""
    spec = _as_spec(suite, suite_name)
    with _lock:
        batch_definition = _batch_definitions.get(spec.name)
        if batch_definition is None:
            context = gx_context()
            try:
                datasource = context.data_sources.get(PANDAS_DATASOURCE)
            except KeyError:
                datasource = context.data_sources.add_pandas(PANDAS_DATASOURCE)
            asset = datasource.add_dataframe_asset(spec.name)
            batch_definition = asset.add_batch_definition_whole_dataframe("whole_dataframe")
            _batch_definitions[spec.name] = batch_definition
        batch = batch_definition.get_batch(batch_parameters={"dataframe": numpy_numbers(naive_utc(df))})
        return _validate_batch(batch, spec, batch_name, sample_note, sample_size)


def validate_chunks(
    chunks: Iterable[pd.DataFrame],
    suite: Suite | ExpectationSuite,
    *,
    suite_name: str | None = None,
    batch_name: str,
    sample_note: str | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> ValidationReport:
    """Validate a large table chunk by chunk (e.g. ``duckdb`` ``fetch_df_chunk``) and combine the reports.
    Uniqueness is only checked within each chunk; the report's ``sample_note`` says so."""
    spec = _as_spec(suite, suite_name)
    reports = [validate_dataframe(chunk, spec, batch_name=batch_name, sample_size=sample_size) for chunk in chunks]
    if not reports:
        raise ValueError(f"no chunks to validate for batch {batch_name!r}")
    return combine_reports(reports, sample_note=sample_note)


def join_halves(names: ValidationReport, rows: ValidationReport, suite: Suite) -> ValidationReport:
    """One report of ``suite`` from its two halves validated apart (``Suite.split_structure``): the checks
    on the column names and those on the rows. When both halves were validated whole, their GX results
    are joined too, so Data Docs show the suite as one validation."""
    report = join_reports(names, rows, suite)
    if names.gx_result is None or rows.gx_result is None:
        return report
    # imported here: GX (5.7 s) (tests/test_architecture.py LAZY)
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

    results = in_suite_order(_by_check_index(names.gx_result), _by_check_index(rows.gx_result), suite)
    passed = sum(bool(r.success) for r in results)
    statistics = {
        "evaluated_expectations": len(results),
        "successful_expectations": passed,
        "unsuccessful_expectations": len(results) - passed,
        "success_percent": 100.0 * passed / len(results) if results else None,
    }
    joined = ExpectationSuiteValidationResult(
        success=passed == len(results), results=results, suite_name=suite.name,
        statistics=statistics, meta=rows.gx_result.meta, batch_id=rows.gx_result.batch_id,
    )  # fmt: skip
    return dataclasses.replace(report, gx_result=joined)


def _by_check_index(result: Any) -> list[Any]:
    """A GX suite result's expectation results in the order of the suite's checks."""
    return sorted(result.results, key=lambda r: (r.expectation_config.meta or {}).get("check_index", 0))


def validate_postgres_table(
    url: str,
    schema: str,
    table: str,
    suite: Suite | ExpectationSuite,
    *,
    where: str | None = None,
    partition_column: str | None = None,
    partition_date: date | None = None,
    suite_name: str | None = None,
    batch_name: str | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> ValidationReport:
    """Validate ``schema.table`` in PostgreSQL, in the database.

    The batch is the whole table, or one partition: either ``partition_column`` + ``partition_date`` (a
    table asset with GX's daily batch definition), or a ``where`` SQL condition (a query asset
    ``select * from schema.table where <where>``; trusted SQL only, never user input). ``url`` is a
    SQLAlchemy URL (``postgresql+psycopg://user@host:5432/db``); ``postgres://`` and driverless
    ``postgresql://`` URLs (Airflow connection URIs) are switched to psycopg 3. Sessions run in UTC.
    """
    if (partition_column is None) != (partition_date is None):
        raise ValueError("partition_column and partition_date go together")
    if where is not None and partition_date is not None:
        raise ValueError("give either where or partition_column/partition_date, not both")
    spec = _as_spec(suite, suite_name)
    relation = f"{_quote_ident(schema)}.{_quote_ident(table)}"
    if batch_name is None:
        batch_name = f"{schema}.{table}"
        if partition_date is not None:
            batch_name += f"@{partition_date.isoformat()}"
        elif where is not None:
            batch_name += f" where {where}"
    with _lock:
        datasource = _postgres_datasource(url)
        asset_name = _next_asset_name(f"{schema}.{table}")
        try:
            if where is not None:
                asset = datasource.add_query_asset(asset_name, query=f"select * from {relation} where {where}")
                batch = asset.add_batch_definition_whole_table("whole").get_batch()
            elif partition_column is not None and partition_date is not None:
                asset = datasource.add_table_asset(asset_name, table_name=table, schema_name=schema)
                day = partition_date
                batch = asset.add_batch_definition_daily("daily", column=partition_column).get_batch(
                    batch_parameters={"year": day.year, "month": day.month, "day": day.day}
                )
            else:
                asset = datasource.add_table_asset(asset_name, table_name=table, schema_name=schema)
                batch = asset.add_batch_definition_whole_table("whole").get_batch()
            return _validate_batch(batch, spec, batch_name, None, sample_size)
        finally:
            if asset_name in datasource.get_asset_names():
                datasource.delete_asset(asset_name)


def close_postgres_datasources() -> None:
    """Dispose the SQLAlchemy engines GX opened and forget the PostgreSQL datasources."""
    with _lock:
        context = gx_context() if _postgres_datasources else None
        for datasource in _postgres_datasources.values():
            datasource.get_execution_engine().engine.dispose()
            datasource.get_engine().dispose()
            if context is not None:
                context.data_sources.delete(datasource.name)
        _postgres_datasources.clear()


def naive_utc(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with timezone-aware datetime columns converted to naive UTC, to compare with the suites'
    naive UTC bounds (raw timestamps are UTC). Returns ``df`` itself when there is nothing to convert."""

    aware = [c for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)]
    if not aware:
        return df
    return df.assign(**{str(c): df[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in aware})


def numpy_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with nullable (``Int32``, ``Float64``, ...) and narrow numeric columns as numpy ``int64``
    (no nulls) or ``float64`` (nulls as NaN). Returns ``df`` itself when there is nothing to convert.

    GX's pandas ``expect_column_values_to_be_between`` is vectorised only for numpy ``int64`` and
    ``float64`` columns and calls a Python function per value otherwise: DuckDB returns nullable
    integers as ``Int32``/``Int64``, and the five integer range checks of a 1M-row
    ``customer_segments`` took 3.4 s that way. GX drops nulls (``pd.NA`` or NaN alike) before a
    column check, so the outcome is the same; only the unexpected values it lists read ``3.0``.
    """

    if not df.columns.is_unique:  # columns are replaced by name below
        return df
    converted = {}
    for column in df.columns:
        values = df[column]
        dtype = values.dtype
        if dtype in (np.int64, np.float64) or pd.api.types.is_bool_dtype(dtype):
            continue
        if not pd.api.types.is_numeric_dtype(dtype):
            continue
        numpy_dtype = getattr(dtype, "numpy_dtype", dtype)
        uint64 = numpy_dtype.kind == "u" and numpy_dtype.itemsize == 8  # may not fit in int64
        fits_int64 = pd.api.types.is_integer_dtype(dtype) and not uint64
        whole = fits_int64 and not values.isna().any()
        converted[str(column)] = values.astype("int64" if whole else "float64")
    return df.assign(**converted) if converted else df


# -- internals ----------------------------------------------------------------------------------------


def _as_spec(suite: Suite | ExpectationSuite, suite_name: str | None) -> Suite:
    """A custseg ``Suite`` from either a ``Suite`` or a GX ``ExpectationSuite`` (severity from
    ``meta["severity"]``, else from GX's ``severity``: ``critical`` is blocking, anything else a warning)."""
    if isinstance(suite, Suite):
        spec = suite
    else:
        checks = []
        for expectation in suite.expectations:
            kwargs = dict(expectation.configuration.kwargs)
            kwargs.pop("batch_id", None)
            column = kwargs.pop("column", None)
            severity = (expectation.meta or {}).get("severity")
            if severity not in (BLOCKING, WARNING):
                severity = BLOCKING if str(getattr(expectation.severity, "value", "")) == "critical" else WARNING
            checks.append(Check(expectation.expectation_type, column, kwargs, severity))
        spec = Suite(name=suite.name, checks=tuple(checks))
    if suite_name is not None and suite_name != spec.name:
        spec = Suite(name=suite_name, checks=spec.checks)
    return spec


def _validate_batch(
    batch: Any, spec: Suite, batch_name: str, sample_note: str | None, sample_size: int
) -> ValidationReport:
    result = batch.validate(
        spec.to_gx(),
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": sample_size},
    )
    by_index = {(r.expectation_config.meta or {}).get("check_index"): r for r in result.results}
    outcomes = [_outcome(check, by_index.get(index)) for index, check in enumerate(spec.checks)]
    counts = [o.element_count for o in outcomes if o.element_count is not None]
    return ValidationReport(
        suite_name=spec.name,
        batch_name=batch_name,
        success=not any(o.severity == BLOCKING and not o.success for o in outcomes),
        results=outcomes,
        sample_note=sample_note,
        row_count=max(counts) if counts else None,
        suite=spec,
        gx_result=result,
    )


def _outcome(check: Check, result: Any) -> ExpectationOutcome:
    severity: Severity = check.severity
    if result is None:
        return ExpectationOutcome(
            check.expectation, check.column, severity, False, "error: GX returned no result", [], check.kwargs
        )
    details: dict[str, Any] = result.result or {}
    error = _exception_message(result.exception_info)
    elements, unexpected = details.get("element_count"), details.get("unexpected_count")
    missing = details.get("missing_count")
    if error is not None:
        observed = f"error: {error}"
    elif unexpected is not None:
        observed = unexpected_summary(unexpected, elements or 0, missing)
    elif "observed_value" in details:
        observed = str(jsonable(details["observed_value"]))
    elif check.expectation == "expect_column_to_exist":
        observed = "column present" if result.success else "column missing"
    else:
        observed = "ok" if result.success else "failed"
    sample = [jsonable(v) for v in details.get("partial_unexpected_list") or []]
    return ExpectationOutcome(
        expectation=check.expectation,
        column=check.column,
        severity=severity,
        success=bool(result.success) and error is None,
        observed_value=observed,
        unexpected_sample=sample,
        kwargs=dict(check.kwargs),
        element_count=elements,
        unexpected_count=unexpected,
        missing_count=missing,
    )


def _exception_message(info: Any) -> str | None:
    """GX reports an exception either flat or per metric; return the first message, if any."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _postgres_datasource(url: str) -> Any:
    url = _sqlalchemy_url(url)
    datasource = _postgres_datasources.get(url)
    if datasource is None:
        name = "custseg_pg_" + hashlib.sha256(url.encode()).hexdigest()[:12]
        datasource = gx_context().data_sources.add_postgres(
            name, connection_string=url, kwargs={"connect_args": {"options": "-c timezone=UTC"}}
        )
        _postgres_datasources[url] = datasource
    return datasource


def _sqlalchemy_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def _next_asset_name(prefix: str) -> str:
    global _asset_counter
    _asset_counter += 1
    return f"{prefix}#{_asset_counter}"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
