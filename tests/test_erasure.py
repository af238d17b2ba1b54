"""GDPR Art. 17 erasure (`custseg erase`, custseg/erasure.py) through the real CLI on both warehouses.

DuckDB: a copy of the session's end-to-end warehouse; a person is erased by CRM id, then an earlier date and
the last date are run again from the landing files (which still hold them). PostgreSQL: one night of its own,
a person erased by e-mail. Each time every table of every schema is scanned for the person's ids, raw key
values and keyed hashes, the other customers' published rows are compared with before, and an audience file
written before the erasure is checked.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import shutil
import zlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from custseg.config import load_settings
from custseg.erasure import EXTRA_KEY_COLUMNS, key_columns
from custseg.hashing import keyed_hash
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import qualified, quote_ident
from tests.conftest import E2E_END, run_cli, run_nightly, warehouse_env

SCHEMAS = ("raw", "analytics_build", "analytics", "ml", "ops")
TEXT = ("varchar", "text", "character varying")
#: holds the erased person's keyed hashes by design (that is how ingestion keeps them out); scanned for raw values
SUPPRESSION_TABLE = ("raw", "erasure_suppression")


# -- the person ---------------------------------------------------------------------------------------------
def _person(wh: Warehouse, crm_id: str, hash_key: str) -> dict[str, set[str]]:
    """What must disappear: the person's customer ids, raw key values (as their CRM records hold them) and
    keyed hashes, found independently of custseg.erasure."""
    ids = {r[0] for r in wh.fetchall("select customer_id from raw.identity_map where key_type = 'crm_id' "
                                     "and key_value = %s", (crm_id,))}
    assert len(ids) == 1
    keys = wh.fetchall("select key_type, key_value from raw.identity_map where customer_id = %s", (next(iter(ids)),))
    raw_values = {crm_id}
    for email, phone, card, platform, handle in wh.fetchall(
            "select email, phone, loyalty_card, social_platform, social_handle from raw.crm_customers "
            "where trim(crm_customer_id) = %s", (crm_id,)):
        raw_values |= {v.strip() for v in (email, phone, card, handle) if v and v.strip()}
        if platform and handle:
            raw_values.add(f"{platform.strip().lower()}:{handle.strip().lstrip('@').lower()}")
    hashes = set()
    for key_type, value in keys:
        if key_type == "customer_id":
            ids.add(value)
        elif key_type in ("email", "phone"):
            hashes |= {value, keyed_hash(hash_key, f"customer:{key_type}", value)}
        elif key_type == "crm_id":
            hashes |= {keyed_hash(hash_key, "customer:crm", value), keyed_hash(hash_key, "ref:crm", value)}
        elif key_type == "loyalty_card":
            raw_values.add(value)
            hashes |= {keyed_hash(hash_key, "customer:card", value), keyed_hash(hash_key, "ref:card", value)}
    for value in list(raw_values):
        if value.count(":") == 1 and "@" not in value:
            hashes.add(keyed_hash(hash_key, "social", value))
    return {"ids": ids, "raw": {v for v in raw_values if len(v) >= 4}, "hashes": hashes}


def _boundary(values: set[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9._%+-])(?:" + "|".join(map(re.escape, sorted(values, key=len, reverse=True)))
                      + r")(?![A-Za-z0-9]|\.[A-Za-z0-9])", re.IGNORECASE)


def _tables(wh: Warehouse) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for schema, table, column, dtype in wh.fetchall(
            "select c.table_schema, c.table_name, c.column_name, c.data_type from information_schema.columns as c "
            "inner join information_schema.tables as t on t.table_schema = c.table_schema and "
            "t.table_name = c.table_name where t.table_type = 'BASE TABLE' and c.table_schema in "
            f"({', '.join(['%s'] * len(SCHEMAS))}) order by 1, 2, c.ordinal_position", SCHEMAS):
        columns = out.setdefault((schema, table), [])
        if str(dtype).lower() in TEXT:
            columns.append(column)
    return out


def scan(wh: Warehouse, person: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """Every text column of every base table of every schema: (tables checked, hits "table.column: value")."""
    everything = person["ids"] | person["raw"] | person["hashes"]
    checked, hits = [], []
    for (schema, table), columns in _tables(wh).items():
        checked.append(f"{schema}.{table}")
        needles = person["raw"] if (schema, table) == SUPPRESSION_TABLE else everything
        pattern = _boundary(needles)
        lowered = sorted({n.lower() for n in needles})
        for column in columns:
            found = " or ".join(["strpos(lower(" + quote_ident(column) + "), %s) > 0"] * len(lowered))
            for (value,) in wh.fetchall(f"select {quote_ident(column)} from {qualified(schema, table)} "
                                        f"where {found}", lowered):
                if pattern.search(value):
                    hits.append(f"{schema}.{table}.{column}: {pattern.search(value).group(0)}")
    # the model bundles (joblib, zlib-compressed) hold no per-customer rows
    for version, content in wh.fetchall("select model_version, content from ml.model_artifacts"):
        unpacked = zlib.decompress(bytes(content)).decode("latin-1")
        hits += [f"ml.model_artifacts {version}" for value in everything if value in unpacked]
    return checked, hits


def _latest_day_with_rows(wh: Warehouse, person: dict[str, set[str]], before: dt.date) -> dt.date:
    """The latest landing date before `before` with a raw row of the person (a rerun of it reads them again)."""
    values = sorted({v.lower() for v in person["raw"]})
    marks = ", ".join(["%s"] * len(values))
    days = []
    for table, columns in (("email_events", ("email",)), ("shop_orders", ("customer_ref", "customer_email")),
                           ("web_sessions", ("crm_customer_id", "user_email")), ("pos_sales", ("loyalty_card",)),
                           ("support_tickets", ("customer_email",))):
        cond = " or ".join(f"lower(trim({c})) in ({marks})" for c in columns)
        if table == "pos_sales":
            cond += f" or lower(regexp_replace(loyalty_card, '[^A-Za-z0-9]', '', 'g')) in ({marks})"
        params = values * (len(columns) + (table == "pos_sales"))
        days += [r[0] for r in wh.fetchall(f"select max(_partition_date) from raw.{table} "
                                           f"where _partition_date < %s and ({cond})", (before, *params)) if r[0]]
    assert days, "the person has no rows before the last date"
    return max(days)


def _published_with_customers(wh: Warehouse) -> list[str]:
    return sorted(t for (s, t), cols in _tables(wh).items() if s == "analytics" and "customer_id" in cols)


def _others(wh: Warehouse, table: str, ids: set[str]) -> pd.DataFrame:
    frame = wh.query_df(f"select * from analytics.{quote_ident(table)}")
    frame = frame[~frame["customer_id"].isin(ids)].astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _export(env: dict[str, str], home: Path, audience: str, to: Path, fmt: str) -> tuple[Path, Path]:
    result = run_cli(["export", "--audience", audience, "--channel", "ads", "--format", fmt, "--to", str(to)],
                     env, home)
    assert result.returncode == 0, result.stderr
    [manifest] = sorted(to.glob(f"*.{fmt}.manifest.json"))
    return manifest.with_name(manifest.name.removesuffix(".manifest.json")), manifest


def _file_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".parquet":
        return [{k: str(v) for k, v in row.items()} for row in pq.read_table(path).to_pylist()]
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pick(wh: Warehouse, exported: list[dict[str, str]]) -> str:
    """A CRM customer of the audience file with an e-mail and purchases (in customer_alerts if one is)."""
    crm_ids = sorted({r["crm_customer_id"] for r in exported if r["crm_customer_id"] not in ("", "None")})
    marks = ", ".join(["%s"] * len(crm_ids))
    rows = wh.fetchall(
        "select m.key_value from raw.identity_map as m "
        "inner join analytics.customer_segments as s on s.customer_id = m.customer_id "
        f"where m.key_type = 'crm_id' and m.key_value in ({marks}) and s.frequency > 0 "
        "and exists (select 1 from raw.identity_map as e where e.customer_id = m.customer_id and e.key_type = 'email') "
        "and exists (select 1 from raw.identity_map as p where p.customer_id = m.customer_id and p.key_type = 'phone') "
        "order by (select count(*) from analytics.customer_alerts as a where a.customer_id = s.customer_id) desc, "
        "s.frequency desc, m.key_value", crm_ids)
    assert rows, "no exported customer with an e-mail, a phone and purchases"
    return rows[0][0]


def _erase_and_check(env: dict[str, str], home: Path, args: list[str], crm_id: str, person: dict[str, set[str]],
                     before: dict[str, pd.DataFrame], audience_file: Path, manifest: Path, hidden: str) -> dict:
    result = run_cli(["erase", *args], env, home)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert hidden not in output and crm_id not in output.replace(crm_id + "0", ""), "the person's key was printed"
    settings = load_settings(env)
    with connect(settings) as wh:
        checked, hits = scan(wh, person)
        assert hits == [], hits
        for table, frame in before.items():
            pd.testing.assert_frame_equal(_others(wh, table, person["ids"]), frame, obj=table)
        [(log_id, key_type, customers, rows_deleted, files)] = wh.fetchall(
            "select erasure_id, key_type, customers, rows_deleted, files_rewritten from ops.erasure_log")
        [(row_count, digest)] = wh.fetchall("select row_count, sha256 from ops.audience_exports where file_path = %s",
                                            (str(audience_file.resolve()),))
        suppressed = dict(wh.fetchall("select key_type, count(*) from raw.erasure_suppression group by 1"))
    assert log_id in result.stdout and customers == 1 and files >= 1
    assert key_type == ("crm_id" if "--crm-id" in args else "email")
    deleted = json.loads(rows_deleted)
    for table in ("raw.crm_customers", "raw.identity_map", "analytics.customer_segments",
                  "analytics.customer_identity", "analytics.segment_history", "analytics.campaign_audience"):
        assert deleted.get(table, 0) > 0, (table, deleted)
    assert {"crm_id", "email", "phone"} <= set(suppressed), suppressed
    # the audience file written before: without the person, and its manifest and record match the new file
    rows = _file_rows(audience_file)
    assert not any(r["customer_id"] in person["ids"] or r["crm_customer_id"] == crm_id for r in rows)
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    assert meta["sha256"] == hashlib.sha256(audience_file.read_bytes()).hexdigest() == digest
    assert meta["rows"] == len(rows) == row_count and meta["erasures_applied"] == 1
    return {"checked": checked, "deleted": deleted}


# -- DuckDB: erase by CRM id, then a backfill -----------------------------------------------------------------
def test_erase_by_crm_id_on_duckdb_then_a_backfill_keeps_them_out(e2e_duckdb_env, demo_data, airflow_home,
                                                                  tmp_path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(e2e_duckdb_env["CUSTSEG_DUCKDB_PATH"], data_dir / "warehouse.duckdb")
    env = warehouse_env("duckdb", data_dir, duckdb_path=data_dir / "warehouse.duckdb",
                        landing_dir=demo_data.landing_dir)
    settings = load_settings(env)
    with connect(settings) as wh:  # the campaign with the largest treated side
        [(campaign,)] = wh.fetchall("select campaign_id from analytics.campaign_audience where not is_control "
                                    "group by 1 order by count(*) desc, 1 limit 1")
    audience_file, manifest = _export(env, airflow_home, f"campaign:{campaign}", tmp_path / "exports", "csv")
    with connect(settings) as wh:
        crm_id = _pick(wh, _file_rows(audience_file))
        person = _person(wh, crm_id, settings.hash_key)
        _, hits = scan(wh, person)
        assert hits, "the scan finds the person before the erasure"
        before = {t: _others(wh, t, person["ids"]) for t in _published_with_customers(wh)}
        earlier = _latest_day_with_rows(wh, person, E2E_END)
    assert {"segment_history", "customer_alerts", "campaign_audience", "customer_identity"} <= set(before)

    outcome = _erase_and_check(env, airflow_home, ["--crm-id", crm_id], crm_id, person, before, audience_file,
                               manifest, hidden=crm_id)
    print(f"\nDuckDB erasure: {len(outcome['checked'])} tables checked: {', '.join(outcome['checked'])}")
    again = run_cli(["erase", "--crm-id", crm_id], env, airflow_home)
    assert again.returncode != 0 and "that CRM id was erased already (erasure " in again.stderr, again.stderr

    # a backfill of the latest earlier date whose landing files hold the person's rows: they are read again
    with connect(settings) as wh:
        old_runs = {r[0] for r in wh.fetchall("select distinct run_id from ops.load_audit")}
    run_nightly(env, airflow_home, earlier)
    with connect(settings) as wh:
        checked, hits = scan(wh, person)
        audit = wh.query_df(  # the latest load of each partition: what raw holds now
            "select source, sum(rows_read) as read, sum(rows_loaded) as loaded, sum(rows_quarantined) as quarantined, "
            "sum(coalesce(rows_suppressed, 0)) as suppressed from (select *, row_number() over (partition by source, "
            "partition_date order by recorded_at desc) as load_rank from ops.load_audit where status = 'success') "
            "as loads where load_rank = 1 group by source").set_index("source")
        unaccounted = wh.fetchall("select sum(rows_unaccounted) from ops.source_reconciliation")[0][0]
        reruns = sum(int(n or 0) for run_id, n in wh.fetchall(
            "select run_id, sum(rows_suppressed) from ops.load_audit where status = 'success' group by 1")
            if run_id not in old_runs)
    assert hits == [], hits
    assert (audit["read"] == audit["loaded"] + audit["quarantined"] + audit["suppressed"]).all(), audit
    for source, rows in demo_data.rows.items():  # every row of the landing files, accounted for
        assert audit.loc[source, "read"] == rows, source
    assert reruns > 0, "the reruns read the person's rows from the landing files and suppressed them"
    assert unaccounted == 0
    print(f"after the backfill: {len(checked)} tables checked, rows suppressed by the reruns: {reruns}")


# -- PostgreSQL: erase by e-mail ------------------------------------------------------------------------------
def test_erase_by_email_on_postgres(pg_database, demo_data, airflow_home, tmp_path) -> None:
    env = warehouse_env("postgres", tmp_path / "data", pg_url=pg_database, landing_dir=demo_data.landing_dir)
    run_nightly(env, airflow_home)
    settings = load_settings(env)
    with connect(settings) as wh:
        [(campaign,)] = wh.fetchall("select campaign_id from analytics.campaign_audience where not is_control "
                                    "group by 1 order by count(*) desc, 1 limit 1")
    audience_file, manifest = _export(env, airflow_home, f"campaign:{campaign}", tmp_path / "exports", "parquet")
    with connect(settings) as wh:
        crm_id = _pick(wh, _file_rows(audience_file))
        person = _person(wh, crm_id, settings.hash_key)
        [(email,)] = wh.fetchall("select email from raw.crm_customers where crm_customer_id = %s and email like %s "
                                 "order by _partition_date desc limit 1", (crm_id, "%@%"))
        before = {t: _others(wh, t, person["ids"]) for t in _published_with_customers(wh)}
    # as a person would type it: other case, blanks around
    outcome = _erase_and_check(env, airflow_home, ["--email", f"  {email.upper()} "], crm_id, person, before,
                               audience_file, manifest, hidden=email.strip().lower().split("@")[0])
    print(f"\nPostgreSQL erasure: {len(outcome['checked'])} tables checked: {', '.join(outcome['checked'])}")


# -- the command line -------------------------------------------------------------------------------------------
def test_erase_command_line_errors(e2e_duckdb_env, airflow_home, tmp_path) -> None:
    shutil.copy(e2e_duckdb_env["CUSTSEG_DUCKDB_PATH"], tmp_path / "warehouse.duckdb")
    env = {**e2e_duckdb_env, "CUSTSEG_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
           "CUSTSEG_DATA_DIR": str(tmp_path)}
    cases = {
        (): "one of the arguments --crm-id --email is required",
        ("--crm-id", "CRM-0000001", "--email", "a@b.example"): "not allowed with argument",
        ("--crm-id", "CRM-9999999"): "no customer has that CRM id",
        ("--email", "nobody.at.all@nowhere.example"): "no customer has that e-mail (e-mail n***@nowhere.example)",
        ("--email", "not-an-address"): "not an e-mail address",
    }
    for args, message in cases.items():
        result = run_cli(["erase", *args], env, airflow_home)
        assert result.returncode != 0, args
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("custseg erase: error: ") and message in result.stderr, result.stderr
        assert "nobody.at.all" not in result.stderr
    with connect(load_settings(env)) as wh:
        assert wh.fetchall("select count(*) from ops.erasure_log")[0][0] == 0


# -- the pieces --------------------------------------------------------------------------------------------------
def test_every_identifying_column_of_the_catalogue_is_suppressed() -> None:
    """A new channel's customer or contact columns cannot slip past erasure and suppression unnoticed."""
    from custseg.catalogue import CHANNELS

    assert set(EXTRA_KEY_COLUMNS) <= set(CHANNELS)
    for channel in CHANNELS.values():
        covered = {c for cols in key_columns(channel).values() for c in cols}
        identifying = set(channel.customer_columns) | set(channel.identity_keys.values()) | {
            c.name for c in channel.columns
            if re.fullmatch(r"(\w+_)?(email|phone|loyalty_card|handle|crm_customer_id|customer_ref)", c.name)}
        assert identifying <= covered, (channel.name, identifying - covered)


