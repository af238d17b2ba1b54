"""The one place that talks to the warehouse: DuckDB (embedded default) or PostgreSQL.

Both backends expose the same small API so ingestion, scoring write-back and publish are written
once. SQL passed in uses `%s` placeholders; DuckDB's `?` style is translated here.
Bulk writes use each engine's native path: DuckDB inserts straight from Arrow, PostgreSQL uses COPY.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.config import PUBLISHED_BY_DATE, PUBLISHED_TABLES, Settings
from custseg.schemas import CHANNELS, raw_table_ddl

log = logging.getLogger(__name__)

BI_ROLE = "custseg_bi"

OPS_DDL = (
    """create table if not exists ops.load_audit (
        run_id text not null,
        logical_date date not null,
        source text not null,
        partition_date date,
        source_file text,
        rows_read bigint not null,
        rows_loaded bigint not null,
        rows_quarantined bigint not null,
        extra_columns text,
        status text not null,
        error text,
        recorded_at timestamp not null
    )""",
    # Warehouses created before these counts: add them (idempotent on both engines). Exact duplicates
    # of an earlier row of the same partition are loaded (staging keeps one) and counted here; rows of
    # an order export dated after the run's date are not read that night, and counted here.
    "alter table ops.load_audit add column if not exists rows_duplicate bigint",
    "alter table ops.load_audit add column if not exists rows_after_as_of bigint",
    """create table if not exists raw.quarantine (
        source text not null,
        source_file text not null,
        source_line bigint,
        partition_date date,
        run_id text not null,
        raw_record text,
        reason text not null
    )""",
    # The model registry: one row per fit (as_of_date = the training date); see custseg/models.py.
    """create table if not exists ml.model_runs (
        model_version text not null,
        as_of_date date not null,
        run_id text not null,
        metrics text,
        params text,
        recorded_at timestamp not null,
        dag_id text,
        status text,
        decision_reason text,
        training_window_start date,
        training_window_end date,
        training_data_hash text,
        library_versions text,
        artifact_path text,
        artifact_sha256 text
    )""",
    # Warehouses created before the registry: add its columns (idempotent on both engines).
    "alter table ml.model_runs add column if not exists dag_id text",
    "alter table ml.model_runs add column if not exists status text",
    "alter table ml.model_runs add column if not exists decision_reason text",
    "alter table ml.model_runs add column if not exists training_window_start date",
    "alter table ml.model_runs add column if not exists training_window_end date",
    "alter table ml.model_runs add column if not exists training_data_hash text",
    "alter table ml.model_runs add column if not exists library_versions text",
    "alter table ml.model_runs add column if not exists artifact_path text",
    "alter table ml.model_runs add column if not exists artifact_sha256 text",
    # A copy of every artifact, so a worker without the model directory can still load a model.
    """create table if not exists ml.model_artifacts (
        model_version text not null,
        artifact_sha256 text not null,
        content bytea not null,
        recorded_at timestamp not null
    )""",
    # One row per nightly scoring run: which model scored which date.
    """create table if not exists ml.scoring_runs (
        run_id text not null,
        as_of_date date not null,
        model_version text not null,
        model_trained_as_of date,
        n_customers bigint,
        n_buyers bigint,
        drift_max_psi double precision,
        metrics text,
        recorded_at timestamp not null
    )""",
    # PSI of the main features between the scoring model's training data and the run's date.
    """create table if not exists ml.feature_drift (
        run_id text not null,
        as_of_date date not null,
        model_version text not null,
        model_trained_as_of date,
        feature text not null,
        psi double precision,
        bins integer,
        status text not null,
        warn_threshold double precision not null,
        recorded_at timestamp not null
    )""",
    """create table if not exists ops.quality_results (
        run_id text not null,
        logical_date date not null,
        suite_name text not null,
        expectation text not null,
        column_name text,
        severity text not null,
        success boolean not null,
        observed_value text,
        unexpected_sample text,
        recorded_at timestamp not null
    )""",
    # one row per task try of the nightly DAG, written by its callbacks (custseg.ops)
    """create table if not exists ops.run_audit (
        run_id text not null,
        dag_id text not null,
        task_id text not null,
        logical_date date,
        try_number integer,
        status text not null,
        started_at timestamp,
        ended_at timestamp,
        duration_seconds double precision,
        rows_in bigint,
        rows_out bigint,
        error text,
        recorded_at timestamp not null
    )""",
)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
        for ddl in OPS_DDL:
            self.execute(ddl)
        self._index_raw_partitions()
        self._grant_bi_role()

    def _index_raw_partitions(self) -> None:
        """DuckDB prunes partitions by its zone maps; PostgreSQL needs an index (see PostgresWarehouse)."""

    def _grant_bi_role(self) -> None:
        """Only PostgreSQL has roles; DuckDB is a file whose readers get what the file holds."""

    def table_checksum(self, schema: str, table: str) -> str:
        """md5 of a table's sorted contents: equal checksums mean byte-identical published data."""
        import hashlib

        cols = self.columns(schema, table)
        order = ", ".join(str(i + 1) for i in range(len(cols)))
        frame = self.query_df(f"select * from {quote_ident(schema)}.{quote_ident(table)} order by {order}")
        return hashlib.md5(frame.to_csv(index=False).encode(), usedforsecurity=False).hexdigest()

    # -- publish -------------------------------------------------------------------------------
    def publish(self, tables: Sequence[str] = PUBLISHED_TABLES, as_of: dt.date | None = None) -> dict[str, int]:
        """Replace every published table with the audited build, all in one transaction.

        Rows are swapped with delete + insert into the existing tables instead of dropping and
        renaming them, so grants and the views BI users built on `analytics` survive, and
        concurrent readers (PostgreSQL MVCC) see either yesterday's rows or today's, never a mix.
        With the run's ``as_of`` date, the history tables (:data:`PUBLISHED_BY_DATE`) get the rows of
        that date and of any dates newer than their published ones (a night whose publish failed),
        so a night does not copy the whole history; the other tables, and these without ``as_of``,
        are replaced whole. Returns the rows published in each table (of a history table published
        by date: the rows of the dates it replaced).
        On PostgreSQL a second publisher waits for the first (transaction-scoped advisory lock plus
        EXCLUSIVE table locks, which still let readers through); DuckDB has one writer per file.
        The BI grants are applied inside the same transaction. A crash anywhere in here rolls back.
        """
        from custseg import ops

        build, pub = self.settings.build_schema, self.settings.publish_schema
        counts: dict[str, int] = {}
        missing = [t for t in tables if not self.table_exists(build, t)]
        if missing:
            raise RuntimeError(f"cannot publish: build tables missing in {build}: {', '.join(missing)}")
        with self.transaction():
            if self.kind == "postgres":  # a second publisher waits here until the first commits
                self.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"custseg:publish:{pub}",))
                existing = [f"{quote_ident(pub)}.{quote_ident(t)}" for t in tables if self.table_exists(pub, t)]
                if existing:  # EXCLUSIVE blocks other writers, never readers (ACCESS SHARE)
                    self.execute(f"lock table {', '.join(existing)} in exclusive mode")
            for table in tables:
                src, dst = f"{quote_ident(build)}.{quote_ident(table)}", f"{quote_ident(pub)}.{quote_ident(table)}"
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
                dates, params = self._dates_to_publish(pub, table, as_of) if table in PUBLISHED_BY_DATE else ("", ())
                self.execute(f"delete from {dst}{dates}", params)
                self.execute(f"insert into {dst} ({col_list}) select {col_list} from {src}{dates}", params)
                # the rows just written, not the whole table: a history table grows by a day of
                # customers every night, and counting all of it would grow the publish with it
                counts[table] = int(self.fetchall(f"select count(*) from {dst}{dates}", params)[0][0])
                ops.publish_fault_point(table, len(counts))  # fault injection for tests; no-op otherwise
            self._grant_bi_role()
        return counts

    def _dates_to_publish(self, schema: str, table: str, as_of: dt.date | None) -> tuple[str, tuple]:
        """The where clause of a history table's rows to replace: all of them without ``as_of``."""
        if as_of is None:
            return "", ()
        rel = f"{quote_ident(schema)}.{quote_ident(table)}"
        if self.kind == "postgres":  # max() and the delete below find a date's rows without a scan
            self.execute(f"create index if not exists {quote_ident(table + '_as_of_date')} on {rel} (as_of_date)")
        latest = self.fetchall(f"select max(as_of_date) from {rel}")[0][0]
        if latest is None:
            return "", ()
        return " where as_of_date = %s or as_of_date > %s", (as_of, latest)

    def _column_type(self, schema: str, table: str, column: str) -> str:
        rows = self.fetchall(
            "select data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s and column_name = %s",
            (schema, table, column),
        )
        return rows[0][0]


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"

    def __init__(self, settings: Settings, read_only: bool = False):
        import duckdb

        super().__init__(settings)
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = duckdb.connect(str(settings.duckdb_path), read_only=read_only)
        # A SET, not a connect-time config: DuckDB refuses a second connection to one file with a
        # different config, and dbt-duckdb (same process in `dag.test`) applies its settings by SET too.
        # Without a cap DuckDB may hold 80 % of RAM as buffer cache, which is what the process's peak RSS shows.
        self.conn.execute(f"set memory_limit = '{settings.duckdb_memory_limit}'")
        self._in_tx = False

    def close(self) -> None:
        self.conn.close()

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%s", "?")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.conn.execute(self._sql(sql), params or [])

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self.conn.execute(self._sql(sql), params or []).fetchall()

    def query_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        return self.conn.execute(self._sql(sql), params or []).df()

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        # a relation, not a DB-API result: the latter copies every row once more on the way to Arrow
        return self.conn.sql(self._sql(sql), params=list(params or [])).to_arrow_table()

    def write_arrow(self, schema: str, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        cols = ", ".join(quote_ident(c) for c in data.column_names)
        self.conn.register("_custseg_incoming", data)
        try:
            self.conn.execute(
                f"insert into {quote_ident(schema)}.{quote_ident(table)} ({cols}) "
                f"select {cols} from _custseg_incoming"
            )
        finally:
            self.conn.unregister("_custseg_incoming")
        return data.num_rows

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self.conn.execute("begin transaction")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self.conn.execute("rollback")
            raise
        else:
            self.conn.execute("commit")
        finally:
            self._in_tx = False


class PostgresWarehouse(Warehouse):
    kind = "postgres"

    def _index_raw_partitions(self) -> None:
        # Ingest replaces a partition, validate_raw checks one, and the nightly staging models read the
        # partitions landed since their last build: without these each is a scan of the whole history.
        for channel in CHANNELS.values():
            self.execute(f"create index if not exists {quote_ident(channel.table + '_partition_idx')} "
                         f"on raw.{quote_ident(channel.table)} (_partition_date)")

    def __init__(self, settings: Settings):
        import psycopg

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
            f"copy {quote_ident(schema)}.{quote_ident(table)} ({cols}) "
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


def connect(settings: Settings, read_only: bool = False) -> Warehouse:
    if settings.warehouse == "postgres":
        return PostgresWarehouse(settings)
    return DuckDBWarehouse(settings, read_only=read_only)
