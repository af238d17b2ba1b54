"""Great Expectations suites as code, and the runner that validates batches against them.

``expectations.suites`` is plain Python and imports nothing heavy, so DAG files can build suites at parse
time. ``expectations.runner`` imports Great Expectations lazily, on the first validation.
``expectations.gates`` runs the nightly gates against the warehouse (PostgreSQL: GX's SQL datasource; DuckDB:
DataFrames, chunked when large), and ``expectations.config`` holds their bands and severities (env vars).
"""

from expectations.suites import (
    BLOCKING,
    WARNING,
    Check,
    Severity,
    Suite,
    ml_labels_suite,
    published_suite,
    raw_suite,
)

__all__ = [
    "BLOCKING",
    "WARNING",
    "Check",
    "Severity",
    "Suite",
    "ml_labels_suite",
    "published_suite",
    "raw_suite",
]
