"""Identity resolution on real warehouses (DuckDB, and PostgreSQL with the same SQL): the tricky
cases with the grouping each one must give, spelled out, and the stability of ids over time; and the
keyed hash spec, whose digest DuckDB, PostgreSQL, the dbt macro and Python must agree on."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from custseg.config import PROJECT_DIR, load_settings
from custseg.hashing import keyed_hash_sql, namespace_sql, norm_phone
from custseg.steps.identity import resolve_identities
from custseg.steps.ingest import FUTURE_TOLERANCE
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect

D1 = dt.date(2026, 3, 1)


def day(n: int) -> dt.date:
    return D1 + dt.timedelta(days=n - 1)


#: the documented development key (docs/configuration.md): the tests' warehouses are hashed with it
DEV_KEY = "custseg-dev-hash-key-not-for-production"


def spec_hash(namespace: str, reference: str, key: str = DEV_KEY) -> str:
    """The README's spec, written out independently of custseg: sha256(key 0x1F namespace 0x1F reference)."""
    return hashlib.sha256(f"{key}\x1f{namespace}\x1f{reference}".encode()).hexdigest()


def crm_id(ref: str) -> str:
    return spec_hash("customer:crm", ref)


def guest_id(settings, email: str) -> str:
    return spec_hash("customer:email", spec_hash("email", email.strip().lower(), settings.hash_key), settings.hash_key)


# Each record lands on the day given (partition date), with its event on the same day.
CRM = [  # day, crm id, email, phone, card
    (1, "CRM-1", "Ann.Lee@example.com", None, None),                # chain start
    (1, "CRM-2", "bob@example.com", "+44 7700 900001", None),      # family phone ...
    (1, "CRM-3", "carol@example.com", "07700 900001", None),       # ... shared with CRM-2
    (1, "CRM-4", "dup@example.com", None, None),                   # one email on two CRM records
    (1, "CRM-5", " DUP@example.com ", None, None),
    (1, "CRM-6", "john.smith@example.com", "0044-7700-900006", None),  # typo cases
    (1, "CRM-7", None, None, None),                                # no contact data at all
    (1, "CRM-8", None, None, "LC 0012 3456"),                      # loyalty card only
    (3, "CRM-9", "gina@example.com", None, None),                  # registers after guest orders
    (2, "CRM-12", "ivy@example.com", None, None),                  # merged later into CRM-20 ...
    (1, "CRM-20", "hal@example.com", None, None),                  # ... which was seen first
    (7, "CRM-30", "kim@example.com", "07700 900006", None),        # day 7: CRM-6's phone becomes a family phone
]
ORDERS = [  # day, order id, customer_ref, email, phone
    (1, "SO-1", None, "ann.lee@example.com ", "(07700) 900-010"),  # chain: email -> phone
    (1, "SO-2", None, None, "07700 900001"),                       # family phone only: not attributable
    (1, "SO-3", None, "jonh.smith@example.com", None),             # typo email, nothing else: a guest
    (1, "SO-4", None, "john.smtih@example.com", "+44 7700 900006"),  # typo email + CRM-6's phone: CRM-6
    (1, "SO-5", None, None, None),                                 # no identifiers at all
    (1, "SO-6", None, "gina@example.com", None),                   # guest before registering (CRM-9)
    (2, "SO-7", "CRM-7", None, None),                              # logged in, no contact data
]
TICKETS = [  # day, ticket id, email, phone
    (1, "T-1", "ann.work@example.com", "+447700900010"),           # chain: phone -> second email
]
SESSIONS = [  # day, session id, crm id, email
    (1, "WS-1", None, "ANN.WORK@example.com"),                     # chain continues (no new key)
    (4, "WS-2", "CRM-12", "hal@example.com"),                      # day 4: links CRM-12 and CRM-20
]
POS = [  # day, receipt id, card
    (1, "R-1", "lc-00123456"),
    (1, "R-2", "LC-9999-0000"),                                    # card unknown to the CRM
]


def _ts(n: int) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(12))


