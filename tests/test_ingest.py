"""Ingestion on real DuckDB: rows are loaded or quarantined with a reason, counts add up,
reruns replace a partition, and unreadable files fail loudly without loading anything."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from custseg.config import load_settings
from custseg.sources import SourceConfigError, load_sources
from custseg.steps.ingest import IngestError, ingest_source
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect

DAY = dt.date(2026, 3, 2)
HEADER = ("order_id,order_ts,customer_ref,customer_email,customer_phone,currency,order_total,"
          "discount_amount,item_count,category,order_status,device,promo_code")
GOOD = "SO-1,2026-03-02T10:00:00+01:00,CRM-1, A@B.com ,07700 900123,eur,10.50,0,1,Books,completed,web,"


def _settings(tmp_path: Path):
    return load_settings({
        "CUSTSEG_DATA_DIR": str(tmp_path),
        "CUSTSEG_LANDING_DIR": str(tmp_path / "landing"),
        "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
    })


def _write_orders(tmp_path: Path, day: dt.date, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "landing" / "shop" / "orders" / f"{day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path):
    s = _settings(tmp_path)
    prepare_warehouse(s)
    return s


def test_bad_rows_are_quarantined_with_reasons(settings, tmp_path: Path) -> None:
    _write_orders(tmp_path, DAY, [
        GOOD,
        "SO-2,31/02/2026 25:00,,x@y.com,,EUR,5.00,0,1,Books,completed,web,",
        "SO-3,2026-03-02T10:00:00Z,,x@y.com,,XXX,5.00,0,1,Books,completed,web,",
        "SO-4,2026-03-02T10:00:00Z,,x@y.com,,EUR,n/a,0,1,Books,completed,web,",
        "SO-5,2026-03-02T10:00:00Z,,x@y.com,,EUR,-3.00,0,1,Books,completed,web,",
        ",2026-03-02T10:00:00Z,,x@y.com,,EUR,3.00,0,1,Books,completed,web,",
        "SO-7,2026-03-09T10:00:00Z,,x@y.com,,EUR,3.00,0,1,Books,completed,web,",
    ])
    [result] = ingest_source(settings, "shop_orders", DAY, "run-1")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (7, 1, 6)
    with connect(settings) as wh:
        reasons = dict(wh.fetchall("select source_line, reason from raw.quarantine order by source_line"))
        loaded = wh.fetchall("select order_id, ordered_at, order_total, _source_line from raw.shop_orders")
    assert reasons == {
        2: "unparseable ordered_at: 31/02/2026 25:00",
        3: "unknown currency: XXX",
        4: "unparseable order_total: n/a",
        5: "order_total below 0: -3.00",
        6: "missing order_id",
        7: "future ordered_at: 2026-03-09T10:00:00Z",
    }
    # timestamps land in UTC
    assert loaded == [("SO-1", dt.datetime(2026, 3, 2, 9, 0), pytest.approx(10.5), 1)]


def test_rerun_replaces_the_partition(settings, tmp_path: Path) -> None:
    _write_orders(tmp_path, DAY, [GOOD])
    ingest_source(settings, "shop_orders", DAY, "run-1")
    _write_orders(tmp_path, DAY, [GOOD, GOOD.replace("SO-1", "SO-9")])
    ingest_source(settings, "shop_orders", DAY, "run-2")
    with connect(settings) as wh:
        rows = wh.fetchall("select order_id, _run_id from raw.shop_orders order by order_id")
        audit = wh.fetchall("select run_id, rows_read from ops.load_audit order by run_id")
    assert rows == [("SO-1", "run-2"), ("SO-9", "run-2")]
    assert audit == [("run-1", 1), ("run-2", 2)]


def test_first_run_catches_up_on_history_and_never_reads_the_future(settings, tmp_path: Path) -> None:
    for offset in range(-2, 2):
        _write_orders(tmp_path, DAY + dt.timedelta(days=offset), [GOOD.replace("SO-1", f"SO-{offset + 10}")])
    results = ingest_source(settings, "shop_orders", DAY, "run-1")
    assert [r.partition_date for r in results] == [DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY]


def test_missing_column_fails_the_task_and_loads_nothing(settings, tmp_path: Path) -> None:
    path = _write_orders(tmp_path, DAY, [GOOD.rsplit(",", 1)[0]], header=HEADER.rsplit(",", 1)[0])
    with pytest.raises(IngestError, match=r"lacks required column\(s\) 'promo_code'") as err:
        ingest_source(settings, "shop_orders", DAY, "run-1")
    assert str(path) in str(err.value)
    with connect(settings) as wh:
        assert wh.fetchall("select count(*) from raw.shop_orders")[0][0] == 0
        assert wh.fetchall("select status from ops.load_audit") == [("failed",)]


def test_a_bad_file_late_in_a_catch_up_rolls_back_its_chunk_only(settings, tmp_path: Path, monkeypatch) -> None:
    """Chunks commit one by one (bounded memory): earlier chunks stay loaded, the rerun resumes."""
    import custseg.steps.ingest

    monkeypatch.setattr(custseg.steps.ingest, "FILES_PER_CHUNK", 2)
    days = [DAY - dt.timedelta(days=n) for n in (4, 3, 2, 1, 0)]
    def order(i: int, day: dt.date) -> str:
        return GOOD.replace("SO-1", f"SO-{i}").replace("2026-03-02T", f"{day}T")

    for i, day in enumerate(days):
        _write_orders(tmp_path, day, [order(i, day)])
    bad = _write_orders(tmp_path, days[2], [GOOD.rsplit(",", 1)[0]], header=HEADER.rsplit(",", 1)[0])
    with pytest.raises(IngestError, match="lacks required column"):
        ingest_source(settings, "shop_orders", DAY, "run-1")
    with connect(settings) as wh:
        loaded = [r[0] for r in wh.fetchall("select order_id from raw.shop_orders order by order_id")]
        audit = wh.fetchall("select partition_date, status from ops.load_audit order by partition_date")
    # chunk 1 (days 0-1) committed; chunk 2 (days 2-3, the bad file and its good neighbour) rolled back
    assert loaded == ["SO-0", "SO-1"]
    assert audit == [(days[0], "success"), (days[1], "success"), (days[2], "failed")]
    # the export is fixed: the rerun loads what is missing and nothing twice
    _write_orders(tmp_path, days[2], [order(2, days[2])])
    results = ingest_source(settings, "shop_orders", DAY, "run-2")
    assert [r.partition_date for r in results] == days[2:]
    with connect(settings) as wh:
        assert [r[0] for r in wh.fetchall("select order_id from raw.shop_orders order by order_id")] == [
            f"SO-{i}" for i in range(5)]
    assert str(bad) in {r[0] for r in _failed_files(settings)}


def _failed_files(settings) -> list[tuple[str]]:
    with connect(settings) as wh:
        return wh.fetchall("select source_file from ops.load_audit where status = 'failed'")


def test_missing_file_is_an_error_naming_it(settings) -> None:
    with pytest.raises(IngestError, match="missing"):
        ingest_source(settings, "shop_orders", DAY, "run-1")


def test_unexpected_columns_are_kept_in_extras(settings, tmp_path: Path) -> None:
    _write_orders(tmp_path, DAY, [GOOD + ",gold"], header=HEADER + ",membership")
    [result] = ingest_source(settings, "shop_orders", DAY, "run-1")
    assert result.extra_columns == ("membership",)
    with connect(settings) as wh:
        assert wh.fetchall("select _extras from raw.shop_orders") == [('{"membership":"gold"}',)]


def test_source_config_errors_name_file_source_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yml"
    cfg.write_text("sources:\n  orders:\n    channel: online_orders\n    format: xlsx\n    path: o/{date}.csv\n")
    with pytest.raises(SourceConfigError, match=r"sources.yml: source 'orders', key 'format': unknown format"):
        load_sources(cfg)
    cfg.write_text("sources:\n  orders:\n    channel: telepathy\n")
    with pytest.raises(SourceConfigError, match="key 'channel': unknown channel 'telepathy'"):
        load_sources(cfg)
    cfg.write_text(
        "sources:\n  orders:\n    channel: online_orders\n    format: csv\n    path: o/{date}.csv\n"
        "    columns:\n      order_id: id\n"
    )
    with pytest.raises(SourceConfigError, match=r"key 'columns\.ordered_at': required column has no mapping"):
        load_sources(cfg)
