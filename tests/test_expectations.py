"""Great Expectations suites and runner: real GX, a real DuckDB file and a real PostgreSQL server."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from sqlalchemy.engine import URL, make_url

from custseg.catalogue import CHANNELS_BY_TABLE
from expectations import runner
from expectations.runner import QualityGateError, ValidationReport
from expectations.suites import (
    BLOCKING,
    WARNING,
    RawTable,
    Suite,
    between,
    ml_labels_suite,
    published_suite,
    raw_suite,
)

D = date(2026, 3, 1)
RAW_SOURCES = tuple(CHANNELS_BY_TABLE)


def suite_of(table: str, **kwargs) -> Suite:
    """The raw suite of ``raw.<table>`` as the nightly gate builds it (from the channel catalogue)."""
    return raw_suite(CHANNELS_BY_TABLE[table].raw_table(D), D, **kwargs)

META = "'2026-03-01', 'landing/file', 1, 'run-1', null"
# the same server as tests/conftest.py: 127.0.0.1:5432, user postgres, trust auth, or CUSTSEG_TEST_PG_URL
PG_ADMIN_URL = make_url(os.environ.get("CUSTSEG_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

RAW_DDL = {
    "shop_orders": """order_id text, ordered_at timestamp, customer_ref text, customer_email text,
        customer_phone text, currency text, order_total decimal(18,2), discount_amount decimal(18,2),
        item_count integer, category text, order_status text, device text, promo_code text""",
    "pos_sales": """receipt_id text, store_id text, sold_at timestamp, loyalty_card text, currency text,
        amount decimal(18,2), discount_amount decimal(18,2), category text, is_return boolean""",
    "web_sessions": """session_id text, started_at timestamp, crm_customer_id text, user_email text,
        platform text, page_views integer, added_to_cart boolean, category text""",
    "crm_customers": """crm_customer_id text, email text, phone text, first_name text, last_name text,
        street_address text, city text, region text, country text, birth_year integer, gender text,
        signup_date date, signup_source text, loyalty_card text, updated_at timestamp, social_platform text,
        social_handle text, birth_date date, email_opt_in boolean, sms_opt_in boolean, ads_opt_in boolean,
        consent_updated_at timestamp""",
    "email_events": "event_id text, campaign_id text, email text, event_type text, event_at timestamp",
    "support_tickets": """ticket_id text, created_at timestamp, customer_email text, customer_phone text,
        contact_channel text, topic text, subject text, ticket_status text, nps_score integer""",
    "social_interactions": """interaction_id text, interacted_at timestamp, platform text, post_id text,
        interaction_type text, handle text, user_email text""",
}
LOAD_META_DDL = "_partition_date date, _source_file text, _source_line bigint, _run_id text, _extras text"
# Clean rows: late-arriving rows (earlier timestamps), the last second of the day, mixed-case currency,
# nulls where allowed, and (shop only) an exact duplicate row, which is a warning, not a failure.
RAW_ROWS = {
    "shop_orders": [
        f"'SO-1', '2026-03-01 10:00:00', 'CRM-1', ' Jane@X.com ', null, 'EUR', 10.50, 0, 1, 'Books', "
        f"'completed', 'web', null, {META}",
        f"'SO-1', '2026-03-01 10:00:00', 'CRM-1', ' Jane@X.com ', null, 'EUR', 10.50, 0, 1, 'Books', "
        f"'completed', 'web', null, {META}",
        f"'SO-2', '2026-03-01 23:59:59', null, 'a@b.c', '+44 7700 900123', ' gbp ', 0.00, 0, 1, 'toys', "
        f"'refunded', 'app', 'SPRING10', {META}",
        f"'SO-3', '2026-02-27 08:00:00', null, null, null, 'usd', 99.99, 5, 3, 'Garden', 'cancelled', 'web', "
        f"' vip20 ', {META}",
    ],
    "pos_sales": [
        f"'R-1', 'ST-001', '2026-03-01 09:00:00', 'LC 0012 3456', 'GBP', 25.00, 0, 'Food', false, {META}",
        f"'R-2', 'ST-002', '2026-03-01 12:00:00', null, 'eur', -25.00, 0, 'Food', true, {META}",
    ],
    "web_sessions": [
        f"'WS-1', '2026-03-01 00:00:00', 'CRM-1', null, 'web', 7, true, 'Books', {META}",
        f"'WS-2', '2026-02-28 22:00:00', null, 'x@y.z', 'app', 0, false, null, {META}",
    ],
    "crm_customers": [
        f"'CRM-1', 'j@x.com', null, 'Jane', 'Doe', '1 High St', 'Leeds', 'North', 'GB', 1980, 'f', "
        f"'2025-01-01', 'web', null, '2026-03-01 08:00:00', 'instagram', '@Jane.Doe', '1980-02-29', true, false, "
        f"null, '2025-01-01 10:00:00', {META}",
        f"'CRM-2', null, '0770', 'Max', 'Muster', 'Weg 1', 'Berlin', 'BE', 'DE', null, null, "
        f"'2026-03-01', 'store', 'lc-1', '2026-03-01 09:00:00', null, null, null, null, null, null, null, {META}",
    ],
    "email_events": [
        f"'E-1', 'C-1', 'J@X.com', 'send', '2026-03-01 06:00:00', {META}",
        f"'E-2', 'C-1', 'j@x.com', 'open', '2026-03-01 07:00:00', {META}",
        f"'E-3', 'C-1', 'j@x.com', 'unsubscribe', '2026-03-01 07:30:00', {META}",
    ],
    "support_tickets": [
        f"'T-1', '2026-03-01 10:00:00', 'j@x.com', null, 'chat', 'delivery', 'Where is my parcel?', 'open', 10, {META}",
        f"'T-2', '2026-03-01 11:00:00', null, '+49 30 1', 'phone', 'billing', null, 'solved', null, {META}",
        f"'T-3', '2026-03-01 12:00:00', null, null, 'email', 'returns', '', 'solved', 0, {META}",
    ],
    "social_interactions": [
        f"'SI-1', '2026-03-01 10:00:00', 'instagram', 'P-IG-1', 'like', 'jane.doe', null, {META}",
        f"'SI-2', '2026-03-01 11:00:00', 'x', null, 'mention', 'fan_42', 'fan@x.com', {META}",
    ],
}

SEGMENTS_DDL = """customer_id text, as_of_date date, recency_days integer, frequency integer,
    monetary decimal(18,2), r_score integer, f_score integer, m_score integer, rfm_segment text,
    lifecycle_stage text, value_tier text, frequency_class text, channel_preference text,
    loyalty_tier text, satisfaction_class text, cluster_id integer, cluster_name text,
    churn_probability double, churn_risk_band text, p_alive double, expected_purchases_90d double,
    predicted_clv_12m double, model_version text, scored_at timestamp, gender text, country text,
    social_engagement_level text, is_advocate boolean, social_recency_days integer, top_category text,
    interest_breadth integer, interest_segment text, has_open_complaint boolean, complaint_rate_12m double,
    last_ticket_topic text, nps_trend text, price_sensitivity text, promo_responsiveness text,
    birth_month integer, playbook_id text, next_best_action text, has_email_consent boolean,
    has_sms_consent boolean, has_ads_consent boolean"""
SEGMENTS_ROWS = [
    "'C-1', '2026-03-01', 3, 12, 950.00, 5, 5, 5, 'Champions', 'active', 'high', 'frequent', 'omni', "
    "'gold', 'promoter', 1, 'Big spenders', 0.05, 'low', 0.97, 2.1, 1200.0, 'm-1', '2026-03-01 00:00:00', "
    "'female', 'GB', 'high', true, 3, 'books', 2, 'mixed interests', false, 0.0, 'delivery', 'up', 'full_price', "
    "'responder', 4, 'champions_reward', 'Early access to new arrivals and loyalty perks', true, false, true",
    "'C-2', '2026-03-01', 200, 1, 20.00, 1, 1, 1, 'Can''t Lose Them', 'at_risk', 'low', 'one_off', 'web', "
    "'none', 'unknown', 2, 'Dormant', 0.80, 'critical', 0.10, 0.0, 0.0, 'm-1', '2026-03-01 00:00:00', "
    "'unknown', 'unknown', 'none', false, null, 'toys', 1, 'toys enthusiast', true, 1.0, 'returns', 'down', "
    "'deal_seeker', 'occasional', null, 'service_recovery', 'Follow up the complaint personally', false, false, false",
    # a prospect: no purchase, so no RFM scores or segment
    "'C-3', '2026-03-01', null, 0, 0.00, null, null, null, null, 'prospect', null, null, null, null, null, "
    "null, null, null, null, null, null, null, 'm-1', '2026-03-01 00:00:00', 'male', 'DE', 'low', false, 40, "
    "'unknown', 0, 'no interest data', false, null, null, 'unknown', 'unknown', 'unknown', 12, 'prospect_welcome', "
    "'Welcome offer for a first purchase', true, true, false",
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB file with clean raw partitions and a clean customer_segments table."""
    con = duckdb.connect(str(tmp_path_factory.mktemp("duck") / "warehouse.duckdb"))
    con.execute("create schema raw; create schema analytics_build")
    for source, ddl in RAW_DDL.items():
        con.execute(f"create table raw.{source} ({ddl}, {LOAD_META_DDL})")
        con.execute(f"insert into raw.{source} values " + ", ".join(f"({row})" for row in RAW_ROWS[source]))
    con.execute(f"create table analytics_build.customer_segments ({SEGMENTS_DDL})")
    con.execute(
        "insert into analytics_build.customer_segments values " + ", ".join(f"({row})" for row in SEGMENTS_ROWS)
    )
    yield con
    con.close()


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.sql(sql).df()


