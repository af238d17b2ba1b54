"""Bring your own orders: `custseg run --orders PATH --as-of D` on a plain order export.

The split into daily landing files is tested directly (fast): the exact landing rows, the rejects
and meta sidecars, and the accounting (records in the export = rows written + records rejected +
rows after the as-of date). Real DAG runs on DuckDB check the whole path: through Airflow's own
CLI with params, through `custseg run --orders` with CDNOW, and two `custseg run --orders` at once
(the second is refused before it writes anything; the first publishes exactly its own file, with
its malformed records quarantined and counted).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from custseg.catalogue import CHANNELS_BY_TABLE
from custseg.config import PROJECT_DIR, load_settings
from custseg.steps.byo import (
    BYO_COLUMNS,
    ByoError,
    ensure_split,
    normalise_options,
    prepare_byo_orders,
    run_folder_name,
    run_settings,
    split_for_run,
    work_dir_for,
)
from custseg.warehouse import connect
from tests.conftest import airflow_env, run_cli, warehouse_env

EXAMPLE = PROJECT_DIR / "docs" / "examples" / "orders.csv"
CDNOW = PROJECT_DIR / "tests" / "fixtures" / "cdnow" / "CDNOW_sample.txt"
AS_OF = dt.date(2026, 6, 30)
DEFAULTS = normalise_options({})
HEAD = "order_id,customer,order_date,amount\n"
UTF8_HINT = "not valid UTF-8; if the file is Latin-1 or Windows-1252 pass --encoding cp1252"


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def split(tmp_path: Path):
    """Split bytes as an export; returns (info, {day: [row dicts]}, [reject dicts], meta of the as-of file)."""

    def run(content: bytes, as_of_date: dt.date = AS_OF, name: str = "orders.csv", **options: object):
        path = tmp_path / name
        path.write_bytes(content)
        info = prepare_byo_orders(path, as_of_date, tmp_path / "work", normalise_options(options))
        return (info, *read_split(tmp_path / "work", as_of_date))

    return run


def read_split(work_dir: Path, as_of_date: dt.date) -> tuple[dict[str, list[dict]], list[dict], dict]:
    orders = work_dir / "landing" / "shop" / "orders"
    rows = {}
    for path in sorted(orders.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == BYO_COLUMNS
            rows[path.stem] = list(reader)
    rejects = [json.loads(line) for path in sorted(orders.glob("*.rejects.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines()]
    meta = json.loads((orders / f"{as_of_date.isoformat()}.csv.meta.json").read_text(encoding="utf-8"))
    return rows, rejects, meta


def written(rows: dict[str, list[dict]]) -> dict[str, str]:
    """export_line -> 'order_id customer day' of every written row."""
    return {r["export_line"]: f"{r['order_id']} {r['customer_ref']} {day}" for day, rs in rows.items() for r in rs}


def assert_accounted(info: dict, rows: dict, rejects: list, meta: dict, records: int) -> None:
    """Every record of the export is written, rejected or counted after the as-of date, exactly once."""
    n_written = sum(len(r) for r in rows.values())
    assert (info["records"], info["rows"], info["rejected"], info["after_as_of"]) == (
        records, n_written, len(rejects), meta["rows_after_as_of"])
    assert n_written + len(rejects) + meta["rows_after_as_of"] == records
    lines = [int(line) for line in written(rows)] + [r["line"] for r in rejects]
    assert len(lines) == len(set(lines))  # no record twice


# -- the split -----------------------------------------------------------------------------------------


def test_example_file_is_split_by_order_date_up_to_as_of(tmp_path: Path) -> None:
    info = prepare_byo_orders(EXAMPLE, AS_OF, tmp_path, DEFAULTS)
    rows, rejects, meta = read_split(tmp_path, AS_OF)
    # 13 records: one after the as-of date is counted, not written; the unparseable date goes with
    # its raw value to the export's earliest day, where ingestion quarantines it with a reason
    assert (info["records"], info["rows"], info["after_as_of"], info["rejected"]) == (13, 12, 1, 0)
    assert meta == {"rows_after_as_of": 1} and rejects == []
    assert sorted(rows)[0] == "2026-01-05" and sorted(rows)[-1] == "2026-06-30" and len(rows) == 12
    assert "2026-07-01" not in rows and rows["2026-06-30"] == []  # the as-of day's file exists, quiet
    assert [r["order_ts"] for r in rows["2026-01-05"]] == ["2026-01-05T00:00:00Z", "not a date"]
    assert rows["2026-01-05"][1]["export_line"] == "12" and rows["2026-01-06"][0]["store_id"] == "Berlin"
    assert info["columns"]["customer"] == "customer" and info["columns"]["ordered_at"] == "order_date"
    assert_accounted(info, rows, rejects, meta, 13)


def test_cdnow_whitespace_file_without_header(tmp_path: Path) -> None:
    options = normalise_options({"delimiter": "whitespace", "date_format": "%Y%m%d", "currency": "USD",
                                 "names": ["customer", "sample_id", "date", "cds", "dollars"]})
    info = prepare_byo_orders(CDNOW, dt.date(1997, 9, 30), tmp_path, options)
    assert (info["records"], info["rows"], info["after_as_of"]) == (6919, 4960, 1959)
    first = (tmp_path / "landing" / "shop" / "orders" / "1997-01-01.csv").read_text().splitlines()[1]
    assert first == "L000000001,1997-01-01T00:00:00Z,00004,,,USD,29.33,,2,,completed,web,,1"


def test_missing_required_column_names_the_flag(tmp_path: Path) -> None:
    bad = tmp_path / "o.csv"
    bad.write_text("id,when,total\n1,2026-01-01,5\n")
    with pytest.raises(ByoError, match=r"no column for customer; name it with --customer"):
        prepare_byo_orders(bad, AS_OF, tmp_path / "w", DEFAULTS)
    assert not (tmp_path / "w").exists()


def test_split_is_reused_for_a_range_and_bad_dates_always_go_to_the_same_partition(tmp_path: Path) -> None:
    first = ensure_split(EXAMPLE, dt.date(2026, 6, 29), tmp_path, DEFAULTS)
    again = ensure_split(EXAMPLE, dt.date(2026, 6, 20), tmp_path, DEFAULTS)  # covered: nothing rewritten
    later = ensure_split(EXAMPLE, AS_OF, tmp_path, DEFAULTS)  # a later date: split again
    assert (first["reused"], again["reused"], later["reused"]) == (False, True, False)
    assert first["rows"] == later["rows"] == 12
    # the unparseable row's partition is the export's earliest day, whatever the run's date, so a
    # range or a later run never reads (and quarantines) it a second time
    assert first["reject_day"] == later["reject_day"] == "2026-01-05"
    other = tmp_path / "other"
    assert ensure_split(EXAMPLE, dt.date(2026, 3, 1), other, DEFAULTS)["reject_day"] == "2026-01-05"
    # other options are another split
    assert ensure_split(EXAMPLE, AS_OF, tmp_path, normalise_options({"currency": "usd"}))["reused"] is False


def test_options_are_checked_and_each_run_has_its_own_split_folder(tmp_path: Path) -> None:
    with pytest.raises(ByoError, match=r"unknown key\(s\) delimeter"):
        normalise_options({"delimeter": ";"})
    with pytest.raises(ByoError, match=r"unknown column field\(s\) client"):
        normalise_options({"columns": {"client": "c"}})
    assert normalise_options({"currency": "usd"})["reporting_currency"] == "USD"
    assert normalise_options({"currency": "usd", "reporting_currency": "eur"})["reporting_currency"] == "EUR"
    assert normalise_options(normalise_options({"delimiter": "\\t", "names": "a,b"})) == normalise_options(
        {"delimiter": "\t", "names": ["a", "b"]})
    settings = load_settings({"CUSTSEG_DATA_DIR": str(tmp_path)})
    assert run_settings(settings, {"orders": None}, "r1") is settings
    run_id = "manual__2026-06-30T00:00:00+00:00"
    byo_run = run_settings(settings, {"orders": "orders.csv"}, run_id)
    work_dir = tmp_path / "byo" / run_folder_name(run_id)
    assert (byo_run.landing_dir, byo_run.sources_file) == (work_dir / "landing", work_dir / "sources.yml")
    assert byo_run.duckdb_path == settings.duckdb_path
    # one folder per run id, never shared, and a run id cannot climb out of byo/
    names = {run_folder_name(r) for r in (run_id, "manual__2026-06-30T00_00_00_00_00", "../../etc", "a/b", "a_b")}
    assert len(names) == 5 and all("/" not in n and not n.startswith(".") for n in names)
    assert work_dir_for(settings, "x", tmp_path / "mine") == tmp_path / "mine"
    (tmp_path / "mine" / "landing").mkdir(parents=True)  # someone else's folder: never replaced
    with pytest.raises(ByoError, match=r"already holds a landing folder that is not an order export's split"):
        ensure_split(EXAMPLE, AS_OF, tmp_path / "mine", DEFAULTS)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["landing"]
    info = split_for_run(settings, {"orders": str(EXAMPLE)}, AS_OF, run_id)
    assert info is not None and info["landing_dir"] == str(work_dir / "landing")
    assert sorted(p.name for p in (tmp_path / "byo").iterdir()) == [run_folder_name(run_id)]


# -- row-level tolerance: a malformed record is rejected alone, with its line and reason ---------------------


def test_short_and_long_rows_are_rejected_with_their_line_and_the_rest_loads(split) -> None:
    info, rows, rejects, meta = split(HEAD.encode() + b"A1,C1,2026-01-05,10\nA2,C2,2026-01-06\n"
                                      b"A3,C3,2026-01-06,1,extra\nA4,C4,2026-01-07,5\n")
    assert written(rows) == {"1": "A1 C1 2026-01-05", "4": "A4 C4 2026-01-07"}
    assert [(r["line"], r["raw_record"], r["reason"]) for r in rejects] == [
        (2, "A2,C2,2026-01-06", "expected 4 fields, found 3"),
        (3, "A3,C3,2026-01-06,1,extra", "expected 4 fields, found 5")]
    # rejects go to the export's earliest day, with the export's absolute path
    assert info["reject_day"] == "2026-01-05" and {r["source_file"] for r in rejects} == {info["source_file"]}
    assert_accounted(info, rows, rejects, meta, 4)


def test_a_long_last_row_is_never_read_as_the_header(split) -> None:
    info, rows, rejects, _ = split(HEAD.encode() + b"A1,C1,2026-01-05,10\nA2,C2,2026-01-06,5,x,y,z\n")
    assert info["columns"]["customer"] == "customer"
    assert written(rows) == {"1": "A1 C1 2026-01-05"}
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "expected 4 fields, found 7")]


@pytest.mark.parametrize(("encoding", "content", "customer"), [
    ("latin-1", "A1,Zoë Müller,2026-01-05,10\n".encode("latin-1"), "Zoë Müller"),
    ("cp1252", b"A1,\x93Caf\xe9\x94 \x80,2026-01-05,10\n", "“Café” €"),
    ("utf-8", "A1,Zoë,2026-01-05,10\n".encode("utf-8-sig"), "Zoë"),  # Excel's BOM
])
def test_latin1_cp1252_and_bom_files_are_transcoded_to_utf8(split, encoding, content, customer) -> None:
    head = HEAD.encode(encoding if encoding != "utf-8" else "utf-8-sig")
    body = content.removeprefix(b"\xef\xbb\xbf")
    info, rows, rejects, _ = split(head + body, encoding=encoding)
    assert rejects == [] and rows["2026-01-05"][0]["customer_ref"] == customer
    assert info["columns"]["order_id"] == "order_id"  # a BOM does not stick to the first column's name


def test_an_invalid_utf8_line_or_a_nul_byte_rejects_that_record_only(split) -> None:
    info, rows, rejects, meta = split(HEAD.encode() + b"A1,C\xe91,2026-01-05,10\nA2,C2,2026-01-05,1\x002\n"
                                      b"A3,C3,2026-01-05,3\n")
    assert written(rows) == {"3": "A3 C3 2026-01-05"}
    assert [(r["line"], r["raw_record"], r["reason"]) for r in rejects] == [
        (1, "A1,C\ufffd1,2026-01-05,10", UTF8_HINT),
        (2, "A2,C2,2026-01-05,1\ufffd2", "contains a NUL byte (binary data in a text export)")]
    assert_accounted(info, rows, rejects, meta, 3)


def test_a_stray_quote_rejects_its_line_and_the_following_lines_still_load(split) -> None:
    info, rows, rejects, meta = split(HEAD.encode() + b'A1,"C1,2026-01-05,10\nA2,C2,2026-01-05,2\n'
                                      b'A3,"multi\nline",2026-01-06,3\n')
    # a quoted field with a line break is fine when the record has the header's fields
    assert written(rows) == {"2": "A2 C2 2026-01-05", "3": "A3 multi\nline 2026-01-06"}
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (1, "unclosed quote: expected 4 fields, found 2 over 3 lines")]
    assert_accounted(info, rows, rejects, meta, 3)


def test_crlf_and_cr_only_line_endings_and_blank_lines(split) -> None:
    for newline in (b"\r\n", b"\r"):
        content = newline.join([HEAD.strip().encode(), b"A1,C1,2026-01-05,10", b"", b"A2,C2,2026-01-06,2", b""])
        _, rows, rejects, _ = split(content)
        assert written(rows) == {"1": "A1 C1 2026-01-05", "3": "A2 C2 2026-01-06"} and rejects == [], newline


def test_delimiters_and_a_file_without_header(split) -> None:
    _, rows, _, _ = split(b"A1;C1;2026-01-05;10,50\n", names="order_id,customer,order_date,amount", delimiter=";")
    assert rows["2026-01-05"][0]["order_total"] == "10,50"  # the amount's text goes to ingestion as is
    _, rows, _, _ = split(HEAD.replace(",", "|").encode() + b"A1|C1|2026-01-05|10\n", delimiter="|")
    assert written(rows) == {"1": "A1 C1 2026-01-05"}
    _, rows, _, _ = split(HEAD.replace(",", "\t").encode() + b"A1\tC1\t05.01.2026\t10\n", delimiter="\\t",
                          date_format="%d.%m.%Y")
    assert written(rows) == {"1": "A1 C1 2026-01-05"}


def test_timestamps_with_zones_are_dated_in_utc(split) -> None:
    _, rows, _, _ = split(HEAD.encode() + b"A1,C1,2026-01-05T23:30:00-02:00,10\nA2,C2,20260106,1\n"
                          b"A3,C3,2026/01/07,1\n")
    assert [r["order_ts"] for day in rows.values() for r in day] == [
        "2026-01-06T01:30:00Z", "2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z"]


# -- nothing lost silently: conflicts, duplicates, missing customers, rows after the as-of date -------------


def test_conflicting_order_ids_are_quarantined_whole_and_exact_duplicates_keep_the_first(split) -> None:
    info, rows, rejects, meta = split(HEAD.encode() + b"A1,C1,2026-01-05,10\nA2,C2,2026-01-05,5\n"
                                      b"A1,C9,2026-03-01,10\nA2,C2,2026-01-05,5\nA2,C2,2026-01-05,5\n"
                                      b"A3,C3,2026-02-01,7\nA1,C1,2026-01-05,10\n,C4,2026-02-02,1\n,C4,2026-02-02,1\n")
    # A1 on three records (two identical): a conflict, all three rejected; A2 three times the same:
    # the first kept; records without an order id get one from their line, so they never collide
    assert written(rows) == {"2": "A2 C2 2026-01-05", "6": "A3 C3 2026-02-01", "8": "L000000008 C4 2026-02-02",
                             "9": "L000000009 C4 2026-02-02"}
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (1, "conflicting order_id A1: also on record(s) 3, 7"),
        (3, "conflicting order_id A1: also on record(s) 1, 7"),
        (4, "duplicate of record 2"),
        (5, "duplicate of record 2"),
        (7, "conflicting order_id A1: also on record(s) 1, 3")]
    assert_accounted(info, rows, rejects, meta, 9)


def test_missing_customers_are_rejected_and_rows_after_as_of_are_counted(split) -> None:
    info, rows, rejects, meta = split(HEAD.encode() + b"A1,,2026-01-05,10\nA2,  ,2026-01-05,1\nA3,C3,2026-07-01,1\n"
                                      b"A4,C4,2026-06-30T23:59:59Z,1\nA5,,2027-01-01,1\nA6,C6,,1\n")
    # an empty date goes to the export's earliest day (counting every record's date), ingestion says why
    assert written(rows) == {"4": "A4 C4 2026-06-30", "6": "A6 C6 2026-01-05"}
    assert [(r["line"], r["reason"]) for r in rejects] == [(1, "missing customer"), (2, "missing customer")]
    assert meta == {"rows_after_as_of": 2}
    assert_accounted(info, rows, rejects, meta, 6)


def test_a_repeated_id_after_the_as_of_date_is_not_a_conflict_yet(split) -> None:
    # nothing after the as-of date reaches any computation, not even a quarantine decision
    _, rows, rejects, meta = split(HEAD.encode() + b"A1,C1,2026-01-05,10\nA1,C2,2026-07-05,10\n")
    assert written(rows) == {"1": "A1 C1 2026-01-05"} and rejects == [] and meta == {"rows_after_as_of": 1}


def test_the_reject_partition_is_the_as_of_date_when_all_rows_are_later(split) -> None:
    info, rows, rejects, meta = split(HEAD.encode() + b"A1,C1,2026-08-05,10\nA2,C2\n")
    assert info["reject_day"] == AS_OF.isoformat() and rows == {AS_OF.isoformat(): []}
    assert [r["reason"] for r in rejects] == ["expected 4 fields, found 2"] and meta == {"rows_after_as_of": 1}


def test_a_header_only_file_splits_into_a_quiet_day(split) -> None:
    # an empty export is not unreadable: the run's degenerate-night check fails it with its message
    info, rows, rejects, meta = split(HEAD.encode())
    assert (info["records"], rows, rejects, meta) == (0, {AS_OF.isoformat(): []}, [], {"rows_after_as_of": 0})


# -- only an unreadable file fails as a whole: one line naming the file and the fix ---------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("orders.csv", HEAD)
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "message"), [
    (b"", r"is empty \(no header line\); export the orders with a header line"),
    (b"\n\n  \n", r"is empty \(no header line\)"),
    (gzip.compress(HEAD.encode()), r"is gzip-compressed data, not a CSV text file; decompress it first"),
    (_zip(), r"is a ZIP archive or an Excel .xlsx workbook, not a CSV text file; extract the CSV"),
    (b"PAR1\x15\x04" + b"\x00" * 50, r"is a Parquet file, not a CSV text file"),
    (HEAD.encode("utf-16"), r"is UTF-16 text, not a CSV text file; re-export it as UTF-8"),
    (b"\x00\x01\x02\x03" * 100, r"holds binary data \(NUL bytes\), not CSV text"),
    ("ordér_id,customer\n".encode("latin-1"), r"has an unreadable header line; not valid UTF-8; .*--encoding cp1252"),
    (b"id,when,total\n1,2026-01-01,5\n", r"no column for customer; name it with --customer COLUMN"),
], ids=["empty", "blank-lines", "gzip", "zip-xlsx", "parquet", "utf-16", "binary", "latin1-header", "no-customer"])
def test_unreadable_files_fail_whole_in_one_line_and_write_nothing(tmp_path: Path, content: bytes,
                                                                    message: str) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    with pytest.raises(ByoError, match=message) as caught:
        ensure_split(path, AS_OF, tmp_path / "work", DEFAULTS)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "work").exists()


def test_a_directory_a_missing_file_and_unknown_encodings_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ByoError, match=r"is a directory; pass the export file itself"):
        ensure_split(tmp_path, AS_OF, tmp_path / "work", DEFAULTS)
    with pytest.raises(ByoError, match=r"does not exist; check the path"):
        ensure_split(tmp_path / "nope.csv", AS_OF, tmp_path / "work", DEFAULTS)
    with pytest.raises(ByoError, match=r"encoding: 'klingon' is not a usable encoding; use e.g. utf-8, latin-1"):
        normalise_options({"encoding": "klingon"})
    for not_ascii_compatible in ("utf-16", "utf-32", "rot13", "base64"):
        with pytest.raises(ByoError, match=r"orders option encoding"):
            normalise_options({"encoding": not_ascii_compatible})
    assert normalise_options({"encoding": "Latin-1"})["encoding"] == "iso8859-1"
    assert normalise_options({"encoding": "utf-8-sig"})["encoding"] == "utf-8"
    assert not (tmp_path / "work").exists()


# -- end to end -------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_dag_params_run_the_orders_end_to_end(airflow_home, session_dir: Path) -> None:
    """The same path through the DAG's params, triggered by Airflow's own CLI (what a scheduler user does).

    (`custseg run --orders` passes these params plus its own orders_work_dir; the CDNOW test goes
    through it.) Without orders_work_dir, the run splits into <data>/byo/<its run id>.
    """
    data_dir = session_dir / "byo_run"
    # the example holds 2 bad rows of 12 on purpose: above the default 5% quarantine gate
    env = {**warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb"),
           "CUSTSEG_MAX_QUARANTINE_SHARE": "0.25"}
    conf = {"orders": str(EXAMPLE), "orders_options": {"columns": {"customer": "customer"}, "currency": "EUR"}}
    result = run_cli(["dags", "test", "customer_segmentation", AS_OF.isoformat(), "--conf", json.dumps(conf)],
                     env, airflow_home, program="airflow")
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    with connect(load_settings(env)) as wh:
        skipped = dict(wh.fetchall("select source, error from ops.load_audit where status = 'skipped'"))
        published = wh.fetchall("select count(*) from ops.run_audit where task_id = 'publish' and status = 'success'")
        run_id = wh.fetchall("select distinct run_id from ops.run_audit")
    # only the export is declared in this run: every other channel of the catalogue records a skipped load
    assert set(skipped) == set(CHANNELS_BY_TABLE) - {"shop_orders"}
    assert all("bring-your-own-orders run" in reason for reason in skipped.values())
    assert published[0][0] == 1, tail
    assert len(run_id) == 1
    split_dir = data_dir / "byo" / run_folder_name(run_id[0][0])
    assert (split_dir / "landing" / "shop" / "orders" / "2026-06-30.csv").exists()
    assert [p.name for p in (data_dir / "byo").iterdir()] == [split_dir.name]
    with connect(load_settings(env)) as wh:
        segments = wh.query_df("select * from analytics.customer_segments order by customer_id")
        quarantine = dict(wh.fetchall("select raw_record, reason from raw.quarantine"))
        customers = wh.fetchall("select count(distinct customer_ref) from raw.shop_orders")[0][0]
        latest = wh.fetchall("select max(ordered_at) from raw.shop_orders")[0][0]
    # C-1..C-7 appear; C-6's only order is negative and C-7's date unparseable: both quarantined
    assert customers == 5
    assert len(segments) == 5 and segments["customer_id"].is_unique
    assert sorted(quarantine.values()) == ["order_total below 0: -5.00", "unparseable ordered_at: not a date"]
    # the order dated after --as-of (2026-07-01, 75.00) was ignored everywhere
    assert latest < dt.datetime(2026, 7, 1)
    assert sorted(segments["monetary"].astype(float).round(2))[-1] == pytest.approx(49.90 + 120.00 + 22.10)
    # every order names its customer by the export's key: none of them is a guest
    assert not segments["is_guest"].astype(bool).any()


@pytest.mark.e2e
def test_cdnow_through_the_orders_entry_point_reproduces_published_clv(airflow_home, session_dir: Path) -> None:
    """The real pipeline path on real data: CDNOW as of 1997-09-30 through `custseg run --orders`.

    The registered CLV parameters must reproduce Fader, Hardie & Lee (2005) and Fader & Hardie
    (2013) to two significant digits: same-day purchases counted once, weeks, amounts in USD
    (the run reports in the export's own currency, so Gamma-Gamma's scale parameter is in dollars).
    """
    from tests.test_ml_clv import PUBLISHED, _same_to_two_significant_digits

    data_dir = session_dir / "byo_cdnow"
    env = warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb")
    as_of_date = dt.date(1997, 9, 30)
    result = run_cli(["run", "--orders", str(CDNOW), "--as-of", as_of_date.isoformat(), "--delimiter", "whitespace",
                      "--names", "customer,sample_id,order_date,cds,amount", "--date-format", "%Y%m%d",
                      "--items", "cds", "--currency", "USD"], env, airflow_home)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert f"as of {as_of_date}: success" in result.stdout, tail
    assert "4,960 rows up to 1997-09-30" in result.stdout and "1,959 rows after 1997-09-30 not loaded" in result.stdout
    with connect(load_settings(env)) as wh:
        runs = wh.query_df("select params, metrics, training_window_start, training_window_end, status "
                           "from ml.model_runs")
        segments = wh.fetchall("select count(*), count(distinct customer_id), max(as_of_date), "
                               "sum(monetary) from analytics.customer_segments")[0]
        raw_sum = wh.fetchall("select sum(cast(order_total as double)) from raw.shop_orders")[0][0]
        guests = wh.fetchall("select count(*) from analytics.customer_segments where is_guest")[0][0]
    assert len(runs) == 1 and runs["status"][0] == "approved"
    assert (runs["training_window_start"][0].date(), runs["training_window_end"][0].date()) == (
        dt.date(1997, 1, 1), as_of_date)
    params, metrics = (json.loads(v) if isinstance(v, str) else v for v in (runs["params"][0], runs["metrics"][0]))
    assert params["clv_time_unit"] == "weeks"
    for name, expected in PUBLISHED.items():
        assert _same_to_two_significant_digits(params["clv"][name], expected), (name, params["clv"][name])
    # every CDNOW customer bought in 1997 Q1, so all 2,357 are scored as of 1997-09-30, and their
    # lifetime revenue is the export's dollars up to that date, unconverted
    assert segments[:3] == (2357, 2357, as_of_date)
    assert float(segments[3]) == pytest.approx(raw_sum, abs=0.01)
    # each CDNOW row names its customer by the export's key: none of them is a guest
    assert guests == 0
    # the same run measured churn against both baselines on the same customers
    assert metrics["churn"]["n_customers"] == 2357
    assert set(metrics["churn_baselines"]) == {"recency_days", "bgnbd_expected_purchases"}


#: The malformed records both files of the concurrent-run test carry (after their 300 good rows).
MALFORMED = [
    ("{p}-9001,{p}C-1,2026-03-01", "expected 4 fields, found 3"),
    ("{p}-9002,{p}C-\xe9,2026-03-01,5", UTF8_HINT),  # written as Latin-1 bytes in a UTF-8 file
    ("{p}-9003,{p}C-2,2026-03-02,10", "conflicting order_id {p}-9003: also on record(s) {n4}"),
    ("{p}-9003,{p}C-3,2026-04-02,12", "conflicting order_id {p}-9003: also on record(s) {n3}"),
    ("{p}-0001,{p}C-1,2026-01-01,10.00", "duplicate of record 1"),
    ("{p}-9004,,2026-03-03,10", "missing customer"),
    ("{p}-9005,{p}C-4,2026-07-03,10", None),  # after the as-of date: counted, not loaded
]


def _export(path: Path, prefix: str) -> tuple[dict[str, float], int]:
    """300 good orders of 100 customers plus MALFORMED; returns the expected revenue per customer."""
    lines, revenue = [HEAD.strip()], {}
    for i in range(300):
        customer, day = f"{prefix}C-{i % 100 + 1}", dt.date(2026, 1, 1) + dt.timedelta(days=i % 180)
        amount = 10 + (i % 7)
        lines.append(f"{prefix}-{i + 1:04d},{customer},{day.isoformat()},{amount:.2f}")
        revenue[customer] = revenue.get(customer, 0) + amount
    n = len(lines)
    lines += [text.format(p=prefix) for text, _ in MALFORMED]
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    return revenue, n


@pytest.mark.e2e
def test_two_runs_at_once_the_second_is_refused_and_the_first_publishes_its_own_file(
        airflow_home, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb"),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    exports = {p: tmp_path / f"{p}.csv" for p in ("A", "B")}
    expected = {p: _export(path, p) for p, path in exports.items()}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTSEG_", "AIRFLOW_CONN_"))}
    full_env.update({**airflow_env(airflow_home), **env})
    exe = str(Path(sys.executable).with_name("custseg"))
    procs = {p: subprocess.Popen([exe, "run", "--orders", str(path), "--as-of", AS_OF.isoformat()], env=full_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p, path in exports.items()}
    out = {p: proc.communicate(timeout=900) for p, proc in procs.items()}
    codes = {p: proc.returncode for p, proc in procs.items()}
    winners = [p for p, code in codes.items() if code == 0]
    assert len(winners) == 1, (codes, {p: o[1][-3000:] for p, o in out.items()})
    won, lost = winners[0], "B" if winners[0] == "A" else "A"
    stderr = out[lost][1].strip().splitlines()
    assert codes[lost] != 0 and len(stderr) == 1, out[lost]
    assert "another customer_segmentation run holds" in stderr[0] and "not starting" in stderr[0]
    assert "split in" not in out[lost][0]  # refused before it split anything
    # the refused run wrote nothing: one split folder, the winner's, holding the winner's file only
    folders = list((data_dir / "byo").iterdir())
    assert len(folders) == 1 and str(exports[won]) in (folders[0] / "split.json").read_text()
    revenue, first_malformed = expected[won]
    with connect(load_settings(env)) as wh:
        published = dict(wh.fetchall("select source_customer_ref, customer_id from analytics.customer_identity "
                                     "where source = 'crm'"))
        monetary = dict(wh.fetchall("select customer_id, monetary from analytics.customer_segments"))
        quarantine = wh.fetchall("select source_file, source_line, reason from raw.quarantine order by source_line")
        audit = wh.fetchall("select sum(rows_read), sum(rows_loaded), sum(rows_quarantined), "
                            "sum(rows_after_as_of) from ops.load_audit where source = 'shop_orders'")[0]
        runs = wh.fetchall("select count(distinct run_id) from ops.run_audit")[0][0]
    assert runs == 1
    assert len(published) == len(monetary) == len(revenue)
    assert sorted(round(float(v), 2) for v in monetary.values()) == sorted(round(v, 2) for v in revenue.values())
    # every malformed record quarantined once, with its line in the export and its reason
    n = {"n3": first_malformed + 2, "n4": first_malformed + 3}
    want = [(str(exports[won].resolve()), first_malformed + i, reason.format(p=won, **n))
            for i, (_, reason) in enumerate(MALFORMED) if reason]
    assert [(f, int(line), r) for f, line, r in quarantine] == want
    # the books balance: read = loaded + quarantined, and the row after --as-of is counted
    read, loaded, quarantined, after = (int(v or 0) for v in audit)
    assert (read, loaded, quarantined, after) == (306, 300, 6, 1)


def test_a_category_column_is_optional_and_found_by_name_or_option(tmp_path: Path) -> None:
    export = tmp_path / "o.csv"
    export.write_text("order_id,customer,order_date,total,department\nA1,c1,2026-06-01,5,Garden\n"
                      "A2,c2,2026-06-02,7,\n")
    auto = prepare_byo_orders(export, AS_OF, tmp_path / "auto", DEFAULTS)
    assert auto["columns"]["category"] == "department"
    rows, _, _ = read_split(tmp_path / "auto", AS_OF)
    assert [r["category"] for r in rows["2026-06-01"] + rows["2026-06-02"]] == ["Garden", ""]
    # named explicitly (a column the defaults would not find), and absent: the field stays empty
    export.write_text("order_id,customer,order_date,total,genre\nA1,c1,2026-06-01,5,Jazz\n")
    named = prepare_byo_orders(export, AS_OF, tmp_path / "named",
                               normalise_options({"columns": {"category": "genre"}}))
    assert read_split(tmp_path / "named", AS_OF)[0]["2026-06-01"][0]["category"] == "Jazz"
    export.write_text("order_id,customer,order_date,total\nA1,c1,2026-06-01,5\n")
    none = prepare_byo_orders(export, AS_OF, tmp_path / "none", DEFAULTS)
    assert none["columns"]["category"] is None and named["columns"]["category"] == "genre"
