"""The package's one reading of the wall clock.

Everything custseg computes is as of the run's ``as_of_date``; the clock only stamps operational
records (when a row was written, when a task started). Keeping the one reader here makes that
easy to check: nothing else in ``custseg`` calls ``datetime.now``.
"""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """Now in UTC, as a naive timestamp (both warehouses store ``timestamp without time zone``)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