def raw_batch(con: duckdb.DuckDBPyConnection, source: str, transform: str = "") -> pd.DataFrame:
    """That day's partition of raw.<source>, optionally through extra SQL (a union, a replace, ...)."""
    return query(con, f"select * from raw.{source} where _partition_date = date '{D}' {transform}")


def assert_gate_fails(report: ValidationReport, *fragments: str) -> str:
    assert not report.success
    with pytest.raises(QualityGateError) as caught:
        report.raise_if_blocking_failed()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert caught.value.report is report
    return message


# -- suites as code ------------------------------------------------------------------------------------


def test_suites_are_plain_deterministic_values() -> None:
    for source in RAW_SOURCES:
        suite = suite_of(source)
        assert suite == suite_of(source)
        assert suite.name == f"raw.{source}"
        gx_suite = suite.to_gx()
        assert len(gx_suite.expectations) == len(suite.checks)
        for index, expectation in enumerate(gx_suite.expectations):
            assert expectation.meta == {"severity": suite.checks[index].severity, "check_index": index}
            assert expectation.id is None  # nothing generated, nothing to churn
    unique_severity = {
        source: next(c.severity for c in suite_of(source).checks if c.expectation.endswith("_unique"))
        for source in RAW_SOURCES
    }
    # orders and CRM records are legitimately re-exported within one file (staging keeps the latest)
    assert unique_severity.pop("shop_orders") == WARNING
    assert unique_severity.pop("crm_customers") == WARNING
    assert unique_severity.pop("social_interactions") == WARNING  # platform exports repeat rows
    assert set(unique_severity.values()) == {BLOCKING}
    for suite in (published_suite(), ml_labels_suite()):
        assert suite.to_gx().name == suite.name
    # the suite is the generic checks plus the table's own, in its order
    table = RawTable("fax_orders", ("fax_id", "sent_at", "pages"), "fax_id", "sent_at", (between("pages", 1),))
    fax = raw_suite(table, D, include_load_metadata=False)
    assert [c.expectation for c in fax.checks] == [
        "expect_column_to_exist", "expect_column_to_exist", "expect_column_to_exist",
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_unique",
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_between",
        "expect_column_values_to_be_between",
    ]
    assert fax.checks[4].severity == BLOCKING and fax.checks[-1] == between("pages", 1)


