"""Sources that are not dated landing files: a table in an operational PostgreSQL database reached
through an Airflow connection (`format: postgres_table`), and full snapshots (`layout: snapshot`).

The operational database is a real, fresh PostgreSQL database; the warehouse is a real DuckDB file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from custseg.config import load_settings
from custseg.sources import SourceConfigError, load_sources
from custseg.steps.ingest import IngestError, ingest_source
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect

D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)

ORDER_COLUMNS = """
      order_id: order_no
      ordered_at: created_at
      customer_ref: customer
      currency: currency
      order_total: {from: total, decimal: ","}
"""


def _sources(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text("sources:\n" + body, encoding="utf-8")
    return path


def _orders_source(tmp_path: Path, **keys: str):
    """Settings whose only source is `shop_orders` (online orders) with these keys and the mapping above."""
    lines = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    sources = _sources(tmp_path, f"  shop_orders:\n    channel: online_orders\n{lines}    columns:{ORDER_COLUMNS}")
    return _settings(tmp_path, sources)


def _settings(tmp_path: Path, sources: Path):
    s = load_settings({
        "CUSTSEG_DATA_DIR": str(tmp_path / "data"),
        "CUSTSEG_LANDING_DIR": str(tmp_path / "landing"),
        "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
        "CUSTSEG_SOURCES_FILE": str(sources),
    })
    prepare_warehouse(s)
    return s


@pytest.fixture
def shop_db(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An operational shop database with an orders table, reachable as Airflow connection `shop_db`."""
    with psycopg.connect(pg_database, autocommit=True) as con:
        con.execute("create schema shop")
        con.execute("create table shop.orders (order_no text, created_at timestamptz, customer text, "
                    "currency text, total text, coupon text)")
        con.execute("""insert into shop.orders values
            ('O-1', '2026-03-01 10:00:00+00', 'C-1', 'EUR', '10,50', null),
            ('O-2', '2026-03-01 23:30:00-02', 'C-2', 'EUR', '5,00', 'SPRING'),   -- 2026-03-02 in UTC
            ('O-3', '2026-03-02 09:00:00+00', 'C-1', 'EUR', '-1,00', null),      -- negative: quarantined
            ('O-4', '2026-03-02 12:00:00+00', 'C-3', 'XXX', '7,00', null),       -- unknown currency
            ('O-5', '2026-03-04 08:00:00+00', 'C-4', 'EUR', '9,00', null)        -- after every as-of below
        """)
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", pg_database)
    return pg_database


