"""The one place that talks to the warehouse: DuckDB (embedded default) or PostgreSQL.

Both backends expose the same small API so ingestion, scoring write-back and publish are written
once. SQL passed in uses `%s` placeholders; DuckDB's `?` style is translated here.
Bulk writes use each engine's native path: DuckDB inserts straight from Arrow, PostgreSQL uses COPY.
"""

from __future__ import annotations

from custseg.config import Settings
from custseg.warehouse.base import Warehouse
from custseg.warehouse.ddl import BI_ROLE
from custseg.warehouse.duckdb_warehouse import DuckDBWarehouse
from custseg.warehouse.postgres_warehouse import PostgresWarehouse
from custseg.warehouse.sql import quote_ident

__all__ = ["BI_ROLE", "DuckDBWarehouse", "PostgresWarehouse", "Warehouse", "connect", "quote_ident"]


def connect(settings: Settings, read_only: bool = False) -> Warehouse:
    if settings.warehouse == "postgres":
        return PostgresWarehouse(settings)
    return DuckDBWarehouse(settings, read_only=read_only)
