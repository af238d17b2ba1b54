"""Tests of the demo data generator: determinism, file layout, the documented columns, the dirt it
promises (duplicates, late rows, invalid rows, formats) and the consistency of its ground truth,
the latent interests and social-media profiles included, the optional columns added later
(ticket subjects, birth dates, promotion codes), which draw from streams of their own, and the demo
campaigns with their planted responses and true uplift (custseg.demo.truth.campaign_uplift_truth)."""

from __future__ import annotations

import calendar
import csv
import hashlib
import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import custseg.demo.generate as generator
from custseg import catalogue
from custseg.campaigns import is_control, load_campaigns, rfm_segments
from custseg.demo.generate import (
    BEHAVIOUR_TYPES,
    CATEGORIES,
    GENERIC_SUBJECTS,
    INVALID_KINDS,
    PROMO_CODES,
    PROSPECT,
    SOCIAL_INTERACTIONS,
    SOCIAL_LEVELS,
    SOCIAL_PLATFORMS,
    SOURCE_COLUMNS,
    SOURCE_FILES,
    SOURCES,
    SUPPORT_SUBJECTS,
    SUPPORT_TOPICS,
    GenerationSummary,
    generate,
)
from custseg.demo.truth import campaign_uplift_truth
from custseg.hashing import keyed_hash
from custseg.sources import load_sources

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "sources.md"
KEYWORD_SEED = ROOT / "dbt_project" / "seeds" / "ticket_topic_keywords.csv"
#: Columns added after the first release, each from a stream of its own: landing folder -> column.
NEW_COLUMNS = {"shop/orders": "promo_code", "crm/customers": "birth_date", "support/tickets": "subject"}
END = date(2026, 3, 31)
DAYS = 90
CUSTOMERS = 400
#: the key the warehouse would run with: the holdout (who is treated) follows it
HASH_KEY = "test-generate-key"
#: The demo campaigns as the brief states them (not read from the generator): id -> (targets, true response rate)
WINBACK, LOYALTY, NO_EFFECT = "demo-winback-voucher", "demo-loyalty-perks", "demo-newsletter-no-effect"
STATED_CAMPAIGNS = {
    WINBACK: ({"At Risk", "Can't Lose Them", "Hibernating", "About To Sleep", "Need Attention", "Lost"}, 0.25),
    LOYALTY: ({"Champions", "Loyal", "Potential Loyalist", "New", "Promising"}, 0.15),
    NO_EFFECT: ({"Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About To Sleep",
                 "At Risk", "Can't Lose Them", "Hibernating", "Lost"}, 0.0),
}
FILE_DATE = r"regexp_extract(filename, '(\d{4}-\d{2}-\d{2})\.[a-z]+$', 1)::date"
SOCIAL_JSON_COLUMNS = "{" + ", ".join(f"{c}: 'VARCHAR'" for c in SOURCE_COLUMNS["social_interactions"]) + "}"


def _normalised(handle: str) -> str:
    """SQL: a CRM handle as the platform shows it: lower case, no "@", no spaces."""
    return f"lower(replace(replace({handle}, '@', ''), ' ', ''))"


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
        hash_key=HASH_KEY,
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
    _social_views(c, root, gen.ground_truth_dir)
    c.execute("""create view shop_valid as select * from shop
        where coalesce(order_id, '') <> ''
          and try_cast(order_ts as timestamptz) is not null
          and try_cast(order_total as decimal(18, 2)) >= 0
          and upper(trim(currency)) in ('EUR', 'GBP', 'USD')""")
    return c


def _social_views(c: duckdb.DuckDBPyConnection, root: Path, truth_dir: Path, kind: str = "view") -> None:
    """social (every value as text), truth and ids views (or tables: `kind`)."""
    c.execute(f"""create {kind} social as select * exclude (filename), {FILE_DATE} as file_date
        from read_json('{root}/social/interactions/*.jsonl', filename = true,
                       columns = {SOCIAL_JSON_COLUMNS})""")
    c.execute(f"create {kind} truth as select * from read_parquet('{truth_dir}/customers.parquet')")
    c.execute(f"create {kind} ids as select * from read_parquet('{truth_dir}/identities.parquet')")


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """A year of 2,000 customers (the size the brief's volumes are stated for), for the latent rates."""
    summary = generate(tmp_path_factory.mktemp("year"), customers=2000, days=365, end_date=END, seed=11)
    c = duckdb.connect()
    c.execute("set TimeZone = 'UTC'")
    root = summary.landing_dir
    _social_views(c, root, summary.ground_truth_dir, "table")
    c.execute(f"create table web as select * from read_json('{root}/web/sessions/*.jsonl')")
    c.execute(f"create table crm as select * from read_csv('{root}/crm/customers/*.csv', all_varchar = true)")
    c.execute(f"create table shop as select * from read_csv('{root}/shop/orders/*.csv', all_varchar = true)")
    c.execute(f"""create table support as select *, {FILE_DATE} as file_date
        from read_json('{root}/support/tickets/*.jsonl', filename = true)""")
    c.execute("create table holders as select * from truth where social_handle is not null")
    c.execute("""create table per_holder as select h.*, count(s.handle) n,
            count(*) filter (where s.interaction_type in ('share', 'mention')) n_advocacy
        from holders h left join social s on s.handle = h.social_handle
        group by all""")
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
    assert any(k.startswith("landing/social/interactions/") for k in changed)


