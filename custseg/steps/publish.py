"""The publish task: swap the audited build into `analytics` in one transaction (write-audit-publish)."""

from __future__ import annotations

import datetime as dt
import logging

from custseg.config import PUBLISHED_TABLES, Settings
from custseg.ops.faults import publish_fault_point
from custseg.ops.locks import explain_lock_error
from custseg.warehouse import connect

log = logging.getLogger(__name__)


def publish(settings: Settings, as_of_date: dt.date | None = None) -> dict[str, int]:
    """Replace every published table with the audited build in one transaction (see Warehouse.publish):
    the history tables with the run's ``as_of_date`` date only (and newer ones), without it whole."""

    try:
        with connect(settings) as wh:
            counts = wh.publish(PUBLISHED_TABLES, as_of_date, on_table_published=publish_fault_point)
    except Exception as exc:
        clear = explain_lock_error(settings, exc)
        if clear is exc:
            raise
        raise clear from exc
    log.info("published %s", counts)
    return counts
