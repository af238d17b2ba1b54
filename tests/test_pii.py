"""PII stays in `raw`: after a real DAG run no text column of any `analytics` table holds an email
address, a social-media handle or a phone number, whatever the export's customer column holds (bring-your-own-orders
exports of e-mail addresses and of phone numbers); published ids and references are keyed hashes
that nobody can compute from a known reference without the key; production refuses to run without
a hash key."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import random
import re
from pathlib import Path

import pytest

from custseg.config import ConfigError, load_settings
from custseg.warehouse import connect
from tests.conftest import E2E_END, run_cli, warehouse_env

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# a run of 8+ digits with phone separators, not part of a longer alphanumeric token (e.g. a hash)
PHONE = re.compile(r"(?<![0-9A-Za-z])\+?\(?\d[\d ().-]{6,}\d(?![0-9A-Za-z])")


DEV_KEY = "custseg-dev-hash-key-not-for-production"  # docs/configuration.md
MISSING_KEY = "CUSTSEG_HASH_KEY must be set"


def test_hash_key_setting() -> None:
    """Required in production (and not the published development key); the old name still works."""
    for env in ({}, {"CUSTSEG_HASH_KEY": DEV_KEY}):
        with pytest.raises(ConfigError, match=MISSING_KEY):
            load_settings({"CUSTSEG_ENV": "production", **env})
    assert load_settings({"CUSTSEG_ENV": "production", "CUSTSEG_HASH_KEY": "s3cret"}).hash_key == "s3cret"
    # deployments that set the deprecated CUSTSEG_PII_SALT keep their key
    assert load_settings({"CUSTSEG_ENV": "production", "CUSTSEG_PII_SALT": "s3cret"}).hash_key == "s3cret"
    with pytest.raises(ConfigError, match="differ; set only CUSTSEG_HASH_KEY"):
        load_settings({"CUSTSEG_HASH_KEY": "a", "CUSTSEG_PII_SALT": "b"})
    assert load_settings({}).hash_key == DEV_KEY


@pytest.mark.e2e
def test_production_run_without_key_stops_before_anything(airflow_home, tmp_path: Path) -> None:
    env = {**warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb"), "CUSTSEG_ENV": "production"}
    result = run_cli(["run", "--as-of", E2E_END.isoformat()], env, airflow_home, timeout=300)
    assert result.returncode != 0
    assert MISSING_KEY in result.stdout + result.stderr
    assert not (tmp_path / "wh.duckdb").exists()


def _known_phones(wh) -> set[str]:
    """Digits (last 9) of every phone number in raw: what a leaked phone would contain."""
    phones = set()
    for table, col in (("crm_customers", "phone"), ("shop_orders", "customer_phone"),
                       ("support_tickets", "customer_phone")):
        for (value,) in wh.fetchall(f"select distinct {col} from raw.{table} where {col} is not null"):
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 9:
                phones.add(digits[-9:])
    return phones


def _known_handles(wh) -> set[str]:
    """Every social-media handle in raw (the social export's and the CRM's), lower case without @."""
    handles = set()
    for table, col in (("social_interactions", "handle"), ("crm_customers", "social_handle")):
        for (value,) in wh.fetchall(f"select distinct {col} from raw.{table} where {col} is not null"):
            handle = value.strip().lstrip("@").lower()
            if len(handle) >= 4:
                handles.add(handle)
    return handles


@pytest.mark.e2e
def test_no_email_or_phone_in_any_analytics_table(e2e_duckdb_env: dict[str, str]) -> None:
    """Every text column of every `analytics` table after the session's real DAG run."""
    env = e2e_duckdb_env
    with connect(load_settings(env)) as wh:
        phones = _known_phones(wh)
        assert len(phones) > 100, "the demo data must carry phones for this test to mean anything"
        handles = _known_handles(wh)
        assert len(handles) > 50, "the demo data must carry social handles for this test to mean anything"
        columns = wh.fetchall(
            "select table_name, column_name from information_schema.columns where table_schema = 'analytics' "
            "and lower(data_type) in ('text', 'varchar', 'character varying') order by 1, 2")
        tables = {t for t, _ in columns}
        assert {"customer_segments", "customer_identity"} <= tables
        leaks = []
        for table, column in columns:
            values = [r[0] for r in wh.fetchall(
                f'select distinct "{column}" from analytics."{table}" where "{column}" is not null')]
            for value in values:
                if EMAIL.search(value):
                    leaks.append((table, column, "email"))
                    break
                if any(re.sub(r"\D", "", m.group())[-9:] in phones for m in PHONE.finditer(value)):
                    leaks.append((table, column, "phone"))
                    break
                if any(token in handles for token in re.split(r"[\s,;:@]+", value.lower())):
                    leaks.append((table, column, "social handle"))
                    break
    assert leaks == [], f"PII found in analytics: {leaks}"
    assert len(columns) > 20


# -- bring-your-own-orders exports whose customer column holds PII ------------------------------------
BYO_AS_OF = dt.date(2026, 6, 30)
BYO_BUYERS = 300


def spec_hash(namespace: str, reference: str, key: str = DEV_KEY) -> str:
    """docs/identity.md, written out independently of custseg."""
    return hashlib.sha256(f"{key}\x1f{namespace}\x1f{reference}".encode()).hexdigest()


