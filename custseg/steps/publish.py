"""The publish task: swap the audited build into `analytics` in one transaction (write-audit-publish)."""

from __future__ import annotations

import datetime as dt
import logging

from custseg.config import PUBLISHED_TABLES, Settings
from custseg.ops.faults import publish_fault_point
from custseg.ops.locks import explain_lock_error
from custseg.warehouse import connect

log = logging.getLogger(__name__)

#: the published table whose Asset the activation DAG is scheduled on (all are emitted together, by one task)
ACTIVATION_TRIGGER_TABLE = "customer_segments"


def asset_uri(settings: Settings, table: str) -> str:
    """The Airflow Asset of a published table; publish emits one per table, with the run's as-of date in its extra."""
    return f"custseg://{settings.warehouse}/{settings.publish_schema}/{table}"


def asset_extra(as_of_date: dt.date) -> dict[str, str]:
    return {"as_of_date": as_of_date.isoformat()}


def publish(settings: Settings, as_of_date: dt.date | None = None) -> dict[str, int]:
    """Replace every published table with the audited build in one transaction (see Warehouse.publish):
    the history tables with the run's ``as_of_date`` date only (and newer ones), without it whole; with
    ``CUSTSEG_HISTORY_DAILY_DAYS`` set, segment_history is thinned in the same transaction."""

    try:
        with connect(settings) as wh:
            counts = wh.publish(PUBLISHED_TABLES, as_of_date, on_table_published=publish_fault_point,
                                retention=settings.history_retention)
    except Exception as exc:
        clear = explain_lock_error(settings, exc)
        if clear is exc:
            raise
        raise clear from exc
    log.info("published %s", counts)
    return counts