def _load(wh) -> None:
    for d, ref, email, phone, card in CRM:
        wh.execute("insert into raw.crm_customers (crm_customer_id, email, phone, loyalty_card, updated_at, "
                   "_partition_date, _source_file, _source_line, _run_id) values (%s, %s, %s, %s, %s, %s, 'f', 1, 'r')",
                   (ref, email, phone, card, _ts(d), day(d)))
    for d, oid, ref, email, phone in ORDERS:
        wh.execute("insert into raw.shop_orders (order_id, customer_ref, customer_email, customer_phone, ordered_at, "
                   "currency, order_total, _partition_date, _source_file, _source_line, _run_id) "
                   "values (%s, %s, %s, %s, %s, 'EUR', 1, %s, 'f', 1, 'r')", (oid, ref, email, phone, _ts(d), day(d)))
    for d, tid, email, phone in TICKETS:
        wh.execute("insert into raw.support_tickets (ticket_id, customer_email, customer_phone, created_at, "
                   "_partition_date, _source_file, _source_line, _run_id) values (%s, %s, %s, %s, %s, 'f', 1, 'r')",
                   (tid, email, phone, _ts(d), day(d)))
    for d, sid, ref, email in SESSIONS:
        wh.execute("insert into raw.web_sessions (session_id, crm_customer_id, user_email, started_at, "
                   "_partition_date, _source_file, _source_line, _run_id) values (%s, %s, %s, %s, %s, 'f', 1, 'r')",
                   (sid, ref, email, _ts(d), day(d)))
    # landed on day 4 but dated day 6 at midnight, the latest ingestion lets through (FUTURE_TOLERANCE
    # after the end of the landing day): visible only as of day 6, so the night extending day 5 to
    # day 6 must find it in a partition older than the one it extends from
    wh.execute("insert into raw.web_sessions (session_id, crm_customer_id, user_email, started_at, "
               "_partition_date, _source_file, _source_line, _run_id) values (%s, %s, %s, %s, %s, 'f', 1, 'r')",
               ("WS-3", "CRM-12", "early.bird@example.com",
                dt.datetime.combine(day(4), dt.time()) + dt.timedelta(days=1) + FUTURE_TOLERANCE, day(4)))
    for d, rid, card in POS:
        wh.execute("insert into raw.pos_sales (receipt_id, store_id, loyalty_card, sold_at, currency, amount, "
                   "_partition_date, _source_file, _source_line, _run_id) "
                   "values (%s, 'ST-1', %s, %s, 'EUR', 1, %s, 'f', 1, 'r')", (rid, card, _ts(d), day(d)))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request, tmp_path: Path) -> Iterator:
    env = {"CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb")}
    if request.param == "postgres":
        env.update(CUSTSEG_WAREHOUSE="postgres", CUSTSEG_POSTGRES_URL=request.getfixturevalue("pg_database"))
    s = load_settings(env)
    assert s.hash_key == DEV_KEY
    prepare_warehouse(s)
    with connect(s) as wh:
        _load(wh)
    yield s


def _map(settings, as_of_date: dt.date) -> dict[tuple[str, str], str]:
    resolve_identities(settings, as_of_date)
    with connect(settings) as wh:
        rows = wh.fetchall("select key_type, key_value, customer_id from raw.identity_map")
        dates = wh.fetchall("select as_of_date from raw.identity_state")
    assert [d[0] if isinstance(d[0], dt.date) else d[0].date() for d in dates] == [as_of_date]
    return {(t, v): c for t, v, c in rows}


def _email_key(settings, email: str) -> tuple[str, str]:
    return ("email", spec_hash("email", email.strip().lower(), settings.hash_key))


def _phone_key(settings, e164: str) -> tuple[str, str]:
    return ("phone", spec_hash("phone", e164, settings.hash_key))