# -- an operational PostgreSQL source: its extracts are rewritten, and its rows suppressed on a rerun -----------
def test_extracts_of_an_operational_table_are_rewritten_and_suppressed(pg_database, airflow_home, tmp_path,
                                                                       monkeypatch) -> None:
    import psycopg

    from custseg.steps.ingest import ingest_source
    from custseg.steps.prepare import prepare_warehouse

    with psycopg.connect(pg_database, autocommit=True) as con:
        con.execute("create table orders (order_no text, created_at timestamptz, customer text, currency text, "
                    "total text)")
        con.execute("""insert into orders values
            ('O-1', '2026-03-01 10:00:00+00', 'C-1', 'EUR', '10.50'),
            ('O-2', '2026-03-01 11:00:00+00', 'C-2', 'EUR', '5.00'),
            ('O-3', '2026-03-02 09:00:00+00', 'C-1', 'EUR', '-1.00'),
            ('O-4', '2026-03-02 12:00:00+00', 'C-3', 'EUR', '7.00')""")  # O-3: quarantined (negative)
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", pg_database)
    sources = tmp_path / "sources.yml"
    sources.write_text("sources:\n  shop_orders:\n    channel: online_orders\n    format: postgres_table\n"
                       "    connection: shop_db\n    table: public.orders\n    partition_column: created_at\n"
                       "    columns:\n      order_id: order_no\n      ordered_at: created_at\n"
                       "      customer_ref: customer\n      currency: currency\n      order_total: total\n",
                       encoding="utf-8")
    env = {"CUSTSEG_WAREHOUSE": "duckdb", "CUSTSEG_DATA_DIR": str(tmp_path / "data"),
           "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb"), "CUSTSEG_SOURCES_FILE": str(sources),
           "CUSTSEG_LANDING_DIR": str(tmp_path / "landing"), "AIRFLOW_CONN_SHOP_DB": pg_database}
    settings = load_settings(env)
    prepare_warehouse(settings)
    day1, day2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    ingest_source(settings, "shop_orders", day2, "run-1")
    with connect(settings) as wh:  # what identity resolution would have made of C-1
        wh.execute("create table if not exists raw.identity_map (key_type text, key_value text, customer_id text, "
                   "first_seen_date date, as_of_date date)")
        wh.execute("insert into raw.identity_map values ('crm_id', 'C-1', %s, %s, %s)",
                   (keyed_hash(settings.hash_key, "customer:crm", "C-1"), day1, day2))
    extract = settings.data_dir / "extracts" / "shop_orders" / f"{day1}.csv"
    assert "C-1" in extract.read_text(encoding="utf-8")

    result = run_cli(["erase", "--crm-id", "C-1"], env, airflow_home)
    assert result.returncode == 0, result.stderr
    assert "C-1" not in extract.read_text(encoding="utf-8")
    with connect(settings) as wh:
        kept = wh.fetchall("select order_id, _source_file, _source_line from raw.shop_orders order by 1")
        assert wh.fetchall("select count(*) from raw.quarantine")[0][0] == 0
        audit = wh.fetchall("select partition_date, rows_read, rows_loaded, rows_quarantined, rows_suppressed "
                            "from ops.load_audit order by 1")
    assert [k[0] for k in kept] == ["O-2", "O-4"]
    for order_id, source_file, line in kept:  # line numbers still point at the record in the rewritten file
        with open(source_file, newline="", encoding="utf-8") as fh:
            assert list(csv.DictReader(fh))[line - 1]["order_no"] == order_id
    assert audit == [(day1, 2, 1, 0, 1), (day2, 2, 1, 0, 1)]

    # a rerun extracts the table again (which still holds C-1): suppressed, neither loaded nor quarantined
    results = ingest_source(settings, "shop_orders", day2, "run-2")
    assert [(r.rows_read, r.rows_loaded, r.rows_quarantined, r.rows_suppressed) for r in results] == [(2, 1, 0, 1)]
    with connect(settings) as wh:
        assert [r[0] for r in wh.fetchall("select order_id from raw.shop_orders order by 1")] == ["O-2", "O-4"]
        assert wh.fetchall("select count(*) from raw.quarantine")[0][0] == 0
