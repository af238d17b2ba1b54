"""Data Docs: GX's static site for a set of validation reports, plus a self-contained summary page.

GX 1.24 builds Data Docs from an ephemeral context into a local directory without any network access. The
pages it writes link their CSS and JavaScript from public CDNs, so they look plain when viewed offline;
``quality.html`` (written beside ``index.html``) has no external assets at all.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from expectations._gx import import_gx

if TYPE_CHECKING:
    from expectations.report import ValidationReport

SITE_NAME = "custseg"
SUMMARY_PAGE = "quality.html"


def build_data_docs(site_dir: Path, reports: Sequence[ValidationReport], *, run_name: str, run_time: datetime) -> Path:
    """Write the GX Data Docs site for ``reports`` (suites and validation results) into ``site_dir`` and
    return the path of its ``index.html``. ``run_name``/``run_time`` identify the run (use the DAG run id
    and the as-of date, never the wall clock). A fresh ephemeral context holds exactly these reports."""
    gx = import_gx()
    # imported here: GX (5.7 s) (tests/test_architecture.py LAZY)
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    site_dir = site_dir.resolve()
    site_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    if run_time.tzinfo is None:
        run_time = run_time.replace(tzinfo=UTC)
    run_id = RunIdentifier(run_name=run_name, run_time=run_time)
    suites_added: set[str] = set()
    for report in reports:
        if report.suite is not None and report.suite_name not in suites_added:
            context.suites.add(report.suite.to_gx())
            suites_added.add(report.suite_name)
        if report.gx_result is not None:
            key = ValidationResultIdentifier(
                ExpectationSuiteIdentifier(name=report.suite_name), run_id, _safe(report.batch_name)
            )
            context.validation_results_store.set(key, report.gx_result)
    context.build_data_docs(site_names=[SITE_NAME])
    write_summary_page(site_dir / SUMMARY_PAGE, reports, run_name=run_name)
    return site_dir / "index.html"


def write_summary_page(path: Path, reports: Sequence[ValidationReport], *, run_name: str) -> Path:
    """A single static HTML page (no external assets) with every report's outcomes, in the given order."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>custseg data quality: {html.escape(run_name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
        ".fail{background:#fdd}.warn{background:#ffd}.ok{background:#dfd}</style></head><body>",
        f"<h1>custseg data quality: {html.escape(run_name)}</h1>",
    ]
    for report in reports:
        status = "passed" if report.success else "FAILED"
        parts.append(f"<h2>{html.escape(report.suite_name)} on {html.escape(report.batch_name)}: {status}</h2>")
        if report.sample_note:
            parts.append(f"<p><em>{html.escape(report.sample_note)}</em></p>")
        parts.append(
            "<table><tr><th>expectation</th><th>severity</th><th>result</th><th>observed</th>"
            "<th>unexpected sample</th></tr>"
        )
        for outcome in report.results:
            css = "ok" if outcome.success else ("fail" if outcome.severity == "blocking" else "warn")
            cells = (
                outcome.describe(),
                outcome.severity,
                "pass" if outcome.success else "fail",
                outcome.observed_value,
                ", ".join(repr(v) for v in outcome.unexpected_sample[:10]),
            )
            parts.append(f"<tr class='{css}'>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "batch"
