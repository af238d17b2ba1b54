"""Tests of the demo data generator: determinism, file layout, the documented columns, the dirt it
promises (duplicates, late rows, invalid rows, formats) and the consistency of its ground truth."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from custseg.demo.generate import (
    BEHAVIOUR_TYPES,
    INVALID_KINDS,
    PROSPECT,
    SOURCE_COLUMNS,
    SOURCE_FILES,
    SOURCES,
    GenerationSummary,
    generate,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sources.md"
END = date(2026, 3, 31)
DAYS = 90
CUSTOMERS = 400
FILE_DATE = r"regexp_extract(filename, '(\d{4}-\d{2}-\d{2})\.[a-z]+$', 1)::date"


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    # A raised invalid share so that every kind of invalid row is likely to occur in a small run.
    return generate(
        tmp_path_factory.mktemp("gen"),
        customers=CUSTOMERS,
        days=DAYS,
        end_date=END,
        seed=7,
        invalid_share=0.03,
    )


@pytest.fixture(scope="module")
def con(gen: GenerationSummary) -> duckdb.DuckDBPyConnection:
    """Views over the landing files, with file dates, read the way ingestion would (as text)."""
    c = duckdb.connect()
    c.execute("set TimeZone = 'UTC'")
    root = gen.landing_dir
    c.execute(f"""create view shop as select *, {FILE_DATE} as file_date
        from read_csv('{root}/shop/orders/*.csv', all_varchar = true, filename = true)""")
    c.execute(f"""create view pos as select *, {FILE_DATE} as file_date
        from read_parquet('{root}/pos/sales/*.parquet', filename = true)""")
    c.execute(f"""create view web as select *, {FILE_DATE} as file_date
        from read_json('{root}/web/sessions/*.jsonl', filename = true)""")
    c.execute(f"""create view crm as select *, {FILE_DATE} as file_date
        from read_csv('{root}/crm/customers/*.csv', all_varchar = true, filename = true)""")
    c.execute(f"""create view email as select *, {FILE_DATE} as file_date
        from read_csv('{root}/marketing/email_events/*.csv', all_varchar = true, filename = true)""")
    c.execute(f"""create view support as select *, {FILE_DATE} as file_date
        from read_json('{root}/support/tickets/*.jsonl', filename = true)""")
    c.execute(f"create view truth as select * from read_parquet('{gen.ground_truth_dir}/customers.parquet')")
    c.execute(f"create view ids as select * from read_parquet('{gen.ground_truth_dir}/identities.parquet')")
    c.execute("""create view shop_valid as select * from shop
        where coalesce(order_id, '') <> ''
          and try_cast(order_ts as timestamptz) is not null
          and try_cast(order_total as decimal(18, 2)) >= 0
          and upper(trim(currency)) in ('EUR', 'GBP', 'USD')""")
    return c


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _documented_columns() -> dict[str, list[str]]:
    """Column names per source from the '### `source`' tables of docs/sources.md."""
    columns: dict[str, list[str]] = {}
    current = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^### `(\w+)`", line)
        if heading:
            current = heading.group(1)
            columns[current] = []
        elif line.startswith("## "):
            current = None
        elif current and line.startswith("| `"):
            columns[current] += re.findall(r"`(\w+)`", line.split("|")[1])
    return columns


# --- determinism ---------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    args = {"customers": 150, "days": 30, "end_date": END}
    generate(tmp_path / "a", seed=3, **args)
    generate(tmp_path / "b", seed=3, **args)
    generate(tmp_path / "c", seed=4, **args)
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys()
    changed = {k for k in a if a[k] != c[k]}
    assert "ground_truth/customers.parquet" in changed
    assert any(k.startswith("landing/shop/orders/") for k in changed)


def test_rerun_into_same_dir_replaces_stale_days(tmp_path: Path) -> None:
    generate(tmp_path, customers=20, days=10, end_date=END)
    summary = generate(tmp_path, customers=20, days=5, end_date=END)
    assert len(list((summary.landing_dir / "shop/orders").iterdir())) == 5


# --- layout and columns -----------------------------------------------------------------------------
def test_every_source_has_one_file_per_day(gen: GenerationSummary) -> None:
    assert gen.start_date == END - timedelta(days=DAYS - 1)
    expected_days = [(gen.start_date + timedelta(days=i)).isoformat() for i in range(DAYS)]
    for source in SOURCES:
        folder, ext = SOURCE_FILES[source]
        names = sorted(p.name for p in (gen.landing_dir / folder).iterdir())
        assert names == [f"{d}.{ext}" for d in expected_days], source
    assert {p.name for p in gen.ground_truth_dir.iterdir()} == {"customers.parquet", "identities.parquet"}


def test_columns_match_docs(gen: GenerationSummary) -> None:
    documented = _documented_columns()
    assert set(documented) == set(SOURCES)
    for source in SOURCES:
        folder, ext = SOURCE_FILES[source]
        for path in sorted((gen.landing_dir / folder).iterdir()):
            if ext == "csv":
                header = path.read_text(encoding="utf-8").split("\n", 1)[0]
                assert header.split(",") == documented[source], path
            elif ext == "parquet":
                assert pq.read_schema(path).names == documented[source], path
            else:
                for line in path.read_text(encoding="utf-8").splitlines():
                    assert list(json.loads(line)) == documented[source], path


def test_quiet_days_still_get_readable_files(tmp_path: Path) -> None:
    summary = generate(tmp_path, customers=2, days=6, end_date=END)
    c = duckdb.connect()
    for source in SOURCES:
        folder, ext = SOURCE_FILES[source]
        for path in sorted((summary.landing_dir / folder).iterdir()):
            if ext == "csv":
                c.execute(f"select * from read_csv('{path}', all_varchar = true, header = true)").fetchall()
            elif ext == "parquet":
                assert pq.read_table(path).schema.names == list(_documented_columns()[source])
            elif path.stat().st_size:
                c.execute(f"select * from read_json('{path}')").fetchall()
    assert any(p.stat().st_size == 0 for p in (summary.landing_dir / "support/tickets").iterdir())


def test_summary_row_counts_match_files(gen: GenerationSummary, con: duckdb.DuckDBPyConnection) -> None:
    views = {"shop_orders": "shop", "pos_sales": "pos", "web_sessions": "web", "crm_customers": "crm",
             "email_events": "email", "support_tickets": "support"}  # fmt: skip
    for source, view in views.items():
        assert _one(con, f"select count(*) from {view}") == gen.rows[source], source
        assert gen.rows[source] > 0, source


def test_invalid_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, customers=0)
    with pytest.raises(ValueError):
        generate(tmp_path, days=0)
    with pytest.raises(ValueError):
        generate(tmp_path, invalid_share=0.9)


# --- dirt ---------------------------------------------------------------------------------------------
def test_invalid_rows_are_exactly_the_reported_ones(
    gen: GenerationSummary, con: duckdb.DuckDBPyConnection
) -> None:
    kinds = {
        "missing_order_id": "coalesce(order_id, '') = ''",
        "bad_timestamp": "try_cast(order_ts as timestamptz) is null",
        "non_numeric_total": "try_cast(order_total as decimal(18, 2)) is null",
        "negative_total": "try_cast(order_total as decimal(18, 2)) < 0",
        "unknown_currency": "upper(trim(currency)) not in ('EUR', 'GBP', 'USD')",
    }
    assert set(kinds) == set(INVALID_KINDS)
    for kind, condition in kinds.items():
        assert _one(con, f"select count(*) from shop where {condition}") == gen.invalid_kinds[kind], kind
    invalid = _one(con, "select count(*) from shop") - _one(con, "select count(*) from shop_valid")
    assert invalid == gen.invalid_rows["shop_orders"] == sum(gen.invalid_kinds.values()) > 0
    assert sum(1 for v in gen.invalid_kinds.values() if v) >= 3
    assert all(gen.invalid_rows[s] == 0 for s in SOURCES if s != "shop_orders")


def test_exact_duplicates_stay_in_their_file(gen: GenerationSummary, con: duckdb.DuckDBPyConnection) -> None:
    row = ", ".join(["file_date", *SOURCE_COLUMNS["shop_orders"]])
    copies = "select coalesce(sum(n - 1), 0) from (select count(*) n from {} group by " + row + ")"
    assert _one(con, copies.format("shop")) == gen.duplicate_rows["shop_orders"] > 0
    # Apart from those copies, order ids are unique.
    ids = _one(con, "select count(*) - count(distinct order_id) from shop_valid")
    assert ids == _one(con, copies.format("shop_valid"))


def test_late_rows_land_one_or_two_days_after_their_event(
    gen: GenerationSummary, con: duckdb.DuckDBPyConnection
) -> None:
    shop_lag = dict(
        con.execute("""select datediff('day', order_ts::timestamptz::date, file_date) lag, count(*)
        from shop_valid group by 1""").fetchall()
    )
    pos_lag = dict(
        con.execute("""select datediff('day', timezone(store_tz, sold_at_local::timestamp)::date,
        file_date) lag, count(*) from pos group by 1""").fetchall()
    )
    for lags, source in ((shop_lag, "shop_orders"), (pos_lag, "pos_sales")):
        assert set(lags) <= {0, 1, 2}, source
        assert lags.get(1, 0) + lags.get(2, 0) > 0, source
    assert pos_lag.get(1, 0) + pos_lag.get(2, 0) == gen.late_rows["pos_sales"]
    on_time = {
        "web": "make_timestamp(started_at_ms * 1000)",
        "email": "event_ts::timestamptz",
        "support": "created_at::timestamptz",
    }
    for view, ts in on_time.items():
        assert _one(con, f"select count(*) from {view} where {ts}::date <> file_date") == 0, view
    # CRM: only the initial full export (first file) carries older updated_at values.
    assert (
        _one(
            con,
            f"""select count(*) from crm where updated_at::timestamptz::date <> file_date
        and file_date <> date '{gen.start_date}'""",
        )
        == 0
    )


def test_formats_vary_and_normalise(con: duckdb.DuckDBPyConnection) -> None:
    assert _one(con, "select count(distinct currency) from shop_valid") > 3  # case varies
    assert _one(con, "select count(*) from shop where customer_email <> trim(customer_email)") > 0
    assert _one(con, "select count(*) from shop where customer_email <> lower(customer_email)") > 0
    assert _one(con, "select count(distinct right(order_ts, 6)) from shop_valid") >= 3  # several UTC offsets
    assert _one(con, "select count(distinct store_tz) from pos") == 3
    assert _one(con, "select count(*) from shop where order_status = 'refunded'") > 0
    assert _one(con, "select count(*) from pos where is_return and amount < 0 and discount_amount = 0") > 0
    anonymous = _one(con, "select avg((loyalty_card is null)::int) from pos where not is_return")
    assert 0.1 < anonymous < 0.4
    phones = [r[0] for r in con.execute("select distinct source_key from ids where source_key ^@ '+'"
                                        " or source_key ^@ '0' or source_key ^@ '('").fetchall()]  # fmt: skip
    assert len({re.sub(r"[0-9]", "9", p) for p in phones}) == 6  # all six phone layouts occur
    for phone in phones:
        digits = re.sub(r"\D", "", phone)
        digits = digits[2:] if digits.startswith("00") else digits
        digits = "44" + digits[1:] if digits.startswith("0") else digits
        assert re.fullmatch(r"447\d{9}", digits), phone
    cards = [
        r[0]
        for r in con.execute(
            "select distinct loyalty_card from pos where loyalty_card is not null"
        ).fetchall()
    ]
    assert len({re.sub(r"\d", "9", c) for c in cards}) == 5
    assert all(re.fullmatch(r"LC\d{8}", re.sub(r"[^A-Z0-9]", "", c.upper())) for c in cards)


def test_crm_reexports_changed_customers(con: duckdb.DuckDBPyConnection) -> None:
    changed = con.execute("""
        select crm_customer_id, count(distinct coalesce(phone, '')), count(distinct city),
            count(distinct updated_at)
        from crm group by 1 having count(*) > 1""").fetchall()
    assert changed
    assert all(updates > 1 and (phones > 1 or cities > 1) for _, phones, cities, updates in changed)


# --- ground truth -----------------------------------------------------------------------------------
def test_ground_truth_has_every_type_and_churn(
    gen: GenerationSummary, con: duckdb.DuckDBPyConnection
) -> None:
    by_type = dict(con.execute("select behaviour_type, count(*) from truth group by 1").fetchall())
    assert set(by_type) == {*BEHAVIOUR_TYPES, PROSPECT}
    assert _one(con, "select count(*) from truth") == CUSTOMERS
    assert _one(con, "select count(*) from truth where churn_date is not null") > 0
    assert (
        _one(con, "select count(*) from truth where churn_date is null and first_purchase_date is not null")
        > 0
    )
    assert (
        _one(
            con,
            f"""select count(*) from truth where first_purchase_date < date '{gen.start_date}'
        or first_purchase_date > date '{gen.end_date}' or churn_date < first_purchase_date""",
        )
        == 0
    )
    assert (
        _one(
            con,
            f"""select count(*) from truth where behaviour_type = '{PROSPECT}'
        and (first_purchase_date is not null or is_guest)""",
        )
        == 0
    )
    assert _one(con, "select count(*) from truth where is_guest <> (crm_customer_id is null)") == 0
    assert _one(con, "select count(*) from truth where is_guest") > 0
    # New customers keep arriving: first purchases spread over the window.
    assert (
        _one(con, f"select count(*) from truth where first_purchase_date > date '{gen.start_date}' + 60") > 0
    )


def test_no_purchase_outside_first_purchase_and_churn(con: duckdb.DuckDBPyConnection) -> None:
    """Purchases traceable to a person (logged-in orders, card sales) lie within the person's life."""
    outside = _one(
        con,
        """
        with purchases as (
            select t.person_id, s.order_ts::timestamptz::date d
            from shop_valid s join truth t on t.crm_customer_id = s.customer_ref
            union all
            select i.person_id, timezone(p.store_tz, p.sold_at_local::timestamp)::date
            from pos p join ids i on i.source = 'pos_sales' and i.source_key = p.loyalty_card
            where not p.is_return
        )
        select count(*) from purchases p join truth t using (person_id)
        where p.d < t.first_purchase_date or p.d > coalesce(t.churn_date, date '2999-01-01')""",
    )
    assert outside == 0
    traced = _one(con, "select count(*) from shop_valid where customer_ref is not null")
    assert traced > 0