def test_new_streams_leave_the_other_channels_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The social profile and the web categories come from streams of their own: other draws of those
    two streams change nothing but the social files, the web category and the CRM's social columns."""
    args = {"customers": 300, "days": 40, "end_date": END, "seed": 5}
    generate(tmp_path / "a", **args)
    real = generator._streams

    def swapped(seed: int) -> dict:
        streams, other = real(seed), real(seed + 1)
        return {**streams, "social": other["social"], "interests": other["interests"]}

    monkeypatch.setattr(generator, "_streams", swapped)
    generate(tmp_path / "b", **args)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    for folder in ("shop/orders", "pos/sales", "marketing/email_events", "support/tickets"):
        files = [k for k in a if k.startswith(f"landing/{folder}/")]
        assert files and all(a[k] == b[k] for k in files), folder
    assert any(a[k] != b[k] for k in a if k.startswith("landing/social/interactions/"))

    web_a, web_b = _text_rows(tmp_path / "a", "web/sessions"), _text_rows(tmp_path / "b", "web/sessions")
    strip = [{k: v for k, v in json.loads(x).items() if k != "category"} for x in (*web_a, *web_b)]
    assert strip[: len(web_a)] == strip[len(web_a) :] and web_a != web_b
    crm_a, crm_b = _csv_rows(tmp_path / "a", "crm/customers"), _csv_rows(tmp_path / "b", "crm/customers")
    social = ("social_platform", "social_handle")
    assert [_without(r, *social) for r in crm_a] == [_without(r, *social) for r in crm_b]
    assert crm_a != crm_b


def _text_rows(root: Path, folder: str) -> list[str]:
    return [line for p in sorted((root / "landing" / folder).iterdir())
            for line in p.read_text(encoding="utf-8").splitlines()]  # fmt: skip


def _csv_rows(root: Path, folder: str) -> list[dict[str, str]]:
    """Rows of a CSV source, every file, as dicts; values kept as written (stray spaces included)."""
    return [row for p in sorted((root / "landing" / folder).iterdir())
            for row in csv.DictReader(p.open(encoding="utf-8"))]  # fmt: skip


def _without(row: dict, *columns: str) -> dict:
    return {k: v for k, v in row.items() if k not in columns}


