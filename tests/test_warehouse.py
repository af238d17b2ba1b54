"""The warehouse primitives both engines share: bulk reads through Arrow give the rows query_df gives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from custseg.config import load_settings
from custseg.warehouse import PostgresWarehouse, connect
from tests.conftest import warehouse_env

ROWS = 2_500  # several PostgreSQL batches when ARROW_BATCH_ROWS is set to 1,000 below


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def wh(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kind = request.param
    if kind == "postgres":
        env = warehouse_env("postgres", tmp_path, pg_url=request.getfixturevalue("pg_database"))
        monkeypatch.setattr(PostgresWarehouse, "ARROW_BATCH_ROWS", 1_000)
    else:
        env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb")
    with connect(load_settings(env)) as warehouse:
        warehouse.execute("create schema if not exists scratch")
        warehouse.execute(
            "create table scratch.purchases (customer_id text, purchase_date date, amount double precision, "
            "items integer, note text)"
        )
        # `note` is null in the whole first PostgreSQL batch and set later: a batch's inferred
        # null type must give way to the column's real one
        warehouse.execute(
            "insert into scratch.purchases select 'c' || cast(i % 700 as text), "
            "cast('2026-01-01' as date) + cast(i % 300 as integer), i * 0.25, i, "
            "case when i > 1500 then 'late ' || cast(i as text) end "
            f"from generate_series(1, {ROWS}) as t(i)"
        )
        yield warehouse


def test_query_arrow_gives_the_rows_query_df_gives(wh) -> None:
    sql = "select customer_id, purchase_date, amount, items, note from scratch.purchases where items > %s order by 4"
    table = wh.query_arrow(sql, (10,))
    assert table.num_rows == ROWS - 10
    assert table.column_names == ["customer_id", "purchase_date", "amount", "items", "note"]
    arrow_rows = table.to_pandas()
    expected = wh.query_df(sql, (10,))
    assert arrow_rows["customer_id"].tolist() == expected["customer_id"].tolist()
    assert pd.to_datetime(arrow_rows["purchase_date"]).tolist() == pd.to_datetime(expected["purchase_date"]).tolist()
    assert arrow_rows["amount"].tolist() == pytest.approx(expected["amount"].astype(float).tolist())
    assert arrow_rows["items"].tolist() == expected["items"].astype(int).tolist()
    assert arrow_rows["note"].isna().sum() == 1500 - 10
    assert arrow_rows["note"].iloc[-1] == f"late {ROWS}"
    assert table.column("purchase_date")[0].as_py() == dt.date(2026, 1, 1) + dt.timedelta(days=11)


def test_query_arrow_of_no_rows_keeps_the_columns(wh) -> None:
    table = wh.query_arrow("select customer_id, amount from scratch.purchases where items < 0")
    assert table.num_rows == 0
    assert table.column_names == ["customer_id", "amount"]


def test_customer_chunks_split_the_ml_inputs_into_disjoint_ranges_that_miss_nobody(wh) -> None:
    # The ranges are ordered by the warehouse itself: on PostgreSQL a non-C collation (here ICU
    # English, where 'B' < 'a' is false and punctuation is ignored at first) orders these ids
    # differently from a byte-wise sort, and every purchase must still fall in exactly one range.
    from custseg.steps.score import customer_chunks, fit_sample, read_ml_inputs
    from ml.features import SNAPSHOT_FEATURES

    ids = ["a", "B", "a_b", "aa", "A-1", "_x", "b", "Z", "z9", "Ab"]
    orphans = ["0-orphan", "zz-orphan"]  # buyers without a customers row: below and above every id
    collate = ' collate "en-x-icu"' if wh.kind == "postgres" else ""
    wh.execute("create schema if not exists chunked")
    wh.execute(f"create table chunked.fct_customer_features (customer_id text{collate}, email_open_rate "
               "double precision, email_click_rate double precision, web_sessions_90d integer)")
    wh.execute(f"create table chunked.fct_purchases (customer_id text{collate}, purchase_date date, net_amount "
               "numeric(18, 2), discount_amount numeric(18, 2), sales_channel text, category text, is_refund boolean)")
    wh.execute(f"create table chunked.fct_customer_engagement_snapshots (customer_id text{collate}, snapshot_date "
               "date, " + ", ".join(f"{c} integer" for c in SNAPSHOT_FEATURES) + ")")
    day = dt.date(2026, 3, 1)
    for n, cid in enumerate(ids):
        wh.execute("insert into chunked.fct_customer_features values (%s, 0.5, 0.1, %s)", (cid, n))
        wh.execute("insert into chunked.fct_customer_engagement_snapshots values (%s, %s, "
                   + ", ".join(["1"] * len(SNAPSHOT_FEATURES)) + ")", (cid, day))
    for n, cid in enumerate([*ids, *ids[:4], *orphans]):
        wh.execute("insert into chunked.fct_purchases values (%s, %s, %s, 0, 'online', 'books', false)",
                   (cid, day, 10 + n))

    chunks = customer_chunks(wh, "chunked", 3)
    assert len(chunks) == 4 and chunks[0][0] is None and chunks[-1][1] is None
    reads = [read_ml_inputs(wh, "chunked", chunk, snapshot_date=day) for chunk in chunks]
    purchases = sorted(cid for tx, _, _ in reads for cid in tx["customer_id"])
    assert purchases == sorted([*ids, *ids[:4], *orphans])
    assert sorted(cid for _, customers, _ in reads for cid in customers["customer_id"]) == sorted(ids)
    assert sorted(cid for _, _, engagement in reads for cid in engagement["customer_id"]) == sorted(ids)
    assert [len(customers) for _, customers, _ in reads] == [3, 3, 3, 1]
    # and a chunk's rows are its customers' rows, all of them
    for tx, customers, engagement in reads:
        assert set(engagement["customer_id"]) == set(customers["customer_id"])
        assert set(tx["customer_id"]) - set(orphans) == set(customers["customer_id"])

    # A model's fit reads a sample above CUSTSEG_FIT_SAMPLE_CUSTOMERS: the lowest ids in the warehouse's
    # own order (keyed hashes in production: a uniform sample), with all their rows and nobody else's.
    sample_range, sample = fit_sample(wh, "chunked", {"CUSTSEG_FIT_SAMPLE_CUSTOMERS": "4"})
    assert sample == {"customers": 4, "of_customers": 10, "sampled": True,
                      "rule": "the customers with the lowest keyed customer_id (a uniform sample)"}
    lowest = [r[0] for r in wh.fetchall("select customer_id from chunked.fct_customer_features "
                                        "order by customer_id limit 4")]
    tx, customers, engagement = read_ml_inputs(wh, "chunked", sample_range)
    assert sorted(customers["customer_id"]) == sorted(lowest) == sorted(engagement["customer_id"])
    assert set(tx["customer_id"]) - set(orphans) == set(lowest)
    assert fit_sample(wh, "chunked", {"CUSTSEG_FIT_SAMPLE_CUSTOMERS": "10"}) == (
        (None, None), {"customers": 10, "of_customers": 10, "sampled": False})
    assert fit_sample(wh, "chunked", {"CUSTSEG_FIT_SAMPLE_CUSTOMERS": "0"})[1]["sampled"] is False


def test_bootstrap_renames_the_columns_an_earlier_release_named_logical_date(wh) -> None:
    """A warehouse made before 2.0.0 keeps its audit history under the new column name."""
    wh.execute("create schema if not exists ops")
    wh.execute("create table ops.run_audit (run_id text not null, dag_id text not null, task_id text not null, "
               "logical_date date, try_number integer, status text not null, started_at timestamp, "
               "ended_at timestamp, duration_seconds double precision, rows_in bigint, rows_out bigint, error text, "
               "recorded_at timestamp not null)")
    wh.execute("insert into ops.run_audit (run_id, dag_id, task_id, logical_date, status, recorded_at) "
               "values ('old-run', 'customer_segmentation', 'publish', '2026-06-30', 'success', '2026-07-01')")
    wh.bootstrap()
    wh.bootstrap()  # idempotent: the second bootstrap finds nothing to rename
    assert "as_of_date" in wh.columns("ops", "run_audit") and "logical_date" not in wh.columns("ops", "run_audit")
    assert wh.fetchall("select run_id, as_of_date from ops.run_audit") == [("old-run", dt.date(2026, 6, 30))]
    assert "as_of_date" in wh.columns("ops", "load_audit")