def test_tricky_cases_group_as_specified(settings) -> None:
    m = _map(settings, day(5))
    email = lambda e: m.get(_email_key(settings, e))  # noqa: E731
    phone = lambda p: m.get(_phone_key(settings, p))  # noqa: E731
    # chain of links: CRM-1 -email- SO-1 -phone- T-1 -email- WS-1: all one customer, CRM-1's id
    assert email("ann.lee@example.com") == crm_id("CRM-1")
    assert phone("+447700900010") == crm_id("CRM-1")
    assert email("ann.work@example.com") == crm_id("CRM-1")
    # shared family phone: CRM-2 and CRM-3 stay two customers; the phone links nothing and is not in the map
    assert email("bob@example.com") == crm_id("CRM-2")
    assert email("carol@example.com") == crm_id("CRM-3")
    assert phone("+447700900001") is None
    # one email on two CRM records: one customer; both seen the same day, so the lowest id survives
    assert m[("crm_id", "CRM-4")] == m[("crm_id", "CRM-5")] == email("dup@example.com") == crm_id("CRM-4")
    # typos: no fuzzy matching. A typo'd email alone is its own guest; with the phone it joins CRM-6
    assert email("jonh.smith@example.com") == guest_id(settings, "jonh.smith@example.com")
    assert email("john.smtih@example.com") == crm_id("CRM-6")
    assert phone("+447700900006") == crm_id("CRM-6")
    # no contact data: the CRM id alone is the customer; an order with no identifiers maps nowhere
    assert m[("crm_id", "CRM-7")] == crm_id("CRM-7")
    # loyalty card formats normalise to one key
    assert m[("loyalty_card", "LC00123456")] == crm_id("CRM-8")
    assert m[("loyalty_card", "LC99990000")] == spec_hash("customer:card", "LC99990000")
    # guest who registered later: the CRM id wins the merge; the guest id is kept as an alias
    assert email("gina@example.com") == crm_id("CRM-9")
    assert m[("customer_id", guest_id(settings, "gina@example.com"))] == crm_id("CRM-9")
    # two CRM customers linked on day 4: the one seen first survives, even with the higher number
    assert m[("crm_id", "CRM-12")] == m[("crm_id", "CRM-20")] == crm_id("CRM-20")
    assert m[("customer_id", crm_id("CRM-12"))] == crm_id("CRM-20")
    customers = {c for (t, _), c in m.items() if t != "customer_id"}
    # CRM-1..9 with CRM-4/5 as one (8), CRM-20 with CRM-12 (1), the typo guest (1), the unknown card (1)
    assert len(customers) == 11


def test_ids_are_stable_and_computed_as_of_the_date(settings) -> None:
    before = _map(settings, day(2))
    # as of day 2, CRM-9 and the day-4 link do not exist yet
    assert ("crm_id", "CRM-9") not in before
    assert before[_email_key(settings, "gina@example.com")] == guest_id(settings, "gina@example.com")
    assert before[("crm_id", "CRM-12")] == crm_id("CRM-12")
    assert not any(t == "customer_id" for t, _ in before)
    after = _map(settings, day(6))
    # every key keeps its id, except where a merge retired it, and then the alias says where it went
    for key, old in before.items():
        new = after[key]
        assert new == old or after[("customer_id", old)] == new, key
    # rerun and backfill: the same date gives the same map whatever ran in between
    assert _map(settings, day(2)) == before
    assert _map(settings, day(6)) == after


def _rows(settings) -> list[tuple]:
    with connect(settings) as wh:
        return sorted(wh.fetchall("select key_type, key_value, customer_id, first_seen_date from raw.identity_map"))


def test_extending_night_by_night_equals_rebuilding(settings) -> None:
    """Each night extends the previous night's map; a rebuild from every record must give the same map.
    Covers merges found on a later night (day 3: a guest registers; day 4: two CRM customers linked)
    and the one case that must rebuild (day 7: a phone already linking keys becomes a household phone)."""
    modes = {}
    for n in range(1, 9):
        modes[n] = resolve_identities(settings, day(n))["mode"]
        extended = _rows(settings)
        with connect(settings) as wh:
            wh.execute("delete from raw.identity_state")  # forget the state: the next call rebuilds
        assert resolve_identities(settings, day(n))["mode"] == "rebuilt"
        assert _rows(settings) == extended, f"day {n}: {modes[n]}"
    assert modes[1] == modes[7] == "rebuilt"
    assert all(modes[n] == f"extended from {day(n - 1)}" for n in (2, 3, 4, 5, 6, 8))
    m = {(t, v): c for t, v, c, _ in _rows(settings)}
    assert m[_email_key(settings, "early.bird@example.com")] == m[("crm_id", "CRM-12")]  # the WS-3 link
    assert _phone_key(settings, "+447700900006") not in m  # a household phone links nothing
    assert m[_email_key(settings, "john.smtih@example.com")] != crm_id("CRM-6")


def test_a_reloaded_old_partition_rebuilds_the_map(settings) -> None:
    resolve_identities(settings, day(3))
    with connect(settings) as wh:  # a late file for day 2 is loaded after the day-3 run
        wh.execute("insert into ops.load_audit (run_id, as_of_date, source, partition_date, rows_read, "
                   "rows_loaded, rows_quarantined, status, recorded_at) "
                   "values ('late', %s, 'web_sessions', %s, 0, 0, 0, 'success', %s)",
                   (day(4), day(2), dt.datetime(2100, 1, 1)))
    assert resolve_identities(settings, day(4))["mode"] == "rebuilt"
    assert resolve_identities(settings, day(5))["mode"] == f"extended from {day(4)}"
    # the state keeps the last rebuild's date: the event attribution models extend only after it
    with connect(settings) as wh:
        assert wh.fetchall("select as_of_date, rebuilt_as_of from raw.identity_state") == [(day(5), day(4))]
        wh.execute("update raw.identity_state set rebuilt_as_of = null")  # a state from before the column
    assert resolve_identities(settings, day(6))["mode"] == f"extended from {day(5)}"
    with connect(settings) as wh:  # no rebuild can have happened after the date extended from
        assert wh.fetchall("select as_of_date, rebuilt_as_of from raw.identity_state") == [(day(6), day(5))]


