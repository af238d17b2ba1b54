"""Validation results in custseg's own terms: outcomes with severities, the quality gate, and rows for
``ops.quality_results``. No Great Expectations import here."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

from expectations.suites import BLOCKING, STRUCTURE_EXPECTATIONS, WARNING, Severity, Suite

T = TypeVar("T")

logger = logging.getLogger(__name__)

MESSAGE_SAMPLE_SIZE = 5
MESSAGE_MAX_LINES = 30


class QualityGateError(Exception):
    """A blocking expectation failed. ``report`` holds the full validation report."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one check on one batch."""

    expectation: str
    column: str | None
    severity: Severity
    success: bool
    observed_value: str
    unexpected_sample: list[Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    element_count: int | None = None
    unexpected_count: int | None = None
    missing_count: int | None = None

    def describe(self) -> str:
        """``expect_x(column='c', min_value=0)``: the type, the column and the other kwargs."""
        args = ([f"column={self.column!r}"] if self.column is not None else []) + [
            f"{name}={_display(value)}" for name, value in self.kwargs.items()
        ]
        return f"{self.expectation}({', '.join(args)})"


@dataclass
class ValidationReport:
    """The outcome of validating one batch against one suite. ``success`` means no blocking failure."""

    suite_name: str
    batch_name: str
    success: bool
    results: list[ExpectationOutcome]
    sample_note: str | None = None
    row_count: int | None = None
    suite: Suite | None = field(default=None, repr=False, compare=False)
    gx_result: Any = field(default=None, repr=False, compare=False)

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == BLOCKING]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == WARNING]

    def failure_message(self) -> str:
        """A readable account of the blocking failures (and the warnings)."""
        scope = f"suite {self.suite_name!r}, batch {self.batch_name!r}"
        if self.sample_note:
            scope += f" ({self.sample_note})"
        missing = {o.column for o in self.results if o.expectation == "expect_column_to_exist" and not o.success}
        lines = [f"Quality gate failed for {scope}: {len(self.blocking_failures)} blocking expectation(s)"]
        for label, outcomes in (("blocking", self.blocking_failures), ("warning", self.warnings)):
            shown = [o for o in outcomes if o.column not in missing or o.expectation == "expect_column_to_exist"]
            if label == "warning" and outcomes:
                lines.append(f"and {len(outcomes)} warning(s):")
            lines += [f"  - {_failure_line(outcome)}" for outcome in shown[:MESSAGE_MAX_LINES]]
            hidden = len(outcomes) - min(len(shown), MESSAGE_MAX_LINES)
            if hidden:
                lines.append(f"  ... and {hidden} more {label} failure(s) (missing columns, or past the limit)")
        return "\n".join(lines)

    def log_warnings(self) -> None:
        for outcome in self.warnings:
            logger.warning(
                "Quality warning in suite %r, batch %r: %s", self.suite_name, self.batch_name,
                _failure_line(outcome),
            )  # fmt: skip

    def raise_if_blocking_failed(self) -> None:
        """Log the warnings; raise ``QualityGateError`` if any blocking expectation failed."""
        self.log_warnings()
        if self.blocking_failures:
            raise QualityGateError(self.failure_message(), self)
        logger.info(
            "Quality gate passed for suite %r, batch %r: %d expectations, %d warning(s)",
            self.suite_name, self.batch_name, len(self.results), len(self.warnings),
        )  # fmt: skip

    def to_rows(self, run_id: str) -> list[dict[str, Any]]:
        """One row per expectation, for ``ops.quality_results``."""
        return [
            {
                "run_id": run_id,
                "suite_name": self.suite_name,
                "expectation": outcome.expectation,
                # the check as quality.html shows it: with its column and band (min/max, allowed values)
                "check_description": outcome.describe(),
                "column_name": outcome.column,
                "severity": outcome.severity,
                "success": outcome.success,
                "observed_value": outcome.observed_value,
                "unexpected_sample": json.dumps(outcome.unexpected_sample, ensure_ascii=False),
            }
            for outcome in self.results
        ]


def combine_reports(reports: Sequence[ValidationReport], *, sample_note: str | None = None) -> ValidationReport:
    """Merge the reports of several chunks of one table (same suite) into one report.

    Counts add up and samples are concatenated. Checks that need the whole table at once (uniqueness)
    were only checked within each chunk: the default ``sample_note`` says so.
    """
    if not reports:
        raise ValueError("combine_reports needs at least one report")
    first = reports[0]
    if any(len(r.results) != len(first.results) or r.suite_name != first.suite_name for r in reports):
        raise ValueError("combine_reports needs reports of the same suite")
    rows = sum(r.row_count or 0 for r in reports)
    note = sample_note or (
        f"validated in {len(reports)} chunk(s), {rows} rows in all; uniqueness is checked within each chunk only"
    )
    merged = [_merge_outcomes([r.results[i] for r in reports]) for i in range(len(first.results))]
    return ValidationReport(
        suite_name=first.suite_name,
        batch_name=first.batch_name,
        success=not any(o.severity == BLOCKING and not o.success for o in merged),
        results=merged,
        sample_note=note,
        row_count=rows,
        suite=first.suite,
    )