@pytest.mark.postgres
def test_a_postgres_table_is_extracted_by_day_and_loaded_like_a_file(shop_db: str, tmp_path: Path) -> None:
    settings = _orders_source(tmp_path, format="postgres_table", connection="shop_db", table="shop.orders",
                              partition_column="created_at")

    results = ingest_source(settings, "shop_orders", D2, "run-1")
    # the first run catches up: every UTC date with rows up to the logical date, and nothing after it
    assert [(r.partition_date, r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [
        (D1, 1, 1, 0), (D2, 3, 1, 2)]
    assert results[0].extra_columns == ("coupon",)
    extract = tmp_path / "data" / "extracts" / "shop_orders" / "2026-03-02.csv"
    assert results[1].source_file == str(extract) and extract.is_file()
    with connect(settings) as wh:
        loaded = wh.fetchall("select order_id, cast(order_total as double), _partition_date, _extras "
                             "from raw.shop_orders order by order_id")
        reasons = wh.fetchall("select source_file, source_line, reason from raw.quarantine order by source_line")
        audit = wh.fetchall("select partition_date, rows_read, rows_loaded, rows_quarantined, status "
                            "from ops.load_audit order by partition_date")
    assert loaded == [("O-1", 10.5, D1, '{"coupon":null}'), ("O-2", 5.0, D2, '{"coupon":"SPRING"}')]
    # the extract is ordered, so a quarantined row's line number points at it in the kept file
    assert reasons == [(str(extract), 2, "order_total below 0: -1,00"), (str(extract), 3, "unknown currency: XXX")]
    lines = extract.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "order_no,created_at,customer,currency,total,coupon"
    assert lines[2].startswith("O-3,") and lines[3].startswith("O-4,")
    assert audit == [(D1, 1, 1, 0, "success"), (D2, 3, 1, 2, "success")]

    # a rerun of the date re-extracts and replaces that day only: nothing is duplicated
    with psycopg.connect(shop_db, autocommit=True) as con:
        con.execute("update shop.orders set total = '6,00' where order_no = 'O-2'")
    again = ingest_source(settings, "shop_orders", D2, "run-2")
    assert [(r.partition_date, r.rows_read) for r in again] == [(D2, 3)]
    with connect(settings) as wh:
        assert wh.fetchall("select order_id, cast(order_total as double) from raw.shop_orders "
                           "order by order_id") == [("O-1", 10.5), ("O-2", 6.0)]
        assert wh.fetchall("select count(*) from raw.quarantine")[0][0] == 2

    # the next night extracts its own (empty) day: a header-only extract, audited with zero rows
    [night] = ingest_source(settings, "shop_orders", D3, "run-3")
    assert (night.partition_date, night.rows_read, night.rows_loaded) == (D3, 0, 0)


@pytest.mark.postgres
def test_a_postgres_snapshot_is_the_logical_dates_partition(shop_db: str, tmp_path: Path) -> None:
    settings = _orders_source(tmp_path, format="postgres_table", layout="snapshot", connection="shop_db",
                              table="shop.orders")
    [result] = ingest_source(settings, "shop_orders", D2, "run-1")
    # the whole table as of now, all of it as the logical date's partition; the order dated after
    # the logical date is quarantined as being in the future, never silently dropped
    assert (result.partition_date, result.rows_read, result.rows_loaded, result.rows_quarantined) == (D2, 5, 2, 3)
    with connect(settings) as wh:
        reasons = sorted(r[0] for r in wh.fetchall("select reason from raw.quarantine"))
    assert reasons[0].startswith("future ordered_at") and "order_total below 0: -1,00" in reasons


@pytest.mark.postgres
def test_a_missing_connection_or_table_fails_the_source_and_is_audited(pg_database: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _orders_source(tmp_path, format="postgres_table", connection="shop_db", table="shop.no_such_table",
                              partition_column="created_at")
    monkeypatch.delenv("AIRFLOW_CONN_SHOP_DB", raising=False)
    with pytest.raises(IngestError, match=r"connection .shop_db. is not defined: add it to Airflow "
                                          r"\(AIRFLOW_CONN_SHOP_DB"):
        ingest_source(settings, "shop_orders", D2, "run-1")
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", pg_database)
    with pytest.raises(IngestError, match=r"shop_orders: cannot read shop.no_such_table through connection "
                                          r"'shop_db': .*does not exist"):
        ingest_source(settings, "shop_orders", D2, "run-2")
    with connect(settings) as wh:
        assert wh.fetchall("select run_id, source_file, status from ops.load_audit order by run_id") == [
            ("run-1", "shop.no_such_table", "failed"), ("run-2", "shop.no_such_table", "failed")]
        assert wh.fetchall("select count(*) from raw.shop_orders")[0][0] == 0


def test_a_snapshot_file_is_loaded_whole_as_each_runs_partition(tmp_path: Path) -> None:
    settings = _orders_source(tmp_path, format="csv", layout="snapshot", path="shop/all_orders.csv")
    current = tmp_path / "landing" / "shop" / "all_orders.csv"
    current.parent.mkdir(parents=True)
    current.write_text("order_no,created_at,customer,currency,total\n"
                       "O-1,2026-03-01T10:00:00Z,C-1,EUR,\"10,50\"\n", encoding="utf-8")
    assert [r.partition_date for r in ingest_source(settings, "shop_orders", D1, "run-1")] == [D1]
    current.write_text(current.read_text(encoding="utf-8") + "O-2,2026-03-02T10:00:00Z,C-2,EUR,\"5,00\"\n",
                       encoding="utf-8")
    # the next night loads the file as it is now as its own partition; earlier partitions stay,
    # so a run as of an earlier date still sees that date's snapshot
    [second] = ingest_source(settings, "shop_orders", D2, "run-2")
    assert (second.partition_date, second.rows_read, second.rows_loaded) == (D2, 2, 2)
    with connect(settings) as wh:
        assert wh.fetchall("select _partition_date, count(*) from raw.shop_orders group by 1 order by 1") == [
            (D1, 1), (D2, 2)]


@pytest.mark.parametrize(("body", "message"), [
    ("    format: postgres_table\n    table: shop.orders\n    partition_column: created_at\n",
     r"key 'connection': a postgres_table source needs it"),
    ("    format: postgres_table\n    connection: shop_db\n    table: shop.orders\n",
     r"key 'partition_column': a daily postgres_table source needs the column"),
    ("    format: postgres_table\n    connection: shop_db\n    table: \"orders; drop table x\"\n"
     "    partition_column: created_at\n", r"key 'table': 'orders; drop table x' is not a table name"),
    ("    format: csv\n    layout: weekly\n    path: o/{date}.csv\n", r"key 'layout': unknown layout 'weekly'"),
    ("    format: csv\n    layout: snapshot\n    path: o/{date}.csv\n",
     r"key 'path': a snapshot source's path is one file, without \{date\}"),
    ("    format: csv\n    path: o/all.csv\n", r"key 'path': a daily source's path must contain \{date\}"),
    ("    format: csv\n    path: o/{date}.csv\n    row_count_check: sometimes\n",
     r"key 'row_count_check': must be true or false"),
])
def test_table_and_snapshot_config_errors_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    cfg = _sources(tmp_path, "  orders:\n    channel: online_orders\n" + body + "    columns:" + ORDER_COLUMNS)
    with pytest.raises(SourceConfigError, match=r"sources.yml: source 'orders', " + message):
        load_sources(cfg)
