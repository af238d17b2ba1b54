"""The quarantine-share gate: the share of a source's rows read this run that went to quarantine.

Pure: the counts come from the caller (``custseg.steps.quality`` reads them from ``ops.load_audit``).
"""

from __future__ import annotations

from expectations.report import ExpectationOutcome, ValidationReport
from expectations.suites import BLOCKING

QUARANTINE_SHARE_EXPECTATION = "expect_quarantined_share_to_be_at_most"


def quarantine_share_report(source: str, rows_read: int, rows_quarantined: int, max_share: float, *,
                            batch_name: str, run_id: str) -> ValidationReport:
    """One source's quarantined share of the rows this run read, against ``max_share`` (blocking).

    It fails when at least one row was quarantined and the share is above ``max_share``; there is
    no minimum night size, so one bad row of three fails too: the first night of a new export is
    often small, and a wrong column mapping or date format shows there first. The observed value
    is the one-line message the run fails with."""

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