def _contacts(kind: str) -> list[str]:
    """BYO_BUYERS distinct e-mail addresses or phone numbers, in the mixed forms real exports hold."""
    if kind == "email":
        first = ["ann", "bob", "chloé", "dmitri", "eve", "fatima", "günter", "hana"]
        return [f"{first[i % len(first)]}.{'Smith' if i % 3 else 'lee'}{i}@{'example' if i % 2 else 'shop'}.org"
                for i in range(BYO_BUYERS)]
    forms = ["+44 7700 9{:05d}", "07700 9{:05d}", "(07700) 9{:05d}", "+4477009{:05d}"]
    return [forms[i % len(forms)].format(i) for i in range(BYO_BUYERS)]


def write_export(path: Path) -> list[str]:
    """A small deterministic order export (~300 buyers, a third of them repeat buyers) whose customer
    column holds e-mail addresses for half the buyers and phone numbers for the other half (one real
    DAG run covers both); returns those customer values."""
    rng = random.Random(20)
    half = BYO_BUYERS // 2
    contacts = _contacts("email")[:half] + _contacts("phone")[half:]
    start = BYO_AS_OF - dt.timedelta(days=170)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["order_id", "customer", "order_date", "amount", "currency", "channel"])
        number = 0
        for i, contact in enumerate(contacts):
            for _ in range(1 + (i % 3 == 0) * rng.randint(1, 4)):
                number += 1
                day = start + dt.timedelta(days=rng.randint(0, 170))
                out.writerow([f"O-{number}", contact, day.isoformat(), f"{rng.uniform(5, 250):.2f}", "EUR",
                              rng.choice(["online", "app", "store"])])
    return contacts


def _every_value(wh) -> dict[tuple[str, str], set[str]]:
    """Every distinct non-null value of every column of every analytics table, as text."""
    columns = wh.fetchall("select table_name, column_name from information_schema.columns "
                          "where table_schema = 'analytics' order by 1, 2")
    return {(t, c): {str(v) for (v,) in wh.fetchall(
        f'select distinct cast("{c}" as varchar) from analytics."{t}" where "{c}" is not null')}
        for t, c in columns}


def _unkeyed_hashes(reference: str) -> set[str]:
    """What someone without the key could compute from a known reference: the old ids, plain hashes."""
    forms = {reference, reference.strip(), reference.strip().lower()}
    out = set()
    for form in forms:
        for text in (form, f"crm:{form}", f"guest:{form}"):
            out |= {hashlib.md5(text.encode()).hexdigest(), hashlib.sha256(text.encode()).hexdigest()}
    return out


@pytest.mark.e2e
def test_byo_export_of_emails_and_phones_publishes_no_pii(airflow_home, tmp_path: Path) -> None:
    """`custseg run --orders` on an export whose customer column holds e-mail addresses and phone
    numbers: no value of any column of any analytics table holds one of them, nor an unkeyed hash
    of one; the published ids and references are the keyed hashes of the spec, and the plain CRM
    reference is only reachable through raw."""
    export = tmp_path / "orders.csv"
    contacts = write_export(export)
    phones = [c for c in contacts if "@" not in c]
    assert len(phones) == BYO_BUYERS - BYO_BUYERS // 2 and phones
    env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "warehouse.duckdb")
    result = run_cli(["run", "--orders", str(export), "--as-of", BYO_AS_OF.isoformat()], env, airflow_home)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0 and f"as of {BYO_AS_OF}: success" in result.stdout, tail

    with connect(load_settings(env)) as wh:
        values = _every_value(wh)
        segments = {v for (v,) in wh.fetchall("select customer_id from analytics.customer_segments")}
        identity = wh.fetchall("select customer_id, source, source_customer_ref from analytics.customer_identity")
        raw_refs = dict(wh.fetchall("select key_value, customer_id from raw.identity_map where key_type = 'crm_id'"))
    assert len(segments) >= 250, "most buyers must be published for this test to mean anything"
    assert {(t, c) for t, c in values} >= {("customer_identity", "source_customer_ref"),
                                           ("customer_segments", "customer_id")}

    plain = {c.strip().lower() for c in contacts}
    digits = {re.sub(r"\D", "", c)[-9:] for c in phones}
    unkeyed = set().union(*(_unkeyed_hashes(c) for c in contacts))
    leaks = []
    for (table, column), found in values.items():
        for value in found:
            low = value.lower()
            if any(p in low for p in plain) or EMAIL.search(value) or value in unkeyed or any(
                    re.sub(r"\D", "", m.group())[-9:] in digits for m in PHONE.finditer(value)):
                leaks.append((table, column, value))
                break
    assert leaks == [], f"PII (or an unkeyed hash of it) in analytics: {leaks}"

    # the export's customer value is the CRM reference, whatever it looks like: keyed in every namespace
    assert {c for c, s, _ in identity if s == "crm"} <= segments
    refs = {r for _, s, r in identity if s == "crm"}
    assert refs == {spec_hash("ref:crm", c.strip()) for c in contacts if c.strip() in raw_refs}
    assert {spec_hash("customer:crm", c.strip()) for c in contacts} >= segments
    assert all(re.fullmatch(r"[0-9a-f]{64}", r) for _, _, r in identity)
    # acting on a customer goes through raw: the pipeline recomputes the reference's hash there
    assert {spec_hash("ref:crm", plain_ref): customer for plain_ref, customer in raw_refs.items()} == {
        r: c for c, s, r in identity if s == "crm"}
