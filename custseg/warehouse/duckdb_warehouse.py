"""DuckDB, the embedded default warehouse: one file, one writer; `%s` placeholders become `?`,
and bulk writes go straight from Arrow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from custseg.config import Settings
from custseg.warehouse.base import Warehouse
from custseg.warehouse.sql import qualified, quote_ident


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"

    def __init__(self, settings: Settings, read_only: bool = False):
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
                f"insert into {qualified(schema, table)} ({cols}) "
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
