"""Every landed row, accounted for: from the rows read to the rows the published tables are built on.

Per source, as of the run's date, each count below is measured on its own (none is the remainder of
the others), and the run's audit fails before publish when they do not add up:

    rows_read      = rows_quarantined + rows_loaded + rows_suppressed     (ops.load_audit vs raw)
    rows_loaded    = rows_not_yet_visible + rows_superseded + rows_staged  (raw vs the staging model)
    rows_staged    = rows_excluded + rows_published                       (purchases: staging vs fct_purchases)

* ``rows_suppressed``: rows of people erased with ``custseg erase`` (custseg/erasure.py): not loaded by
  ingestion, or deleted from raw by the erasure; counted in ``ops.load_audit.rows_suppressed``.
* ``rows_not_yet_visible``: landed on or before the date but dated after it (a late-evening local time
  on the next UTC day); they count from the next date on.
* ``rows_superseded``: the documented merges. Several rows of one key (an exact duplicate in one file,
  or a later re-export of an order, a CRM record or a ticket) are one record: staging keeps the
  latest landed version.
* ``rows_excluded``: documented rules that keep a staged row out of the purchases, by reason:
  a cancelled web order, a till sale without a loyalty card (anonymous), an order whose only contact
  details do not normalise to an e-mail or phone (nothing to attribute it to).
* ``rows_published``: purchases in ``fct_purchases`` (what every published purchase figure is built
  from); for the other sources, the records staging keeps.

The counts go to ``ops.source_reconciliation`` (one row per run and source) for BI and ``custseg status``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from custseg.catalogue import CHANNELS
from custseg.clock import utc_now
from custseg.config import Settings
from custseg.warehouse import Warehouse, quote_ident

log = logging.getLogger(__name__)

RECONCILIATION_DDL = """create table if not exists ops.source_reconciliation (
    run_id text not null,
    as_of_date date not null,
    source text not null,
    rows_read bigint not null,
    rows_quarantined bigint not null,
    rows_loaded bigint not null,
    rows_not_yet_visible bigint not null,
    rows_superseded bigint not null,
    rows_staged bigint not null,
    rows_excluded bigint not null,
    excluded text,
    rows_published bigint not null,
    rows_unaccounted bigint not null,
    recorded_at timestamp not null
)"""
#: warehouses reconciled before erasure existed
SUPPRESSED_DDL = "alter table ops.source_reconciliation add column if not exists rows_suppressed bigint"


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    source: str
    rows_read: int
    rows_quarantined: int
    rows_loaded: int
    rows_not_yet_visible: int
    rows_superseded: int
    rows_staged: int
    rows_excluded: int
    excluded: str
    rows_published: int
    rows_suppressed: int = 0

    @property
    def rows_unaccounted(self) -> int:
        return (abs(self.rows_read - self.rows_quarantined - self.rows_loaded - self.rows_suppressed)
                + abs(self.rows_loaded - self.rows_not_yet_visible - self.rows_superseded - self.rows_staged)
                + abs(self.rows_staged - self.rows_excluded - self.rows_published))

    def problem(self) -> str | None:
        """One line saying where rows went missing, or None when everything adds up."""
        if not self.rows_unaccounted:
            return None
        parts = []
        if self.rows_read != self.rows_quarantined + self.rows_loaded + self.rows_suppressed:
            parts.append(f"read {self.rows_read} but raw holds {self.rows_loaded} and quarantine "
                         f"{self.rows_quarantined}, with {self.rows_suppressed} suppressed (a partition changed "
                         "outside ingestion?)")
        landed = self.rows_not_yet_visible + self.rows_superseded + self.rows_staged
        if self.rows_loaded != landed:
            parts.append(f"{self.rows_loaded - landed} loaded rows missing from staging (no fx rate for their "
                         "currency and date?)")
        if self.rows_staged != self.rows_excluded + self.rows_published:
            parts.append(f"{self.rows_staged - self.rows_excluded - self.rows_published} staged rows neither "
                         "published nor excluded by a documented rule (identity resolution?)")
        return f"{self.source}: {self.rows_unaccounted} rows unaccounted for: " + "; ".join(parts)


class ReconciliationError(RuntimeError):
    """Rows went missing between landing and the published tables; nothing is published."""


def _one(wh: Warehouse, sql: str, params: tuple = ()) -> tuple:
    return tuple(int(v or 0) for v in wh.fetchall(sql, params)[0])


def reconcile_source(wh: Warehouse, settings: Settings, source: str, channel_name: str,
                     as_of_date: dt.date) -> Reconciliation:
    """The counts of one source as of ``as_of_date`` (see the module's docstring)."""
    channel = CHANNELS[channel_name]
    key = quote_ident(channel.key)
    event_at = channel.event_time if channel.visible_by_event_time else None
    build = quote_ident(settings.build_schema)
    day_after = dt.datetime.combine(as_of_date + dt.timedelta(days=1), dt.time())
    # the latest successful load of each partition is what raw holds now (a rerun reloads its date)
    read, suppressed = _one(wh, """
        select sum(rows_read), sum(coalesce(rows_suppressed, 0))
        from (
            select rows_read, rows_suppressed,
                   row_number() over (partition by partition_date order by recorded_at desc) as load_rank
            from ops.load_audit
            where source = %s and status = 'success' and partition_date <= %s
        ) as loads
        where load_rank = 1""", (source, as_of_date))
    (quarantined,) = _one(wh, "select count(*) from raw.quarantine where source = %s and partition_date <= %s",
                          (source, as_of_date))
    later = f"{quote_ident(event_at)} >= %s" if event_at else "false"
    loaded, not_yet_visible, visible_keys = _one(wh, f"""
        select count(*),
               count(*) filter (where {later}),
               count(distinct case when not ({later}) then trim({key}) end)
        from raw.{quote_ident(channel.table)}
        where _partition_date <= %s""", (day_after, day_after, as_of_date) if event_at else (as_of_date,))
    (staged,) = _one(wh, f"select count(*) from {build}.{quote_ident(channel.staging_model)}")
    superseded = loaded - not_yet_visible - visible_keys
    excluded, reasons, published = 0, [], staged
    if channel.purchases:
        for reason, condition in channel.purchases.exclusions:
            (n,) = _one(wh, f"select count(*) from {build}.{quote_ident(channel.staging_model)} where {condition}")
            excluded += n
            reasons.append(f"{reason}: {n}")
        (published,) = _one(wh, f"select count(*) from {build}.fct_purchases where purchase_id like %s",
                            (channel.purchases.prefix + "%",))
    return Reconciliation(source, read, quarantined, loaded, not_yet_visible, superseded, staged, excluded,
                          "; ".join(reasons), published, suppressed)


def reconcile(wh: Warehouse, settings: Settings, sources: dict[str, str], as_of_date: dt.date,
              run_id: str) -> list[Reconciliation]:
    """Reconcile every source (name -> channel) as of ``as_of_date``, record it, and raise if rows are missing."""
    results = [reconcile_source(wh, settings, name, channel, as_of_date) for name, channel in sources.items()]
    recorded_at = utc_now()  # when it was written, not a computed value
    with wh.transaction():
        wh.execute(RECONCILIATION_DDL)
        wh.execute(SUPPRESSED_DDL)
        wh.execute("delete from ops.source_reconciliation where run_id = %s", (run_id,))
        for r in results:
            wh.execute(
                "insert into ops.source_reconciliation (run_id, as_of_date, source, rows_read, rows_quarantined, "
                "rows_loaded, rows_not_yet_visible, rows_superseded, rows_staged, rows_excluded, excluded, "
                "rows_published, rows_unaccounted, rows_suppressed, recorded_at) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, as_of_date, r.source, r.rows_read, r.rows_quarantined, r.rows_loaded, r.rows_not_yet_visible,
                 r.rows_superseded, r.rows_staged, r.rows_excluded, r.excluded or None, r.rows_published,
                 r.rows_unaccounted, r.rows_suppressed, recorded_at),
            )
    problems = [p for r in results if (p := r.problem())]
    if problems:
        raise ReconciliationError("; ".join(problems))
    for r in results:
        log.info("%s: read %d = quarantined %d + suppressed %d + not yet visible %d + merged %d + excluded %d (%s) "
                 "+ published %d", r.source, r.rows_read, r.rows_quarantined, r.rows_suppressed,
                 r.rows_not_yet_visible, r.rows_superseded, r.rows_excluded, r.excluded or "-", r.rows_published)
    return results