def join_reports(structure: ValidationReport, rows: ValidationReport, suite: Suite) -> ValidationReport:
    """One report of ``suite`` from the reports of its two halves (``Suite.split_structure``): the checks
    on the column names and the checks on the rows, validated apart. Outcomes come in ``suite``'s order;
    the row count and the sample note are those of ``rows``."""
    if len(structure.results) + len(rows.results) != len(suite.checks):
        raise ValueError("join_reports needs the reports of the two halves of the suite")
    results = in_suite_order(structure.results, rows.results, suite)
    return ValidationReport(
        suite_name=suite.name,
        batch_name=rows.batch_name,
        success=not any(o.severity == BLOCKING and not o.success for o in results),
        results=results,
        sample_note=rows.sample_note,
        row_count=rows.row_count,
        suite=suite,
    )


def in_suite_order(structure_items: Sequence[T], row_items: Sequence[T], suite: Suite) -> list[T]:
    """Per-check items (outcomes, GX results) of the suite's two halves, in the order of ``suite.checks``."""
    halves = {True: iter(structure_items), False: iter(row_items)}
    return [next(halves[check.expectation in STRUCTURE_EXPECTATIONS]) for check in suite.checks]


def _merge_outcomes(outcomes: list[ExpectationOutcome]) -> ExpectationOutcome:
    first = outcomes[0]
    success = all(o.success for o in outcomes)
    sample = [v for o in outcomes for v in o.unexpected_sample][: MESSAGE_SAMPLE_SIZE * 2]
    if all(o.unexpected_count is not None for o in outcomes):
        unexpected = sum(o.unexpected_count or 0 for o in outcomes)
        elements = sum(o.element_count or 0 for o in outcomes)
        missing = sum(o.missing_count or 0 for o in outcomes)
        observed = unexpected_summary(unexpected, elements, missing)
    else:
        unexpected = elements = missing = None
        observed = next((o.observed_value for o in outcomes if not o.success), first.observed_value)
    return ExpectationOutcome(
        expectation=first.expectation,
        column=first.column,
        severity=first.severity,
        success=success,
        observed_value=observed,
        unexpected_sample=sample,
        kwargs=first.kwargs,
        element_count=elements,
        unexpected_count=unexpected,
        missing_count=missing,
    )


def unexpected_summary(unexpected: int, elements: int, missing: int | None = None) -> str:
    """``"1 of 2 non-null values unexpected (50.00%), 2 null"``; nulls are not checked by value checks."""
    if missing:
        checked = elements - missing
        share = 100.0 * unexpected / checked if checked else 0.0
        return f"{unexpected} of {checked} non-null values unexpected ({share:.2f}%), {missing} null"
    share = 100.0 * unexpected / elements if elements else 0.0
    return f"{unexpected} of {elements} values unexpected ({share:.2f}%)"


def jsonable(value: Any) -> Any:
    """A JSON-safe version of a sample value (dates as ISO text, decimals and odd floats as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas.Timestamp, numpy datetime64 wrappers
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


def _display(value: Any) -> str:
    value = jsonable(value)
    if isinstance(value, list) and len(value) > 12:
        return repr(value[:12])[:-1] + ", ...]"
    return repr(value)


def _failure_line(outcome: ExpectationOutcome) -> str:
    line = f"[{outcome.severity}] {outcome.describe()}: {outcome.observed_value}"
    if outcome.unexpected_sample:
        sample = outcome.unexpected_sample[:MESSAGE_SAMPLE_SIZE]
        line += f"; offending values (sample): {', '.join(repr(v) for v in sample)}"
    return line


def skipped_report(suite_name: str, batch_name: str, expectation: str, note: str,
                   severity: Severity = WARNING) -> ValidationReport:
    """A check that could not run (e.g. no previous batch to compare with): recorded as a passing outcome
    whose observed value says ``skipped: <note>``, so ``ops.quality_results`` shows it was considered."""
    outcome = ExpectationOutcome(expectation, None, severity, True, f"skipped: {note}", [])
    return ValidationReport(suite_name, batch_name, True, [outcome], sample_note=f"skipped: {note}")


def raise_if_any_blocking(reports: Sequence[ValidationReport]) -> None:
    """Log every report's warnings; raise one ``QualityGateError`` naming every failed blocking suite,
    expectation and the offending values (the first failed report is attached)."""
    failed: list[QualityGateError] = []
    for report in reports:
        try:
            report.raise_if_blocking_failed()
        except QualityGateError as exc:
            failed.append(exc)
    if failed:
        raise QualityGateError("\n\n".join(str(exc) for exc in failed), failed[0].report)