def test_no_raw_email_or_phone_in_the_map(settings) -> None:
    resolve_identities(settings, day(5))
    with connect(settings) as wh:
        values = [r[0] for r in wh.fetchall("select key_value from raw.identity_map")]
    assert not [v for v in values if "@" in v or v.startswith("+")]


def test_precision_and_recall_against_the_generator_truth(demo_data, tmp_path: Path, monkeypatch, capsys) -> None:
    """The session's demo data, ingested for real and resolved through the documented measuring
    command (`python -m bench.ingest --identity --truth`): both scores at least 0.98."""
    from bench.ingest import main as measure_ingest
    from tests.conftest import E2E_END

    for name, value in {"CUSTSEG_WAREHOUSE": "duckdb", "CUSTSEG_DATA_DIR": str(tmp_path),
                        "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
                        "CUSTSEG_LANDING_DIR": str(demo_data.landing_dir)}.items():
        monkeypatch.setenv(name, value)
    truth = demo_data.landing_dir.parent / "ground_truth" / "identities.parquet"
    assert measure_ingest(["--as-of", E2E_END.isoformat(), "--identity", "--truth", str(truth)]) == 0
    printed = capsys.readouterr().out
    print(printed)
    found = re.search(r"identity precision (\S+) recall (\S+)", printed)
    assert found, printed
    precision, recall = float(found[1]), float(found[2])
    assert precision >= 0.98 and recall >= 0.98, printed
    # every source was loaded: the overall line counts the rows of the whole catch-up
    assert re.search(r"all sources\s+[1-9][\d,]* rows", printed), printed


# -- phone normalisation: identity.norm_phone and the dbt macro normalise_phone, on both warehouses ----------
PII_MACROS = PROJECT_DIR / "dbt_project" / "macros" / "pii.sql"


def render_macro(call: str, country_code: str) -> str:
    """Render a call of a macro in pii.sql with plain jinja2, `var('phone_country_code')` = the code."""
    template = PII_MACROS.read_text() + "{{ " + call + " }}"
    variables = {"phone_country_code": country_code}
    return jinja2.Environment().from_string(template).render(var=lambda name: variables[name]).strip()


PHONE_CASES = [  # raw value, country code, E.164
    ("+44 20 7946 0000", "44", "+442079460000"),        # 2: already international
    ("0044 20 7946 0000", "44", "+442079460000"),       # 3: international call prefix
    ("020 7946 0000", "44", "+442079460000"),           # 4: national trunk prefix
    ("(555) 123-4567", "1", "+15551234567"),            # 5: North American, no trunk prefix
    ("030 1234567", "49", "+49301234567"),              # 4: another country's trunk prefix
    ("44 20 7946 0000", "44", "+442079460000"),         # 6: country code without +
    ("", "44", None),                                   # 1: empty
    ("n/a", "44", None),                                # 1: no digits
    (None, "44", None),                                 # 1: null
    ("  +49 30 1234567 ", "44", "+49301234567"),        # 2: + after blanks, not the configured country
    ("+1 (555) 123-4567", "1", "+15551234567"),         # 2
    ("00 44 20 7946 0000", "1", "+442079460000"),       # 3 wins over 5 (cc 1)
    ("1 555 123 4567", "1", "+15551234567"),            # 6: 11 digits with cc 1
    ("(555) 123-4567", "44", "+5551234567"),            # 6: 10 digits, but cc is not 1
    ("(07700) 900-010", "44", "+447700900010"),         # 4: the generator's UK formats keep their value
    ("0044-7700-900010", "44", "+447700900010"),        # 3
]


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def evaluate(request):
    """Evaluate SQL expressions over a text column `v` holding one value, on the warehouse."""
    if request.param == "duckdb":
        import duckdb

        con = duckdb.connect()
        yield lambda exprs, value: con.execute(
            f"select {', '.join(exprs)} from (select cast(? as varchar) as v) as t", [value]).fetchone()
        con.close()
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_server"), autocommit=True) as con:
            yield lambda exprs, value: con.execute(
                f"select {', '.join(exprs)} from (select cast(%s as text) as v) as t", (value,)).fetchone()