def test_the_new_columns_leave_every_existing_column_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ticket subjects, birth dates and promotion codes come from the streams appended last: other draws
    of those change the new columns and nothing else (not a byte of another file, not another column),
    which is what keeps every column that existed before them byte-identical."""
    args = {"customers": 300, "days": 40, "end_date": END, "seed": 5}
    generate(tmp_path / "a", **args)
    real = generator._streams
    new_streams = ("subjects", "birthdays", "promos")
    # appended in this order; only the campaigns' and the consent flags' streams came after them
    assert generator._STREAMS[-len(new_streams) - 2 :] == (*new_streams, "campaigns", "consent")

    def swapped(seed: int) -> dict:
        streams, other = real(seed), real(seed + 1)
        return {**streams, **{name: other[name] for name in new_streams}}

    monkeypatch.setattr(generator, "_streams", swapped)
    generate(tmp_path / "b", **args)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a.keys() == b.keys()
    changed = {k.rsplit("/", 1)[0].removeprefix("landing/") for k in a if a[k] != b[k]}
    assert changed == {*NEW_COLUMNS, "ground_truth"}
    for folder, column in NEW_COLUMNS.items():
        if folder.endswith("tickets"):
            rows_a = [json.loads(x) for x in _text_rows(tmp_path / "a", folder)]
            rows_b = [json.loads(x) for x in _text_rows(tmp_path / "b", folder)]
        else:
            rows_a, rows_b = _csv_rows(tmp_path / "a", folder), _csv_rows(tmp_path / "b", folder)
        assert [_without(r, column) for r in rows_a] == [_without(r, column) for r in rows_b], folder
        assert [r[column] for r in rows_a] != [r[column] for r in rows_b], folder
    truth_a, truth_b = (pq.read_table(tmp_path / x / "ground_truth/customers.parquet") for x in "ab")
    assert truth_a.drop_columns(["birth_date"]) == truth_b.drop_columns(["birth_date"])
    assert pq.read_table(tmp_path / "a/ground_truth/identities.parquet").equals(
        pq.read_table(tmp_path / "b/ground_truth/identities.parquet"))


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
    assert {p.name for p in gen.ground_truth_dir.iterdir()} == {
        "customers.parquet", "identities.parquet", "campaign_responses.parquet"}
    assert (gen.out_dir / "campaigns.yml").is_file()


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
             "email_events": "email", "support_tickets": "support",
             "social_interactions": "social"}  # fmt: skip
    assert set(views) == set(SOURCES)
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
    social_row = ", ".join(["file_date", *SOURCE_COLUMNS["social_interactions"]])
    social_copies = f"select coalesce(sum(n - 1), 0) from (select count(*) n from social group by {social_row})"
    assert _one(con, social_copies) == gen.duplicate_rows["social_interactions"] > 0
    assert _one(con, "select count(*) - count(distinct interaction_id) from social") == _one(con, social_copies)


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
    social_lag = dict(
        con.execute("""select datediff('day', interacted_at::timestamptz::date, file_date) lag, count(*)
        from social group by 1""").fetchall()
    )
    assert set(social_lag) <= {0, 1, 2}
    assert social_lag.get(1, 0) + social_lag.get(2, 0) == gen.late_rows["social_interactions"] > 0
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
    """Purchases traceable to a person (logged-in orders, card sales) lie within the person's life; the
    planted campaign responses (SO-C...) are outside the latent buying process and may not."""
    outside = _one(
        con,
        """
        with purchases as (
            select t.person_id, s.order_ts::timestamptz::date d
            from shop_valid s join truth t on t.crm_customer_id = s.customer_ref
            where s.order_id not like 'SO-C%'
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
            union all select 'social_interactions', user_email from social
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


# --- social media and interests -------------------------------------------------------------------
def test_social_vocabulary_is_the_catalogues() -> None:
    assert SOCIAL_PLATFORMS == catalogue.SOCIAL_PLATFORMS
    assert SOCIAL_INTERACTIONS == catalogue.SOCIAL_INTERACTIONS
    for table in ("social_interactions", "crm_customers", "web_sessions"):
        canonical = [c.name for c in catalogue.CHANNELS_BY_TABLE[table].columns]
        assert set(canonical) - {"interacted_at", "started_at"} <= {
            c.removesuffix("_ms") for c in SOURCE_COLUMNS[table]
        }, table
    # strangers' handle words never end a customer's handle and vice versa (their handles stay disjoint)
    names = [n.lower() for n in generator.LAST_NAMES]
    assert not [(w, n) for w in generator._STRANGER_WORDS[1] for n in names if w.endswith(n) or n.endswith(w)]


def test_social_rows_are_well_formed(con: duckdb.DuckDBPyConnection) -> None:
    bad = {
        "id": "not regexp_full_match(interaction_id, 'SI-[0-9]{10}')",
        "time": "not regexp_full_match(interacted_at, '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ')",
        "platform": f"platform not in {SOCIAL_PLATFORMS}",
        "type": f"interaction_type not in {SOCIAL_INTERACTIONS}",
        "handle": "handle is null or handle <> lower(handle) or handle like '%@%' or handle like '% %'",
        "post": """(post_id is null) <> (interaction_type in ('follow', 'mention'))
            or not regexp_full_match(post_id, 'P-(IG|FB|TT|X)-[0-9]{6}')
            or split_part(post_id, '-', 2) <> case platform when 'instagram' then 'IG' when 'facebook' then 'FB'
                                                            when 'tiktok' then 'TT' else 'X' end""",
    }
    for name, condition in bad.items():
        assert _one(con, f"select count(*) from social where {condition}") == 0, name
    assert _one(con, "select count(distinct interaction_type) from social") == len(SOCIAL_INTERACTIONS)
    assert _one(con, "select count(distinct platform) from social") == len(SOCIAL_PLATFORMS)


def test_social_emails_belong_to_the_handles_person(con: duckdb.DuckDBPyConnection) -> None:
    """The e-mail on a lead-form row is the e-mail of the person behind the handle, as other channels
    write it; strangers never give one, and customers give one on ~10-15% of their rows."""
    rows = con.execute("""
        select s.user_email is not null, t.person_id is not null, count(*),
            count(*) filter (where s.user_email is not null and i.person_id is distinct from t.person_id)
        from social s
        left join truth t on t.social_handle = s.handle
        left join ids i on i.source = 'social_interactions' and i.source_key = s.user_email
        group by all""").fetchall()
    counts = {(emailed, known): (n, wrong) for emailed, known, n, wrong in rows}
    assert (True, False) not in counts  # strangers
    assert all(wrong == 0 for _, wrong in counts.values())
    emailed, plain = counts[(True, True)][0], counts[(False, True)][0]
    assert 0.06 < emailed / (emailed + plain) < 0.2
    # written like the other channels' e-mails: the variants of the key table, case and spaces vary
    assert _one(con, "select count(*) from social where user_email <> lower(trim(user_email))") > 0


def test_social_truth_is_consistent(year: duckdb.DuckDBPyConnection) -> None:
    assert _one(year, "select count(*) from truth where (social_handle is null) <> (social_platform is null)"
                      " or (social_handle is null) <> (social_level is null)") == 0  # fmt: skip
    assert _one(year, "select count(*) - count(distinct social_handle) from holders") == 0
    assert _one(year, "select count(*) from holders where social_handle <> lower(social_handle)"
                      " or social_handle similar to '.*[@ ].*'") == 0  # fmt: skip
    assert _one(year, f"select count(*) from holders where social_platform not in {SOCIAL_PLATFORMS}"
                      f" or social_level not in {SOCIAL_LEVELS}") == 0  # fmt: skip
    # advocates and CRM handles only among account holders, CRM handles only for CRM customers
    assert _one(year, "select count(*) from truth where is_advocate and social_level is distinct from 'low'"
                      " and social_level is distinct from 'medium' and social_level is distinct from 'high'") == 0
    assert _one(year, "select count(*) from truth where social_handle_in_crm"
                      " and (social_handle is null or is_guest)") == 0  # fmt: skip
    shares = year.execute("""select avg((social_handle is not null)::int) filter (where not is_guest),
            avg((social_handle is not null)::int) filter (where is_guest),
            avg(social_handle_in_crm::int) filter (where social_handle is not null and not is_guest),
            avg(is_advocate::int) filter (where social_level <> 'none')
        from truth""").fetchone()
    assert shares is not None
    account, guest_account, in_crm, advocates = shares
    assert 0.40 < account < 0.50 and 0.05 < guest_account < 0.40
    assert 0.62 < in_crm < 0.78 and 0.18 < advocates < 0.32
    levels = dict(year.execute("select social_level, count(*) / sum(count(*)) over () from holders"
                               " group by 1").fetchall())  # fmt: skip
    for level, expected in zip(SOCIAL_LEVELS, (0.30, 0.35, 0.25, 0.10), strict=True):
        assert abs(levels[level] - expected) < 0.06, level
    assert _one(year, f"select count(*) from truth where favourite_category not in {CATEGORIES}") == 0


def test_only_advocates_share_or_mention_and_silent_people_never_appear(year: duckdb.DuckDBPyConnection) -> None:
    assert _one(year, "select count(*) from per_holder where n_advocacy > 0 and not is_advocate") == 0
    assert _one(year, "select count(*) from per_holder where social_level = 'none' and n > 0") == 0
    share = _one(year, "select sum(n_advocacy) / sum(n) from per_holder where is_advocate")
    assert 0.25 < float(share) < 0.45  # type: ignore[arg-type]
    # a handle interacts on its own platform only
    assert _one(year, "select count(*) from social s join holders h on h.social_handle = s.handle"
                      " where s.platform <> h.social_platform") == 0  # fmt: skip


def test_engagement_level_sets_the_activity(year: duckdb.DuckDBPyConnection) -> None:
    mean = dict(year.execute("select social_level, avg(n) from per_holder group by 1").fetchall())
    assert mean["none"] == 0 < mean["low"] < mean["medium"] < mean["high"]
    assert mean["high"] > 5 * mean["low"]
    total = _one(year, "select count(*) from social")
    assert 5_000 < total < 25_000  # type: ignore[operator]
    # activity fades after churn: interactions per day (pooled over the churned) from 30 days after
    # churn on are well below those between the first purchase and churn
    rates = year.execute(f"""
        with spans as (
            select h.social_handle, h.first_purchase_date first, h.churn_date churn
            from holders h where h.churn_date < date '{END}' - 120 and h.social_level <> 'none'
        ),
        counted as (
            select p.*, count(*) filter (where d between p.first and p.churn) n_before,
                count(*) filter (where d > p.churn + 30) n_after
            from spans p left join (select handle, interacted_at::timestamptz::date d from social) s
                on s.handle = p.social_handle
            group by all
        )
        select sum(n_before) / sum(churn - first + 1), sum(n_after) / sum(date '{END}' - churn - 30)
        from counted""").fetchone()
    assert rates is not None
    before, after = rates
    assert before > 0 and after < 0.5 * before


def test_strangers_are_in_no_truth_and_no_crm(year: duckdb.DuckDBPyConnection) -> None:
    strangers = year.execute("""select count(*), count(distinct handle) from social
        where handle not in (select social_handle from holders)""").fetchone()
    assert strangers is not None
    rows, handles = strangers
    assert 0.07 < rows / _one(year, "select count(*) from social") < 0.13  # type: ignore[operator]
    assert 0 < handles < rows
    assert _one(year, f"""select count(*) from crm where {_normalised("social_handle")} in (
        select handle from social where handle not in (select social_handle from holders))""") == 0


def test_crm_handles_are_the_truth_handles_as_entered(year: duckdb.DuckDBPyConnection) -> None:
    assert _one(year, "select count(*) from crm where (social_handle is null) <> (social_platform is null)") == 0
    mismatched = _one(year, f"""select count(*) from crm c join truth t using (crm_customer_id)
        where c.social_handle is not null and ({_normalised("c.social_handle")} is distinct from t.social_handle
                                              or c.social_platform is distinct from t.social_platform)""")
    assert mismatched == 0
    in_crm = _one(year, "select count(distinct crm_customer_id) from crm where social_handle is not null")
    assert in_crm == _one(year, "select count(*) from truth where social_handle_in_crm") > 0
    dirt = {
        "with @": "social_handle like '@%'",
        "without @": "social_handle not like '%@%'",
        "upper case": "social_handle <> lower(social_handle)",
        "stray spaces": "social_handle <> trim(social_handle)",
    }
    for name, condition in dirt.items():
        assert _one(year, f"select count(*) from crm where {condition}") > 0, name


def test_web_category_follows_the_favourite_category(year: duckdb.DuckDBPyConnection) -> None:
    row = year.execute("""
        select avg((w.category is null)::int),
            avg((lower(w.category) = lower(t.favourite_category))::int) filter (where w.category is not null
                                                                              and t.person_id is not null),
            count(distinct w.category), count(distinct lower(w.category))
        from web w left join truth t using (crm_customer_id)""").fetchone()
    assert row is not None
    no_category, favourite, spellings, categories = row
    assert 0.07 < no_category < 0.13
    assert 0.55 < favourite < 0.65
    assert categories == len(CATEGORIES) and spellings > categories  # case varies as in shop_orders


# --- optional columns: ticket subjects, birth dates, promotion codes --------------------------------
def _keyword_seed() -> list[tuple[str, str]]:
    with KEYWORD_SEED.open(encoding="utf-8") as fh:
        return [(row["keyword"].lower(), row["topic"]) for row in csv.DictReader(fh)]


def _topics_named(subject: str) -> set[str]:
    """Topics whose keywords the subject contains, matched as int_support_tickets_attributed does."""
    return {topic for keyword, topic in _keyword_seed() if keyword in subject.lower()}


def test_the_generator_writes_every_column_the_sources_file_maps() -> None:
    """config/sources.yml maps every catalogue column (tests/test_catalogue.py); each one it reads is written."""
    sources = load_sources(ROOT / "config" / "sources.yml")
    assert set(sources) == set(SOURCES)
    for name, source in sources.items():
        read = [m.source_column for m in source.columns] + list(source.consumed)
        assert set(read) == set(SOURCE_COLUMNS[name]), name


def test_subject_templates_name_their_topic_and_no_other_per_the_keyword_seed() -> None:
    seed_topics = {topic for _, topic in _keyword_seed()}
    assert seed_topics == set(SUPPORT_TOPICS)
    assert len(SUPPORT_SUBJECTS) == len(SUPPORT_TOPICS)
    for topic, subjects in zip(SUPPORT_TOPICS, SUPPORT_SUBJECTS, strict=True):
        assert len(subjects) >= 3, topic
        for subject in subjects:
            assert _topics_named(subject) == {topic}, subject
            assert _topics_named(subject.upper()) == {topic}, subject
    assert GENERIC_SUBJECTS and all(not _topics_named(s) for s in GENERIC_SUBJECTS)
    # JSON lines are written unescaped: no quote, backslash or control character
    everything = [s for t in SUPPORT_SUBJECTS for s in t] + list(GENERIC_SUBJECTS)
    assert not [s for s in everything if re.search(r'["\\\x00-\x1f]', s)]


def test_every_ticket_has_a_subject_naming_its_topic(
    con: duckdb.DuckDBPyConnection, year: duckdb.DuckDBPyConnection
) -> None:
    for c in (con, year):
        rows = c.execute("select topic, subject from support").fetchall()
        assert rows and all(subject for _, subject in rows)
        named = [(topic, _topics_named(subject)) for topic, subject in rows]
        assert all(found in (set(), {topic}) for topic, found in named)
        # what the pipeline will find (longest keyword of subject + filed topic) is the filed topic
        for topic, subject in rows:
            text = f"{subject} {topic}".lower()
            hits = sorted((-len(k), k, t) for k, t in _keyword_seed() if k in text)
            assert hits and hits[0][2] == topic, subject
    rows = year.execute("select topic, subject from support").fetchall()
    generic = sum(1 for _, subject in rows if not _topics_named(subject)) / len(rows)
    assert 0.04 < generic < 0.18
    spellings = {subject for _, subject in rows}
    assert any(s != s.lower() for s in spellings) and any(s == s.lower() for s in spellings)
    assert {topic for topic, _ in rows} == set(SUPPORT_TOPICS)


def test_recent_tickets_are_more_often_open(year: duckdb.DuckDBPyConnection) -> None:
    rows = year.execute(f"""select file_date > date '{END}' - 3 as last_days, file_date > date '{END}' - 7 as week,
            avg((ticket_status = 'open')::int), count(*), count(nps_score) filter (where ticket_status = 'open')
        from support group by all""").fetchall()
    by = {(last, week): (open_share, n, open_nps) for last, week, open_share, n, open_nps in rows}
    assert by[(True, True)][0] == 1.0 and by[(False, False)][0] < 0.1
    assert all(open_nps == 0 for *_, open_nps in by.values())  # the survey follows a solved ticket
    recent = _one(year, f"select avg((ticket_status = 'open')::int) from support where file_date > date '{END}' - 7")
    assert recent > 3 * by[(False, False)][0]  # type: ignore[operator]


def test_birth_date_is_in_the_birth_year(con: duckdb.DuckDBPyConnection, year: duckdb.DuckDBPyConnection) -> None:
    for c in (con, year):
        bad = {
            "format": "birth_date is not null and not regexp_full_match(birth_date, '\\d{4}-\\d\\d-\\d\\d')",
            "presence": "(birth_date is null) <> (birth_year is null)",
            "year": "year(birth_date::date)::varchar <> birth_year",
        }
        for name, condition in bad.items():
            assert _one(c, f"select count(*) from crm where {condition}") == 0, name
        # one date per customer across re-exports, and it is the truth's
        assert _one(c, "select count(*) from (select crm_customer_id from crm group by 1"
                       " having count(distinct coalesce(birth_date, '')) > 1)") == 0  # fmt: skip
        assert _one(c, """select count(*) from (select distinct crm_customer_id, birth_date::date d from crm) c
            join truth t using (crm_customer_id) where c.d is distinct from t.birth_date""") == 0
        assert _one(c, "select count(*) from crm where birth_date is not null") > 0


def test_birth_dates_cover_the_calendar_and_29_february(
    con: duckdb.DuckDBPyConnection, year: duckdb.DuckDBPyConnection
) -> None:
    assert dict(year.execute("select typeof(birth_date), count(*) from truth group by 1").fetchall()).keys() == {"DATE"}
    months = dict(year.execute("""select month(birth_date), count(*) / sum(count(*)) over () from truth
        where birth_date is not null group by 1""").fetchall())
    assert sorted(months) == list(range(1, 13)) and all(0.05 < s < 0.12 for s in months.values())
    assert _one(year, "select count(*) from truth where day(birth_date) = 31") > 0
    leap_born, leap_day = year.execute("""select
            count(*) filter (where year(birth_date) % 4 = 0 and (year(birth_date) % 100 <> 0
                                                               or year(birth_date) % 400 = 0)),
            count(*) filter (where month(birth_date) = 2 and day(birth_date) = 29)
        from truth""").fetchone()  # type: ignore[misc]
    assert leap_day >= max(1, round(0.005 * leap_born))
    assert leap_day < 0.02 * leap_born  # a small share, not a pile-up
    # 400 customers still have one, and it reaches the CRM file when that person is a CRM customer
    assert _one(con, "select count(*) from truth where strftime(birth_date, '%m-%d') = '02-29'") >= 1
    assert _one(year, "select count(*) from crm where birth_date like '%-02-29'") >= 1


def test_birth_dates_are_uniform_over_real_calendar_days() -> None:
    rng = np.random.default_rng(0)
    years = np.repeat(np.array([1999, 2000, 1900, 0]), 100_000)
    born = generator._birth_dates(rng, years)
    assert born.dtype == np.dtype("datetime64[D]")
    by_year = born.astype("datetime64[Y]").astype(int) + 1970
    known = years > 0
    assert (by_year[known] == years[known]).all()
    for y in (1999, 2000, 1900):
        days = np.unique(born[years == y])
        assert days.size == (366 if calendar.isleap(y) else 365), y
    feb_29 = born[years == 2000] == np.datetime64("2000-02-29")
    assert 1 / 366 + 0.004 < feb_29.mean() < 1 / 366 + 0.006  # natural share plus the forced 0.5%
    # one leap-born person among non-leap ones still gets 29 February
    one = generator._birth_dates(np.random.default_rng(1), np.array([1999, 2001, 1988, 2003]))
    assert str(one[2]) == "1988-02-29"


def test_promo_codes_only_on_discounted_orders(con: duckdb.DuckDBPyConnection, year: duckdb.DuckDBPyConnection) -> None:
    for c in (con, year):
        row = c.execute("""select
                count(*) filter (where promo_code is not null and try_cast(discount_amount as double) = 0),
                avg((promo_code is not null)::int) filter (where try_cast(discount_amount as double) > 0),
                count(*) filter (where try_cast(discount_amount as double) > 0)
            from shop""").fetchone()
        assert row is not None
        on_undiscounted, share, discounted = row
        assert on_undiscounted == 0 and discounted > 0
        assert 0.55 < share < 0.85
        assert _one(c, f"select count(*) from shop where upper(trim(promo_code)) not in {PROMO_CODES}") == 0
    assert 0.64 < _one(year, "select avg((promo_code is not null)::int) from shop"
                             " where try_cast(discount_amount as double) > 0") < 0.76  # type: ignore[operator]
    dirt = {"as issued": "promo_code = upper(trim(promo_code))",
            "case": "promo_code <> upper(promo_code)",
            "stray spaces": "promo_code <> trim(promo_code)"}  # fmt: skip
    for name, condition in dirt.items():
        assert _one(year, f"select count(*) from shop where {condition}") > 0, name
    assert _one(year, "select count(distinct upper(trim(promo_code))) from shop") == len(PROMO_CODES)


# --- demo campaigns: planted responses with a known true effect --------------------------------------
def _responses(truth_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(truth_dir / "campaign_responses.parquet")


def _holdout(key: str, campaign_id: str, crm_customer_id: str) -> bool:
    """The pipeline's side of the holdout for a CRM customer, from the rule and the id spec directly."""
    return is_control(key, campaign_id, keyed_hash(key, "customer:crm", crm_customer_id.strip()), 0.5)


def test_campaigns_file_holds_the_three_demo_campaigns(gen: GenerationSummary) -> None:
    campaigns = {c.campaign_id: c for c in load_campaigns(gen.out_dir / "campaigns.yml")}
    assert set(campaigns) == set(STATED_CAMPAIGNS)
    for campaign_id, (targets, rate) in STATED_CAMPAIGNS.items():
        c = campaigns[campaign_id]
        assert (c.start_date, c.end_date) == (date(2026, 3, 29), date(2026, 3, 31)), campaign_id
        assert (c.conversion_window_days, c.control_share) == (2, 0.5), campaign_id
        assert set(c.target_rfm_segments) == targets and not c.target_playbook_ids, campaign_id
        [planted] = [d for d in generator.DEMO_CAMPAIGNS if d.campaign_id == campaign_id]
        assert planted.response_probability == rate, campaign_id
    assert set(generator.RFM_SEGMENTS) == rfm_segments() == STATED_CAMPAIGNS[NO_EFFECT][0]


def test_realised_responses_are_exactly_the_treated_peoples(
    gen: GenerationSummary, con: duckdb.DuckDBPyConnection
) -> None:
    responses = _responses(gen.ground_truth_dir)
    treated = ~responses.apply(lambda r: _holdout(HASH_KEY, r.campaign_id, r.crm_customer_id), axis=1)
    assert responses["is_realised"].tolist() == treated.tolist()
    # both sides of the holdout have potential responses; the campaign without an effect has none
    by_campaign = responses.groupby("campaign_id")["is_realised"].agg(["sum", "size"])
    assert by_campaign.loc[WINBACK, "sum"] < by_campaign.loc[WINBACK, "size"]
    assert 0 < by_campaign.loc[LOYALTY, "sum"] < by_campaign.loc[LOYALTY, "size"]
    assert NO_EFFECT not in by_campaign.index
    assert gen.campaign_responses == {WINBACK: by_campaign.loc[WINBACK, "sum"],
                                      LOYALTY: by_campaign.loc[LOYALTY, "sum"], NO_EFFECT: 0}
    # in the landing files: the treated people's responses, each once, and none of the control people's
    landed = con.execute("""select order_id, order_ts, customer_ref, customer_email, customer_phone, currency,
            order_total, discount_amount, order_status, promo_code, file_date, count(*) over (partition by order_id) n
        from shop where order_id like 'SO-C%'""").df()
    realised = responses[responses["is_realised"]]
    assert sorted(landed["order_id"]) == sorted(realised["order_id"])
    assert not set(responses.loc[~responses["is_realised"], "order_id"]) & set(landed["order_id"])
    assert (landed["n"] == 1).all()
    # clean enough to reach the pipeline exactly: the person's CRM id, EUR, paid in full, on its own day
    rows = landed.merge(realised, on="order_id")
    assert (rows["customer_ref"] == rows["crm_customer_id"]).all()
    assert (rows["currency"] == "EUR").all() and (rows["discount_amount"] == "0.00").all()
    assert (rows["order_status"] == "completed").all()
    assert rows["promo_code"].isna().all() and rows["customer_phone"].isna().all()
    assert (rows["order_total"] == rows["amount_eur"].map("{:.2f}".format)).all()
    utc_day = pd.to_datetime(rows["order_ts"], utc=True, format="ISO8601").dt.date
    assert (utc_day == rows["response_date"]).all() and (rows["file_date"] == rows["response_date"]).all()
    assert set(rows["response_date"]) == {date(2026, 3, 30), date(2026, 3, 31)}
    # ids that cannot be a normal order's
    assert rows["order_id"].str.fullmatch(r"SO-C\d\d-\d{9}").all()
    assert _one(con, "select count(*) from shop where order_id not like 'SO-C%'"
                     " and not regexp_full_match(order_id, 'SO-\\d{9}') and order_id <> ''") == 0  # fmt: skip


def test_the_holdout_follows_the_configured_hash_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the generator treats people as a warehouse run with CUSTSEG_HASH_KEY would."""
    monkeypatch.setenv("CUSTSEG_HASH_KEY", "another-key")
    summary = generate(tmp_path / "env", customers=300, days=20, end_date=END, seed=3)
    responses = _responses(summary.ground_truth_dir)
    for key, expected in (("another-key", True), (HASH_KEY, False)):
        control = responses.apply(lambda r, k=key: _holdout(k, r.campaign_id, r.crm_customer_id), axis=1)
        assert (responses["is_realised"] == ~control).all() == expected, key


def test_potential_responses_occur_at_the_planted_rate(tmp_path: Path) -> None:
    """Among the people with a CRM id a campaign is meant for (bought by the campaigns' first night, the last time
    45 days or more before it for the win-back, less for the perks), a share u responds to each campaign
    (binomial, 4.5 standard errors), on one of the two days of the window, for about 60 EUR; guests and people
    not yet customers never do."""
    summary = generate(tmp_path, customers=6000, days=120, end_date=END, seed=21, hash_key=HASH_KEY)
    people = pd.read_parquet(summary.ground_truth_dir / "customers.parquet")
    first_night = END - timedelta(days=2)
    last = people["last_purchase_before_campaigns"]
    customers_by_then = last.notna() & (people["first_purchase_date"] <= first_night)
    lapsed = pd.Series([(first_night - d).days if customer else -1 for d, customer in zip(last, customers_by_then,
                                                                                          strict=True)],
                       index=people.index)
    assert (lapsed[customers_by_then] >= 0).all()
    eligible_by_campaign = {
        "demo-winback-voucher": set(people.loc[~people["is_guest"] & customers_by_then & (lapsed >= 45),
                                               "crm_customer_id"]),
        "demo-loyalty-perks": set(people.loc[~people["is_guest"] & customers_by_then & (lapsed < 45),
                                             "crm_customer_id"]),
        "demo-newsletter-no-effect": set(people.loc[~people["is_guest"] & customers_by_then, "crm_customer_id"]),
    }
    assert all(300 < len(eligible) < len(people) for eligible in eligible_by_campaign.values())
    responses = _responses(summary.ground_truth_dir)
    assert not responses.duplicated(["campaign_id", "crm_customer_id"]).any()
    for campaign_id, (_, rate) in STATED_CAMPAIGNS.items():
        mine = responses[responses["campaign_id"] == campaign_id]
        eligible = eligible_by_campaign[campaign_id]
        assert set(mine["crm_customer_id"]) <= eligible, campaign_id
        share = len(mine) / len(eligible)
        assert abs(share - rate) <= 4.5 * np.sqrt(rate * (1 - rate) / len(eligible)), campaign_id
        if rate == 0:
            assert mine.empty
            continue
        days = mine["response_date"].value_counts(normalize=True)
        assert set(days.index) == {date(2026, 3, 30), date(2026, 3, 31)}
        assert abs(days.iloc[0] - 0.5) <= 4.5 * np.sqrt(0.25 / len(mine)), campaign_id
        amounts = mine["amount_eur"]
        assert amounts.min() >= 1.0 and (amounts.round(2) == amounts).all()
        assert abs(amounts.mean() - 60) <= 4.5 * amounts.std() / np.sqrt(len(mine)), campaign_id
        # the control share of the potential responders is the holdout's
        control = 1 - mine["is_realised"].mean()
        assert abs(control - 0.5) <= 4.5 * np.sqrt(0.25 / len(mine)), campaign_id


def test_a_single_day_of_data_plants_no_response(tmp_path: Path) -> None:
    """The responses' days (the last two) would begin before a one-day window: nothing is planted, and the
    campaigns file is still written."""
    summary = generate(tmp_path, customers=200, days=1, end_date=END, hash_key=HASH_KEY)
    assert _responses(summary.ground_truth_dir).empty
    assert dict(summary.campaign_responses) == dict.fromkeys(STATED_CAMPAIGNS, 0)
    assert "SO-C" not in (summary.landing_dir / "shop/orders/2026-03-31.csv").read_text(encoding="utf-8")
    assert len(load_campaigns(summary.out_dir / "campaigns.yml")) == 3


def _landing_lines(root: Path) -> dict[str, list[str]]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8").splitlines(keepends=True)
            for p in sorted((root / "landing").rglob("*.*")) if p.suffix != ".parquet"}  # fmt: skip


def test_planting_changes_no_other_landing_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a run that writes no response (the append step switched off), every landing file is
    byte-identical except the shop orders of the window's last two days, which only gain SO-C lines at their
    end; and other draws of the campaigns' stream change those lines and nothing else."""
    args = {"customers": 300, "days": 30, "end_date": END, "seed": 9, "hash_key": HASH_KEY}
    planted = generate(tmp_path / "planted", **args)
    real_append, real_streams = generator._append_shop_responses, generator._streams

    def no_append(root: Path, responses: object, people: generator._People, *_: object) -> generator._Written:
        return generator._Written(rows=0, seen=np.zeros(generator._N_SLOTS * people.n, dtype=bool))

    monkeypatch.setattr(generator, "_append_shop_responses", no_append)
    generate(tmp_path / "bare", **args)
    monkeypatch.setattr(generator, "_append_shop_responses", real_append)
    monkeypatch.setattr(generator, "_streams",
                        lambda seed: {**real_streams(seed), "campaigns": real_streams(seed + 1)["campaigns"]})
    generate(tmp_path / "redrawn", **args)

    a, bare, redrawn = (_digests(tmp_path / x) for x in ("planted", "bare", "redrawn"))
    landing = {k for k in a if k.startswith("landing/")}
    grown = {k for k in landing if a[k] != bare[k]}
    assert grown == {f"landing/shop/orders/{d}.csv" for d in ("2026-03-30", "2026-03-31")}
    assert {k for k in landing if a[k] != redrawn[k]} == grown
    lines = {x: _landing_lines(tmp_path / x) for x in ("planted", "bare", "redrawn")}
    appended = 0
    for name in grown:
        before = lines["bare"][name]
        for run in ("planted", "redrawn"):
            after = lines[run][name]
            assert after[: len(before)] == before, (run, name)
            assert all(line.startswith("SO-C") for line in after[len(before) :]), (run, name)
        appended += len(lines["planted"][name]) - len(before)
    assert appended == sum(planted.campaign_responses.values()) > 0
    assert not any(line.startswith("SO-C") for f in lines["bare"].values() for line in f)
    for x in ("bare", "redrawn"):
        assert a["ground_truth/customers.parquet"] == _digests(tmp_path / x)["ground_truth/customers.parquet"]


# campaign_uplift_truth on a hand-made case: key, ids, dates
TRUTH_KEY = "truth-key"
ASSIGNED, LATER, AS_OF = date(2026, 3, 29), date(2026, 3, 30), date(2026, 3, 31)


def _cid(crm: str) -> str:
    return keyed_hash(TRUTH_KEY, "customer:crm", crm)


@pytest.fixture
def hand_made(tmp_path: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A winback audience assigned on 29 March (window: 30 and 31 March), every case of the definition.

    member  arm      potential winback response  purchases in the window          effect (conversion, revenue)
    A       treated  30 Mar, 50.00 (realised)    the response itself               1, 50
    B       control  31 Mar, 30.00               none                              1, 30
    C       control  31 Mar, 20.00               an order on 30 Mar                0, 20
    D       treated  none                        an order on 31 Mar                0, 0
    E       guest    none (no CRM id)            an order on 30 Mar                0, 0
    F       control  29 Mar, 70.00 (not after    none                              0, 0
                     the assignment)
    H       control  30 Mar, 40.00               an order on 31 Mar, refunded      1, 40 (0, 40 without is_refund)
    I       treated  31 Mar, 10.00 (realised)    the loyalty campaign's response,  0, 10
                                                 on 30 Mar (I is not in its target)
    G       treated  30 Mar, 80.00 (assigned on 30 March: window open on 31 March, not measured)
    Means over the 8 measured: conversion 3/8, revenue 150/8. The newsletter (no responses planted) has A and B
    measured, effect 0; the loyalty campaign only J, assigned on 30 March (nobody measured); "my-own" is not a
    demo campaign.
    """
    crm = {m: f"CRM-000000{i}" for i, m in enumerate("ABCDFGHIJ", start=1)}
    rows = [  # campaign, member, response date, amount, realised
        (WINBACK, "A", date(2026, 3, 30), 50.0, True), (WINBACK, "B", date(2026, 3, 31), 30.0, False),
        (WINBACK, "C", date(2026, 3, 31), 20.0, False), (WINBACK, "F", date(2026, 3, 29), 70.0, False),
        (WINBACK, "H", date(2026, 3, 30), 40.0, False), (WINBACK, "I", date(2026, 3, 31), 10.0, True),
        (WINBACK, "G", date(2026, 3, 30), 80.0, True), (LOYALTY, "I", date(2026, 3, 30), 25.0, True),
    ]
    responses = pd.DataFrame({
        "campaign_id": [r[0] for r in rows],
        "crm_customer_id": [crm[r[1]] for r in rows],
        "response_date": [r[2] for r in rows],
        "amount_eur": [r[3] for r in rows],
        "order_id": [f"SO-C{1 if r[0] == WINBACK else 2:02d}-00000000{i}" for i, r in enumerate(rows)],
        "is_realised": [r[4] for r in rows],
    })  # fmt: skip
    truth = tmp_path / "ground_truth"
    truth.mkdir()
    responses.to_parquet(truth / "campaign_responses.parquet")
    order = {(c, m): o for c, m, o in responses[["campaign_id", "crm_customer_id", "order_id"]].itertuples(index=False)}
    ids = {m: _cid(c) for m, c in crm.items()} | {"E": "guest-customer-id"}
    audience = pd.DataFrame(
        [(WINBACK, ids[m], ASSIGNED, control) for m, control in
         (("A", False), ("B", True), ("C", True), ("D", False), ("E", False), ("F", True), ("H", True), ("I", False))]
        + [(WINBACK, ids["G"], LATER, False), (NO_EFFECT, ids["A"], ASSIGNED, True),
           (NO_EFFECT, ids["B"], ASSIGNED, False), (LOYALTY, ids["J"], LATER, False),
           ("my-own", ids["A"], ASSIGNED, False)],
        columns=["campaign_id", "customer_id", "assigned_on", "is_control"])  # fmt: skip
    purchases = pd.DataFrame(
        [(ids["A"], "shop:" + order[(WINBACK, crm["A"])], date(2026, 3, 30), 50.0, False),
         (ids["C"], "shop:SO-000000001", date(2026, 3, 30), 12.5, False),
         (ids["D"], "pos:RC-0000000001", date(2026, 3, 31), 8.0, False),
         (ids["E"], "shop:SO-000000002", date(2026, 3, 30), 9.0, False),
         (ids["H"], "shop:SO-000000003", date(2026, 3, 31), 0.0, True),
         (ids["I"], "shop:" + order[(LOYALTY, crm["I"])], date(2026, 3, 30), 25.0, False),
         (ids["I"], "shop:" + order[(WINBACK, crm["I"])], date(2026, 3, 31), 10.0, False),
         (ids["G"], "shop:" + order[(WINBACK, crm["G"])], date(2026, 3, 30), 80.0, False),
         (ids["B"], "shop:SO-000000004", date(2026, 3, 29), 5.0, False)],  # on the assignment day: not in the window
        columns=["customer_id", "purchase_id", "purchase_date", "net_amount", "is_refund"])  # fmt: skip
    return truth, audience, purchases


def test_campaign_uplift_truth_on_a_hand_made_audience(hand_made: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    truth_dir, audience, purchases = hand_made
    truth = campaign_uplift_truth(truth_dir, audience, purchases, AS_OF, hash_key=TRUTH_KEY)
    assert list(truth.columns) == ["campaign_id", "measured_customers", "true_conversion_uplift",
                                   "true_revenue_uplift"]
    assert truth["campaign_id"].tolist() == [WINBACK, LOYALTY, NO_EFFECT]
    rows = truth.set_index("campaign_id")
    assert rows.loc[WINBACK].tolist() == pytest.approx([8, 3 / 8, 150 / 8])
    assert rows.loc[NO_EFFECT].tolist() == [2, 0.0, 0.0]
    assert rows.loc[LOYALTY, "measured_customers"] == 0
    assert np.isnan(rows.loc[LOYALTY, "true_conversion_uplift"]) and np.isnan(rows.loc[LOYALTY, "true_revenue_uplift"])
    # without is_refund every purchase converts: H bought anyway
    plain = campaign_uplift_truth(truth_dir, audience, purchases.drop(columns="is_refund"), AS_OF, TRUTH_KEY)
    assert plain.set_index("campaign_id").loc[WINBACK].tolist() == pytest.approx([8, 2 / 8, 150 / 8])
    # a day later G's window has closed too: 80.00 on 30 March is not after its assignment on 30 March
    later = campaign_uplift_truth(truth_dir, audience, purchases, date(2026, 4, 1), TRUTH_KEY)
    assert later.set_index("campaign_id").loc[WINBACK].tolist() == pytest.approx([9, 3 / 9, 150 / 9])
    # timestamps and strings are dates too
    typed = audience.assign(assigned_on=pd.to_datetime(audience["assigned_on"]))
    stamped = purchases.assign(purchase_date=purchases["purchase_date"].astype(str))
    assert campaign_uplift_truth(truth_dir, typed, stamped, AS_OF, TRUTH_KEY).equals(truth)


def test_without_campaigns_nothing_is_planted(tmp_path: Path) -> None:
    """`campaigns=False`: the same data without the response orders and without a campaigns file."""
    plain = generate(tmp_path / "plain", customers=300, days=30, end_date=END, seed=5, hash_key=HASH_KEY,
                     campaigns=False)
    planted = generate(tmp_path / "planted", customers=300, days=30, end_date=END, seed=5, hash_key=HASH_KEY)
    assert not (plain.out_dir / "campaigns.yml").exists() and (planted.out_dir / "campaigns.yml").exists()
    assert sum(plain.campaign_responses.values()) == 0 < sum(planted.campaign_responses.values())
    for path in sorted((plain.landing_dir / "shop" / "orders").glob("*.csv")):
        with_planted = (planted.landing_dir / "shop" / "orders" / path.name).read_text().splitlines()
        assert [line for line in with_planted if ",SO-C" not in "," + line] == path.read_text().splitlines()
