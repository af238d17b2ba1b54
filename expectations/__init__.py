"""Great Expectations suites as code, and the runner that validates batches against them.

``expectations.suites`` is plain Python and imports nothing heavy, so DAG files can build suites at parse
time. ``expectations.runner`` imports Great Expectations lazily, on the first validation.
``expectations.gates`` builds the quarantine-share gate, ``expectations.report`` the reports and the gate error,
and ``expectations.config`` holds the bands and severities (env vars). Nothing here touches a warehouse or
imports ``custseg``: the nightly gates that feed these suites warehouse data are ``custseg.steps.quality``.
"""

from expectations.suites import (
    BLOCKING,
    WARNING,
    Check,
    RawTable,
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
    "RawTable",
    "Severity",
    "Suite",
    "ml_labels_suite",
    "published_suite",
    "raw_suite",
]
