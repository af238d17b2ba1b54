"""The warehouse API both engines share: queries, Arrow bulk writes, transactions, bootstrap of the
`raw`/`ops`/`ml` tables, and the atomic publish (write-audit-publish) of the build into `analytics`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pyarrow as pa

from custseg.catalogue import CHANNELS, SQL_TYPES, raw_table_ddl
from custseg.config import PUBLISHED_BY_DATE, PUBLISHED_TABLES, HistoryRetention, Settings
from custseg.warehouse.ddl import OPS_DDL, RENAMED_COLUMNS
from custseg.warehouse.sql import qualified, quote_ident

#: the published history that grows by every customer every night, and so has a retention
#: (Settings.history_retention); the other tables by date grow by a few rows a night
RETAINED_HISTORY_TABLES = ("segment_history",)
#: date_trunc units of the thinning allowed by the settings (an allow-list: the unit is SQL text)
_THINNING_UNITS = {"weekly": "week", "month_end": "month"}


class Warehouse:
    """A short-lived connection. Use as a context manager; DuckDB allows one writer per file."""
    kind: str

    def __init__(self, settings: Settings):
        self.settings = settings

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- primitives ----------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        raise NotImplementedError

    def query_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        raise NotImplementedError

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """The rows as an Arrow table, for reads of millions of rows.

        Both engines stream the result instead of materialising it as Python objects first (a
        DataFrame of 3.8M purchases via ``query_df`` peaked at 2.2 GB, via Arrow at 1.2 GB).
        Column types follow the engine, so callers normalise dtypes themselves.
        """
        raise NotImplementedError

    def write_arrow(self, schema: str, table: str, data: pa.Table) -> int:
        """Append `data` to an existing table, matching columns by name. Returns rows written."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    # -- helpers shared by both engines --------------------------------------------------------
    def table_exists(self, schema: str, table: str) -> bool:
        rows = self.fetchall(
            "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
            (schema, table),
        )
        return bool(rows)

    def columns(self, schema: str, table: str) -> list[str]:
        rows = self.fetchall(
            "select column_name from information_schema.columns "
            "where table_schema = %s and table_name = %s order by ordinal_position",
            (schema, table),
        )
        return [r[0] for r in rows]

    def bootstrap(self) -> None:
        """Create the schemas and pipeline-owned tables (idempotent)."""
        s = self.settings
        for schema in ("raw", "ops", "ml", s.build_schema, s.publish_schema):
            self.execute(f"create schema if not exists {quote_ident(schema)}")
        for channel in CHANNELS.values():
            self.execute(raw_table_ddl("raw", channel))
        self._rename_old_columns()
        self._add_new_channel_columns()
        for ddl in OPS_DDL:
            self.execute(ddl)
        self._index_raw_partitions()
        self._grant_bi_role()

    def _rename_old_columns(self) -> None:
        """Bring a warehouse made by an earlier release up to date (:data:`RENAMED_COLUMNS`)."""
        for schema, table, old, new in RENAMED_COLUMNS:
            if self.table_exists(schema, table):
                columns = self.columns(schema, table)
                if old in columns and new not in columns:
                    self.execute(f"alter table {qualified(schema, table)} "
                                 f"rename column {quote_ident(old)} to {quote_ident(new)}")

    def _add_new_channel_columns(self) -> None:
        """Give raw tables made by an earlier release the columns the catalogue has added since (null in the
        rows loaded before; a new optional column is additive). The alter runs only when one is missing."""
        for channel in CHANNELS.values():
            present = set(self.columns("raw", channel.table))
            for col in channel.columns:
                if col.name not in present:
                    self.execute(f"alter table {qualified('raw', channel.table)} "
                                 f"add column {quote_ident(col.name)} {SQL_TYPES[col.type]}")

    def _index_raw_partitions(self) -> None:
        """DuckDB prunes partitions by its zone maps; PostgreSQL needs an index (see PostgresWarehouse)."""

    def _grant_bi_role(self) -> None:
        """Only PostgreSQL has roles; DuckDB is a file whose readers get what the file holds."""

    def table_checksum(self, schema: str, table: str) -> str:
        """md5 of a table's sorted contents: equal checksums mean byte-identical published data."""

        cols = self.columns(schema, table)
        order = ", ".join(str(i + 1) for i in range(len(cols)))
        frame = self.query_df(f"select * from {qualified(schema, table)} order by {order}")
        return hashlib.md5(frame.to_csv(index=False).encode(), usedforsecurity=False).hexdigest()

    # -- publish -------------------------------------------------------------------------------
    def publish(self, tables: Sequence[str] = PUBLISHED_TABLES, as_of_date: dt.date | None = None,
                on_table_published: Callable[[str, int], None] | None = None,
                retention: HistoryRetention | None = None) -> dict[str, int]:
        """Replace every published table with the audited build, all in one transaction.

        ``on_table_published(table, replaced_so_far)`` is called inside the transaction after each
        table (the publish step passes the fault drills' hook; the warehouse knows nothing of ops).

        Rows are swapped with delete + insert into the existing tables instead of dropping and
        renaming them, so grants and the views BI users built on `analytics` survive, and
        concurrent readers (PostgreSQL MVCC) see either yesterday's rows or today's, never a mix.
        With the run's ``as_of_date`` date, the history tables (:data:`PUBLISHED_BY_DATE`) get the rows of
        that date and of any dates newer than their published ones (a night whose publish failed),
        so a night does not copy the whole history; the other tables, and these without ``as_of_date``,
        are replaced whole. Returns the rows published in each table (of a history table published
        by date: the rows of the dates it replaced).
        On PostgreSQL a second publisher waits for the first (transaction-scoped advisory lock plus
        EXCLUSIVE table locks, which still let readers through); DuckDB has one writer per file.
        The BI grants are applied inside the same transaction. A crash anywhere in here rolls back.
        With a ``retention``, the history tables (:data:`RETAINED_HISTORY_TABLES`) of both schemas are
        thinned in the same transaction (:meth:`prune_history`).
        """

        build, pub = self.settings.build_schema, self.settings.publish_schema
        counts: dict[str, int] = {}
        missing = [t for t in tables if not self.table_exists(build, t)]
        if missing:
            raise RuntimeError(f"cannot publish: build tables missing in {build}: {', '.join(missing)}")
        with self.transaction():
            if self.kind == "postgres":  # a second publisher waits here until the first commits
                self.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"custseg:publish:{pub}",))
                existing = [f"{qualified(pub, t)}" for t in tables if self.table_exists(pub, t)]
                if existing:  # EXCLUSIVE blocks other writers, never readers (ACCESS SHARE)
                    self.execute(f"lock table {', '.join(existing)} in exclusive mode")
            for table in tables:
                src, dst = f"{qualified(build, table)}", f"{qualified(pub, table)}"
                build_cols = self.columns(build, table)
                if not self.table_exists(pub, table):
                    self.execute(f"create table {dst} as select * from {src} where 1 = 0")
                else:
                    pub_cols = self.columns(pub, table)
                    dropped = [c for c in pub_cols if c not in build_cols]
                    if dropped:
                        raise RuntimeError(
                            f"refusing to publish {table}: columns {dropped} would disappear from the "
                            "published contract (a breaking change; migrate explicitly)"
                        )
                    for col in build_cols:
                        if col not in pub_cols:
                            ctype = self._column_type(build, table, col)
                            self.execute(f"alter table {dst} add column {quote_ident(col)} {ctype}")
                col_list = ", ".join(quote_ident(c) for c in build_cols)
                dates, params = (self._dates_to_publish(pub, table, as_of_date) if table in PUBLISHED_BY_DATE
                                 else ("", ()))
                self.execute(f"delete from {dst}{dates}", params)
                self.execute(f"insert into {dst} ({col_list}) select {col_list} from {src}{dates}", params)
                # the rows just written, not the whole table: a history table grows by a day of
                # customers every night, and counting all of it would grow the publish with it
                counts[table] = int(self.fetchall(f"select count(*) from {dst}{dates}", params)[0][0])
                if on_table_published is not None:  # custseg.ops.faults' drills hook in here
                    on_table_published(table, len(counts))
            if retention is not None:
                for table in (t for t in tables if t in RETAINED_HISTORY_TABLES):
                    self.prune_history(pub, table, retention)
                    self.prune_history(build, table, retention)
            self._grant_bi_role()
        return counts

    def prune_history(self, schema: str, table: str, retention: HistoryRetention) -> list[dt.date]:
        """Delete the dates a history table no longer keeps; return them.

        Kept: every date of the last ``daily_days`` days up to the table's latest ``as_of_date``, and
        before them the latest date of each ISO week (Monday to Sunday) or of each month. The window
        ends at the latest date in the table, not at the run's date, so a rerun or backfill of an old
        date keeps what the nightly runs kept. Idempotent.
        """
        rel = qualified(schema, table)
        latest = self.fetchall(f"select max(as_of_date) from {rel}")[0][0]
        if latest is None:
            return []
        unit = _THINNING_UNITS[retention.thinning]
        cutoff = _as_date(latest) - dt.timedelta(days=retention.daily_days)
        dropped = [_as_date(row[0]) for row in self.fetchall(
            f"select distinct as_of_date from {rel} where as_of_date < %s and as_of_date not in "
            f"(select max(as_of_date) from {rel} group by date_trunc('{unit}', as_of_date)) order by 1",
            (cutoff,))]
        for day in dropped:
            self.execute(f"delete from {rel} where as_of_date = %s", (day,))
        return dropped

    def _dates_to_publish(self, schema: str, table: str, as_of_date: dt.date | None) -> tuple[str, tuple]:
        """The where clause of a history table's rows to replace: all of them without ``as_of_date``."""
        if as_of_date is None:
            return "", ()
        rel = f"{qualified(schema, table)}"
        if self.kind == "postgres":  # max() and the delete below find a date's rows without a scan
            self.execute(f"create index if not exists {quote_ident(table + '_as_of_date')} on {rel} (as_of_date)")
        latest = self.fetchall(f"select max(as_of_date) from {rel}")[0][0]
        if latest is None:
            return "", ()
        return " where as_of_date = %s or as_of_date > %s", (as_of_date, latest)

    def _column_type(self, schema: str, table: str, column: str) -> str:
        rows = self.fetchall(
            "select data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s and column_name = %s",
            (schema, table, column),
        )
        return rows[0][0]


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