def test_importing_the_package_does_not_import_gx() -> None:
    code = "import sys, expectations.runner; sys.exit('great_expectations' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# -- pandas batches from DuckDB ------------------------------------------------------------------------


@pytest.mark.parametrize("source", RAW_SOURCES)
def test_clean_raw_batches_pass(
    warehouse: duckdb.DuckDBPyConnection, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    report = runner.validate_dataframe(
        raw_batch(warehouse, source), suite_of(source), suite_name=f"raw.{source}",
        batch_name=f"raw.{source}@{D}",
    )  # fmt: skip
    failed = [r.describe() for r in report.results if not r.success]
    if source == "shop_orders":  # the exact duplicate row is a warning only
        assert failed == ["expect_column_values_to_be_unique(column='order_id')"]
        assert report.warnings[0].unexpected_sample == ["SO-1", "SO-1"]
    else:
        assert failed == []
    assert report.success
    with caplog.at_level(logging.WARNING, logger="expectations"):
        report.raise_if_blocking_failed()
    assert ("SO-1" in caplog.text) == (source == "shop_orders")


def test_duplicate_key_blocks(warehouse: duckdb.DuckDBPyConnection) -> None:
    df = raw_batch(warehouse, "pos_sales", "union all select * from raw.pos_sales where receipt_id = 'R-2'")
    report = runner.validate_dataframe(df, suite_of("pos_sales"), batch_name="pos dup")
    assert_gate_fails(report, "'raw.pos_sales'", "expect_column_values_to_be_unique(column='receipt_id')", "'R-2'")


def test_future_timestamp_and_bad_values_block(warehouse: duckdb.DuckDBPyConnection) -> None:
    # midnight after the logical date is already "after the end of the logical date"
    late = "union all select * replace (timestamp '2026-03-02 00:00:00' as event_at, 'E-9' as event_id) "
    late += "from raw.email_events where event_id = 'E-1'"
    report = runner.validate_dataframe(
        raw_batch(warehouse, "email_events", late), suite_of("email_events"), batch_name="email"
    )
    message = assert_gate_fails(
        report, "'raw.email_events'", "expect_column_values_to_be_between(column='event_at'",
        "'2026-03-02T00:00:00'",
    )  # fmt: skip
    assert len(report.blocking_failures) == 1, message

    nps = "union all select * replace (11 as nps_score, 'T-9' as ticket_id) from raw.support_tickets limit 4"
    report = runner.validate_dataframe(
        raw_batch(warehouse, "support_tickets", nps), suite_of("support_tickets"), batch_name="nps"
    )
    assert_gate_fails(report, "expect_column_values_to_be_between(column='nps_score', min_value=0, max_value=10)")

    shop = "union all select * replace (-1.00 as order_total, 'CHF' as currency, 'SO-9' as order_id) "
    shop += "from raw.shop_orders where order_id = 'SO-2'"
    report = runner.validate_dataframe(
        raw_batch(warehouse, "shop_orders", shop), suite_of("shop_orders"), batch_name="shop"
    )
    assert_gate_fails(report, "column='order_total', min_value=0", "-1.0", "column='currency'", "'CHF'")


def test_nullable_integer_ranges_are_checked_like_numpy_ones() -> None:
    # DuckDB returns nullable integers as Int32/Int64; the runner hands GX numpy columns (GX's range
    # check is vectorised only for those): the out-of-range value is reported, the null is not
    suite = Suite(name="nullable.ints", checks=(between("r_score", 1, 5), between("frequency", 0)))
    df = pd.DataFrame({
        "r_score": pd.array([1, None, 5, 7], dtype="Int32"),
        "frequency": pd.array([0, 3, 2, 1], dtype="Int64"),
    })
    report = runner.validate_dataframe(df, suite, batch_name="nullable")
    outcomes = {o.column: o for o in report.results}
    assert not outcomes["r_score"].success
    assert outcomes["r_score"].unexpected_count == 1
    assert outcomes["r_score"].missing_count == 1
    assert [float(v) for v in outcomes["r_score"].unexpected_sample] == [7.0]
    assert outcomes["frequency"].success and outcomes["frequency"].unexpected_count == 0
    assert runner.numpy_numbers(df).dtypes.astype(str).to_dict() == {"r_score": "float64", "frequency": "int64"}


def test_timezone_aware_timestamps_are_compared_in_utc(warehouse: duckdb.DuckDBPyConnection) -> None:
    # 2026-03-01 23:30 in New York is 2026-03-02 04:30 UTC: after the end of the logical date
    df = raw_batch(
        warehouse, "web_sessions",
        "union all select * replace (timestamptz '2026-03-01 23:30:00-05:00' as started_at, 'WS-9' as session_id)"
        " from raw.web_sessions where session_id = 'WS-1'",
    )  # fmt: skip
    assert isinstance(df["started_at"].dtype, pd.DatetimeTZDtype)
    df["started_at"] = df["started_at"].dt.tz_convert("America/New_York")
    report = runner.validate_dataframe(df, suite_of("web_sessions"), batch_name="tz")
    assert_gate_fails(report, "column='started_at'", "2026-03-02T04:30:00")
    lenient = suite_of("web_sessions", event_time_grace=pd.Timedelta(hours=6).to_pytimedelta())
    assert runner.validate_dataframe(df, lenient, batch_name="tz").success


def test_published_suite(warehouse: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    table = "analytics_build.customer_segments"
    clean = runner.validate_dataframe(
        query(warehouse, f"select * from {table}"), published_suite(), batch_name="segments@2026-03-01"
    )
    assert clean.success and not clean.warnings, [r for r in clean.results if not r.success]
    clean.raise_if_blocking_failed()

    bad = query(
        warehouse,
        f"select * replace (case when customer_id = 'C-1' then 7 else r_score end as r_score,"
        f" case when customer_id = 'C-2' then 'Champs' else rfm_segment end as rfm_segment) from {table}"
        f" union all select * from {table} where customer_id = 'C-3'",
    )
    report = runner.validate_dataframe(bad, published_suite(), batch_name="segments@2026-03-01")
    message = assert_gate_fails(
        report, "'analytics.customer_segments'", "expect_column_values_to_be_between(column='r_score'", "7",
        "expect_column_values_to_be_in_set(column='rfm_segment'", "'Champs'",
        "expect_column_values_to_be_unique(column='customer_id')", "'C-3'",
    )  # fmt: skip
    assert "f_score" not in message

    rows = report.to_rows("run-42")
    assert len(rows) == len(published_suite().checks) == len(report.results)
    assert {tuple(row) for row in rows} == {
        ("run_id", "suite_name", "expectation", "check_description", "column_name", "severity", "success",
         "observed_value", "unexpected_sample"),
    }  # fmt: skip
    assert all(row["run_id"] == "run-42" and isinstance(row["observed_value"], str) for row in rows)
    r_score = next(r for r in rows if r["column_name"] == "r_score" and "between" in r["expectation"])
    assert r_score["success"] is False and json.loads(r_score["unexpected_sample"]) == [7]
    assert r_score["observed_value"] == "1 of 2 non-null values unexpected (50.00%), 2 null"
    # the check as status and quality.html show it: its column and band
    assert r_score["check_description"].startswith("expect_column_values_to_be_between(column='r_score', min_value=1")

    index = runner.build_data_docs(
        tmp_path / "site", [clean, report], run_name="run-42", run_time=datetime(2026, 3, 1, tzinfo=UTC)
    )
    assert index.is_file() and "customer_segments" in index.read_text()
    assert list((tmp_path / "site" / "validations").rglob("*.html"))
    assert "Champs" in (tmp_path / "site" / "quality.html").read_text()


def test_ml_labels_suite_and_gx_suites_and_chunks(warehouse: duckdb.DuckDBPyConnection) -> None:
    labels = query(
        warehouse,
        "select customer_id, churn_probability, churn_risk_band, p_alive, expected_purchases_90d,"
        " predicted_clv_12m from analytics_build.customer_segments",
    )
    assert runner.validate_dataframe(labels, ml_labels_suite(), batch_name="labels").success
    labels.loc[0, "churn_probability"] = 1.5
    report = runner.validate_dataframe(labels, ml_labels_suite(), batch_name="labels")
    assert_gate_fails(report, "'ml.labels'", "column='churn_probability', min_value=0, max_value=1", "1.5")

    # a GX ExpectationSuite works too, severity read from meta
    gx_suite = ml_labels_suite().to_gx()
    for expectation in gx_suite.expectations:
        expectation.meta = {"severity": WARNING}
    warn_only = runner.validate_dataframe(labels, gx_suite, suite_name="ml.labels.lenient", batch_name="l")
    assert warn_only.success and warn_only.suite_name == "ml.labels.lenient" and len(warn_only.warnings) == 1
    warn_only.raise_if_blocking_failed()

    # chunked validation of a bigger table: counts add up, the note says what was checked
    chunks = [labels.iloc[:2], labels.iloc[2:]]
    combined = runner.validate_chunks(chunks, ml_labels_suite(), batch_name="labels")
    assert combined.row_count == 3 and "2 chunk(s)" in (combined.sample_note or "")
    assert_gate_fails(combined, "1.5", "2 chunk(s)")


# -- PostgreSQL -----------------------------------------------------------------------------------------


def _libpq_url(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throwaway database on the local server, dropped at the end."""
    psycopg = pytest.importorskip("psycopg")
    where = f"{PG_ADMIN_URL.host}:{PG_ADMIN_URL.port or 5432}"
    try:
        admin = psycopg.connect(_libpq_url(PG_ADMIN_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {where} is required under CI=true: {exc}")
        pytest.skip(f"!!! PostgreSQL at {where} unreachable, GX PostgreSQL tests SKIPPED: {exc}")
    name = f"custseg_test_gx_{uuid.uuid4().hex[:10]}"
    admin.execute(f'create database "{name}"')
    try:
        yield PG_ADMIN_URL.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        runner.close_postgres_datasources()
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


@pytest.mark.postgres
def test_postgres_partitions_and_published_table(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(_libpq_url(make_url(pg_url)), autocommit=True) as con:
        con.execute("create schema raw; create schema analytics_build")
        ddl = RAW_DDL["shop_orders"].replace("decimal", "numeric")
        con.execute(f"create table raw.shop_orders ({ddl}, {LOAD_META_DDL})")
        con.execute("insert into raw.shop_orders values " + ", ".join(f"({r})" for r in RAW_ROWS["shop_orders"]))
        # the next day's partition holds a negative total and a timestamp after 2026-03-01
        con.execute(
            "insert into raw.shop_orders select 'SO-8', timestamp '2026-03-02 10:00', null, null, null, 'EUR',"
            " -5.00, 0, 1, 'Books', 'completed', 'web', null, date '2026-03-02', 'f', 1, 'run-2', null"
        )
        segments_ddl = SEGMENTS_DDL.replace("double", "double precision").replace(
            "scored_at timestamp", "scored_at timestamptz"
        )
        con.execute(f"create table analytics_build.customer_segments ({segments_ddl})")
        rows = ", ".join(f"({r})" for r in SEGMENTS_ROWS)
        con.execute(f"insert into analytics_build.customer_segments values {rows}")
        con.execute("update analytics_build.customer_segments set p_alive = 1.2 where customer_id = 'C-2'")

    suite = suite_of("shop_orders")
    by_partition = runner.validate_postgres_table(
        pg_url, "raw", "shop_orders", suite, partition_column="_partition_date", partition_date=D
    )
    assert by_partition.success and by_partition.row_count == 4
    assert [w.column for w in by_partition.warnings] == ["order_id"]
    by_partition.raise_if_blocking_failed()

    by_where = runner.validate_postgres_table(
        pg_url, "raw", "shop_orders", suite, where="_partition_date = date '2026-03-01'"
    )
    assert by_where.success and by_where.row_count == 4
    assert [(r.expectation, r.success) for r in by_where.results] == [
        (r.expectation, r.success) for r in by_partition.results
    ]

    whole = runner.validate_postgres_table(pg_url, "raw", "shop_orders", suite)
    assert whole.row_count == 5
    assert_gate_fails(
        whole, "'raw.shop_orders'", "batch 'raw.shop_orders'", "column='order_total', min_value=0", "'-5.00'",
        "column='ordered_at'", "2026-03-02T10:00:00",
    )  # fmt: skip

    published = runner.validate_postgres_table(pg_url, "analytics_build", "customer_segments", published_suite())
    assert_gate_fails(published, "'analytics.customer_segments'", "column='p_alive'", "1.2")
    assert [r.column for r in published.blocking_failures] == ["p_alive"]
    assert len(published.to_rows("run-pg")) == len(published_suite().checks)