def test_identities_are_exactly_the_keys_in_the_files(con: duckdb.DuckDBPyConnection) -> None:
    diff = _one(
        con,
        """
        with f as (
            select 'shop_orders' source, unnest([customer_ref, customer_email, customer_phone]) k
            from shop_valid
            union all select 'pos_sales', loyalty_card from pos
            union all select 'web_sessions', unnest([crm_customer_id, user_email]) from web
            union all select 'crm_customers', unnest([crm_customer_id, email, phone, loyalty_card]) from crm
            union all select 'email_events', email from email
            union all select 'support_tickets', unnest([customer_email, customer_phone]) from support
        ),
        files as (select distinct source, k from f where k is not null),
        truth_keys as (select distinct source, source_key k from ids)
        select (select count(*) from (select * from files except select * from truth_keys))
             + (select count(*) from (select * from truth_keys except select * from files))""",
    )
    assert diff == 0
    # A key written one way belongs to one person.
    assert (
        _one(
            con,
            """select count(*) from (
                select source_key from ids group by 1 having count(distinct person_id) > 1)""",
        )
        == 0
    )


def test_people_appear_across_channels(con: duckdb.DuckDBPyConnection) -> None:
    share = _one(
        con,
        """select avg((n >= 3)::int) from (
            select t.person_id, count(distinct i.source) n
            from truth t left join ids i using (person_id) group by 1)""",
    )
    assert share > 0.5
    # The CRM id, the email and the loyalty card link channels for the same person.
    linked = _one(
        con,
        """select count(distinct person_id) from ids where source = 'pos_sales'
        and person_id in (select person_id from ids where source = 'shop_orders')""",
    )
    assert linked > 0
