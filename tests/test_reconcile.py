"""The end-to-end row accounting (custseg/ops/reconcile.py) on a real DuckDB warehouse.

Orders are really ingested (custseg.steps.ingest) into raw and raw.quarantine; the two build tables the
accounting reads after them, the staging model and fct_purchases, are written here the way dbt
writes them, so a test can take one row out of either and see the loss named.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from custseg.config import load_settings
from custseg.ops.reconcile import ReconciliationError, reconcile
from custseg.steps.ingest import ingest_source
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect

DAY = dt.date(2026, 3, 2)
HEADER = ("order_id,order_ts,customer_ref,customer_email,customer_phone,currency,order_total,"
          "discount_amount,item_count,category,order_status,device,promo_code")


def order(order_id: str, ts: str = "2026-03-02T10:00:00Z", status: str = "completed", ref: str = "C-1",
          email: str = "") -> str:
    return f"{order_id},{ts},{ref},{email},,EUR,10.00,0,1,Books,{status},web,"


@pytest.fixture
def settings(tmp_path: Path):
    s = load_settings({"CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_LANDING_DIR": str(tmp_path / "landing"),
                       "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb")})
    prepare_warehouse(s)
    lines = [
        order("SO-1"), order("SO-1"),                        # an exact duplicate: loaded, merged
        order("SO-2", status="cancelled"),                    # staged, excluded as cancelled
        order("SO-3", ref="", email="not-an-address"),        # staged, nothing to attribute it to
        order("SO-4", ts="2026-03-03T05:00:00Z"),             # visible from the next day on
        order("SO-5"),
        order("SO-6", ts="yesterday"),                        # quarantined
        order("SO-7", ref=""),                                # quarantined: no customer at all
    ]
    path = s.landing_dir / "shop" / "orders" / f"{DAY}.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    ingest_source(s, "shop_orders", DAY, "run-1")
    with connect(s) as wh:
        wh.execute("create table analytics_build.stg_shop__orders (order_id text, is_cancelled boolean, "
                   "crm_customer_id text, email_hash text, phone_hash text)")
        wh.execute("insert into analytics_build.stg_shop__orders values ('SO-1', false, 'C-1', null, null), "
                   "('SO-2', true, 'C-1', null, null), ('SO-3', false, null, null, null), "
                   "('SO-5', false, 'C-1', null, null)")
        wh.execute("create table analytics_build.fct_purchases (purchase_id text)")
        wh.execute("insert into analytics_build.fct_purchases values ('shop:SO-1'), ('shop:SO-5')")
    return s


def test_every_row_is_counted_once(settings) -> None:
    with connect(settings) as wh:
        [r] = reconcile(wh, settings, {"shop_orders": "online_orders"}, DAY, "run-1")
        recorded = wh.fetchall("select rows_read, rows_quarantined, rows_not_yet_visible, rows_superseded, "
                               "rows_excluded, rows_published, rows_unaccounted from ops.source_reconciliation")
    assert (r.rows_read, r.rows_quarantined, r.rows_loaded) == (8, 2, 6)
    assert (r.rows_not_yet_visible, r.rows_superseded, r.rows_staged) == (1, 1, 4)
    assert (r.rows_excluded, r.rows_published) == (2, 2)
    assert r.excluded == "cancelled: 1; no e-mail, phone or CRM id to attribute it to: 1"
    assert recorded == [(8, 2, 1, 1, 2, 2, 0)]


def test_a_purchase_lost_after_staging_fails_the_run(settings) -> None:
    with connect(settings) as wh:
        wh.execute("delete from analytics_build.fct_purchases where purchase_id = 'shop:SO-5'")
        with pytest.raises(ReconciliationError, match=r"shop_orders: 1 rows unaccounted for: 1 staged rows neither "
                                                      r"published nor excluded"):
            reconcile(wh, settings, {"shop_orders": "online_orders"}, DAY, "run-1")
        # the counts are recorded all the same, for BI and `custseg status`
        assert wh.fetchall("select rows_unaccounted from ops.source_reconciliation") == [(1,)]


def test_a_row_dropped_by_staging_fails_the_run(settings) -> None:
    with connect(settings) as wh:
        wh.execute("delete from analytics_build.stg_shop__orders where order_id = 'SO-3'")
        wh.execute("delete from analytics_build.fct_purchases where purchase_id = 'shop:SO-3'")
        with pytest.raises(ReconciliationError, match=r"1 loaded rows missing from staging"):
            reconcile(wh, settings, {"shop_orders": "online_orders"}, DAY, "run-1")


def test_a_quarantine_row_removed_by_hand_is_found(settings) -> None:
    with connect(settings) as wh:
        wh.execute("delete from raw.quarantine where source_line = 7")
        with pytest.raises(ReconciliationError, match=r"read 8 but raw holds 6 and quarantine 1"):
            reconcile(wh, settings, {"shop_orders": "online_orders"}, DAY, "run-1")
