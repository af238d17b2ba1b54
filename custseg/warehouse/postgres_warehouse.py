"""PostgreSQL, the production warehouse: psycopg 3 with server-side parameters, COPY for bulk
writes, and the read-only BI role's grants on `analytics`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.catalogue import CHANNELS
from custseg.config import Settings
from custseg.warehouse.base import Warehouse
from custseg.warehouse.ddl import BI_ROLE
from custseg.warehouse.sql import qualified, quote_ident


class PostgresWarehouse(Warehouse):
    kind = "postgres"

    def _index_raw_partitions(self) -> None:
        # Ingest replaces a partition, validate_raw checks one, and the nightly staging models read the
        # partitions landed since their last build: without these each is a scan of the whole history.
        for channel in CHANNELS.values():
            self.execute(f"create index if not exists {quote_ident(channel.table + '_partition_idx')} "
                         f"on raw.{quote_ident(channel.table)} (_partition_date)")

    def __init__(self, settings: Settings):
        super().__init__(settings)
        if settings.postgres is None:
            raise ValueError("PostgreSQL settings missing")
        self.conn = psycopg.connect(settings.postgres.url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def query_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=names)

    ARROW_BATCH_ROWS = 100_000

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        # A server-side cursor, one batch of rows at a time: only a batch exists as Python tuples.
        # Types are inferred per batch; an all-null column of a batch is promoted to the others' type.
        batches: list[pa.Table] = []
        with self.conn.transaction(), self.conn.cursor(name="custseg_query_arrow") as cur:
            cur.execute(sql, params)
            names = [d.name for d in cur.description or []]
            while rows := cur.fetchmany(self.ARROW_BATCH_ROWS):
                batches.append(pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)}))
        if not batches:
            return pa.table({n: pa.array([], type=pa.null()) for n in names})
        return pa.concat_tables(batches, promote_options="permissive")

    def write_arrow(self, schema: str, table: str, data: pa.Table) -> int:
        """Stream Arrow record batches through COPY ... FROM STDIN as CSV (bounded memory)."""
        if data.num_rows == 0:
            return 0
        cols = ", ".join(quote_ident(c) for c in data.column_names)
        copy_sql = (
            f"copy {qualified(schema, table)} ({cols}) "
            "from stdin with (format csv, header false)"
        )
        # Arrow's CSV writer quotes every string and leaves NULL unquoted-empty, which is exactly how
        # COPY's CSV format tells an empty string from NULL.
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        with self.conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for batch in data.to_batches(max_chunksize=50_000):
                buf = io.BytesIO()
                pacsv.write_csv(pa.Table.from_batches([batch]), buf, write_options=options)
                copy.write(buf.getvalue())
        return data.num_rows

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def _grant_bi_role(self) -> None:
        pub = quote_ident(self.settings.publish_schema)
        self.execute(
            "do $$ begin if not exists (select 1 from pg_roles where rolname = %s) "
            "then create role custseg_bi nologin; end if; "
            # the role is cluster-wide: another database's pipeline may create it at the same moment
            "exception when duplicate_object or unique_violation then null; end $$".replace("%s", f"'{BI_ROLE}'")
        )
        self.execute(f"grant usage on schema {pub} to {BI_ROLE}")
        self.execute(f"grant select on all tables in schema {pub} to {BI_ROLE}")
        self.execute(f"alter default privileges in schema {pub} grant select on tables to {BI_ROLE}")