@pytest.mark.parametrize(("raw", "country_code", "expected"), PHONE_CASES)
def test_norm_phone_and_dbt_macro_give_e164(evaluate, raw: str | None, country_code: str,
                                            expected: str | None) -> None:
    python_sql = norm_phone("v", country_code)
    macro_sql = render_macro("normalise_phone('v')", country_code)
    assert "%" not in python_sql and "%" not in macro_sql  # both run through psycopg placeholders
    assert tuple(evaluate([python_sql, macro_sql], raw)) == (expected, expected)


def test_country_code_is_rendered_as_a_string_literal() -> None:
    assert "'+49' || " in norm_phone("v", "49") and "'49' = '1'" in norm_phone("v", "49")
    assert "'+49' || " in render_macro("normalise_phone('v')", "49")
    assert "'+49' || " in render_macro("normalise_phone('v')", "+49")  # dbt run by hand with a raw env var
    assert "'x''y' = '1'" in norm_phone("v", "x'y")


def test_resolution_uses_the_configured_country_code(settings) -> None:
    """With cc 49 the national UK-style numbers become German ones: SO-1's (07700) 900-010 no longer
    matches T-1's +447700900010, so the chain CRM-1 - SO-1 - T-1 breaks at that phone."""
    de = dataclasses.replace(settings, phone_country_code="49")
    m = _map(de, day(5))
    phone = lambda p: m.get(_phone_key(de, p))  # noqa: E731
    assert phone("+497700900010") == crm_id("CRM-1")
    assert phone("+447700900010") != crm_id("CRM-1")
    assert m[_email_key(de, "ann.work@example.com")] != crm_id("CRM-1")


# -- the keyed hash: Python, DuckDB, PostgreSQL and the dbt macro give one digest ----------------------
class _Adapter:
    """dbt's adapter.dispatch for plain jinja2: the macro of the warehouse's engine, else default__."""

    def __init__(self, kind: str, env: jinja2.Environment):
        self.kind, self.env = kind, env

    def dispatch(self, name: str):
        module = self.env.from_string(PII_MACROS.read_text()).module
        return getattr(module, f"{self.kind}__{name}", None) or getattr(module, f"default__{name}")


def render_hash_macro(call: str, kind: str) -> str:
    env = jinja2.Environment()
    env.globals.update(adapter=_Adapter(kind, env), var=lambda name: "44")
    return env.from_string(PII_MACROS.read_text() + "{{ " + call + " }}").render().strip()


HASH_CASES = [  # namespace, reference
    ("ref:crm", "CRM-0000001"),
    ("customer:crm", "C-1"),
    ("email", "zoë.ångström@exämple.com"),
    ("phone", "+447700900010"),
    ("ref:card", "LC00123456"),
    ("customer:email", "日本語のお客様"),
    ("ref:crm", "O'Brien; drop table x --"),
]


def test_keyed_hash_is_one_digest_in_python_sql_and_the_dbt_macro(settings) -> None:
    """Each reference, hashed by custseg's SQL helper (key read from raw.pii_salt), by the dbt macro
    (key from the `salt` CTE) and by custseg's Python helper, equals the spec computed here."""
    from custseg.hashing import keyed_hash

    with connect(settings) as wh:
        for namespace, reference in HASH_CASES:
            python_sql = keyed_hash_sql(wh.kind, "t.v", namespace_sql(namespace))
            macro_sql = render_hash_macro(f"keyed_hash('{namespace}', 't.v')", wh.kind)
            assert DEV_KEY not in python_sql + macro_sql  # the key is read, never rendered
            got = wh.fetchall(f"select {python_sql}, {macro_sql} from (select cast(%s as text) as v) as t "
                              "cross join raw.pii_salt as salt", (reference,))[0]
            expected = spec_hash(namespace, reference)
            assert tuple(got) == (expected, expected), (wh.kind, namespace, reference)
            assert keyed_hash(DEV_KEY, namespace, reference) == expected
        nulls = wh.fetchall(f"select {keyed_hash_sql(wh.kind, 'cast(null as text)', namespace_sql('email'))}")
        assert nulls == [(None,)]
    with pytest.raises(ValueError, match="unknown hash namespace"):
        namespace_sql("crm")
