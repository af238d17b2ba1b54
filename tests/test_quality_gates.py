"""Quality gates against a real warehouse: row counts vs the previous batch, segment shares vs the previous
published date, chunked DuckDB validation, and the same suites through GX's SQL datasource on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from custseg.catalogue import CHANNELS
from custseg.config import load_settings
from custseg.steps.quality import action_reports, published_reports, raw_batch_reports
from custseg.warehouse import Warehouse, connect
from expectations.config import QualityConfig
from expectations.report import QualityGateError, raise_if_any_blocking
from expectations.suites import (
    CAMPAIGN_UPLIFT_COLUMNS,
    CUSTOMER_ALERTS_COLUMNS,
    campaign_audience_suite,
    campaign_uplift_suite,
    row_count_bounds,
    segment_share_suite,
    share_bounds,
)
from tests.conftest import warehouse_env

D = dt.date(2026, 3, 2)
PREV = dt.date(2026, 3, 1)
GRACE = dt.timedelta(hours=6)

SEGMENTS_DDL = """customer_id text, as_of_date date, recency_days integer, frequency integer,
    monetary numeric(18,2), r_score integer, f_score integer, m_score integer, rfm_segment text,
    lifecycle_stage text, value_tier text, frequency_class text, channel_preference text,
    loyalty_tier text, satisfaction_class text, cluster_id integer, cluster_name text,
    churn_probability double precision, churn_risk_band text, p_alive double precision,
    expected_purchases_90d double precision, predicted_clv_12m double precision, model_version text,
    scored_at timestamp, gender text, country text, social_engagement_level text, is_advocate boolean,
    social_recency_days integer, top_category text, interest_breadth integer, interest_segment text,
    has_open_complaint boolean, complaint_rate_12m double precision, last_ticket_topic text, nps_trend text,
    price_sensitivity text, promo_responsiveness text, birth_month integer, playbook_id text,
    next_best_action text, has_email_consent boolean, has_sms_consent boolean, has_ads_consent boolean"""


def _shop_rows(day: dt.date, n: int, start: int = 0) -> list[tuple]:
    return [
        (f"SO-{day}-{i}", dt.datetime.combine(day, dt.time(10)), None, None, None, "EUR", 10.0, 0.0, 1, "Books",
         "completed", "web", day, "landing/shop.csv", i + 1, "run", None)
        for i in range(start, start + n)
    ]  # fmt: skip


def _insert_shop(wh: Warehouse, rows: list[tuple]) -> None:
    cols = ("order_id, ordered_at, customer_ref, customer_email, customer_phone, currency, order_total, "
            "discount_amount, item_count, category, order_status, device, _partition_date, _source_file, "
            "_source_line, _run_id, _extras")  # fmt: skip
    for row in rows:
        wh.execute(f"insert into raw.shop_orders ({cols}) values ({', '.join(['%s'] * len(row))})", row)


def _segment_row(i: int, segment: str | None, stage: str, as_of_date: dt.date) -> tuple:
    buyer = segment is not None
    return (
        f"C-{i:04d}", as_of_date, 10 if buyer else None, 2 if buyer else 0, 100.0 if buyer else 0.0,
        3 if buyer else None, 3 if buyer else None, 3 if buyer else None, segment, stage, "mid", "regular",
        "web", "none", "neutral", 1 if buyer else None, "Regulars" if buyer else None, 0.2 if buyer else None,
        "low" if buyer else None, 0.8 if buyer else None, 1.0 if buyer else None, 50.0 if buyer else None, "m-1",
        dt.datetime.combine(as_of_date + dt.timedelta(days=1), dt.time()),
        # the portrait and the playbook
        "female", "GB", "low", False, 20, "books" if buyer else "unknown", 1 if buyer else 0,
        "books enthusiast" if buyer else "no interest data", False, 0.0 if buyer else None, None, "unknown",
        "mixed" if buyer else "unknown", "occasional", 5, "default", "Newsletter",
        # consent per channel
        i % 2 == 0, False, i % 3 == 0,
    )  # fmt: skip


def _customers(mix: dict[tuple[str | None, str], int], as_of_date: dt.date) -> list[tuple]:
    rows, i = [], 0
    for (segment, stage), n in mix.items():
        for _ in range(n):
            rows.append(_segment_row(i, segment, stage, as_of_date))
            i += 1
    return rows


YESTERDAY = {("Champions", "active"): 20, ("Loyal", "active"): 30, ("Lost", "churned"): 30, (None, "prospect"): 20}
STEADY = {("Champions", "active"): 21, ("Loyal", "active"): 29, ("Lost", "churned"): 30, (None, "prospect"): 20}
COLLAPSE = {("Loyal", "active"): 50, ("Lost", "churned"): 30, (None, "prospect"): 20}


def _load_segments(wh: Warehouse, schema: str, table: str, rows: list[tuple]) -> None:
    wh.execute(f"create table if not exists {schema}.{table} ({SEGMENTS_DDL})")
    wh.execute(f"delete from {schema}.{table}")
    for row in rows:
        wh.execute(f"insert into {schema}.{table} values ({', '.join(['%s'] * len(row))})", row)


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[tuple[Warehouse, object]]:
    env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb")
    settings = load_settings(env)
    with connect(settings) as wh:
        wh.bootstrap()
        yield wh, settings


@pytest.fixture
def pg(pg_database: str, tmp_path: Path) -> Iterator[tuple[Warehouse, object]]:
    from expectations import runner

    settings = load_settings(warehouse_env("postgres", tmp_path, pg_url=pg_database))
    try:
        with connect(settings) as wh:
            wh.bootstrap()
            yield wh, settings
    finally:
        runner.close_postgres_datasources()


# -- pure suite values ------------------------------------------------------------------------------


def test_bands_and_config() -> None:
    assert row_count_bounds(100, 0.5) == (50, 150)
    assert row_count_bounds(3, 0.5) == (1, 5)
    assert row_count_bounds(3, 0.5, min_change=50) == (0, 53)  # a few rows more or less is no news
    assert row_count_bounds(1000, 0.5, min_change=50) == (500, 1500)
    assert share_bounds(0.20, 0.5, 0.02) == (0.10, 0.30)  # relative band dominates
    assert share_bounds(0.01, 0.5, 0.02) == (0.0, 0.03)  # small segments get the absolute tolerance
    suite = segment_share_suite({"rfm_segment=Loyal": 0.3, "rfm_segment=Champions": 0.2}, 0.5, 0.02)
    assert [c.column for c in suite.checks] == ["rfm_segment=Champions", "rfm_segment=Loyal"]  # deterministic
    assert suite == segment_share_suite({"rfm_segment=Champions": 0.2, "rfm_segment=Loyal": 0.3}, 0.5, 0.02)

    assert QualityConfig.from_env({}) == QualityConfig()
    cfg = QualityConfig.from_env({"CUSTSEG_ROW_COUNT_BAND": "0.2", "CUSTSEG_ROW_COUNT_SEVERITY": "Blocking",
                                  "CUSTSEG_SEGMENT_SHARE_BAND": "0.3", "CUSTSEG_GX_CHUNK_ROWS": "5000"})
    assert (cfg.row_count_band, cfg.row_count_severity, cfg.segment_share_band, cfg.chunk_rows) == (
        0.2, "blocking", 0.3, 5000)
    with pytest.raises(ValueError, match="CUSTSEG_ROW_COUNT_SEVERITY"):
        QualityConfig.from_env({"CUSTSEG_ROW_COUNT_SEVERITY": "fatal"})
    with pytest.raises(ValueError, match="CUSTSEG_SEGMENT_SHARE_BAND"):
        QualityConfig.from_env({"CUSTSEG_SEGMENT_SHARE_BAND": "-1"})


# -- raw row counts ---------------------------------------------------------------------------------


def _row_count_report(wh, settings, config, row_count_check: bool = True):
    reports = raw_batch_reports(wh, settings, CHANNELS["online_orders"], D, event_time_grace=GRACE, config=config,
                                row_count_check=row_count_check)
    assert [r.suite_name for r in reports] == ["raw.shop_orders", "raw.shop_orders.row_count"]
    assert reports[0].success, reports[0].failure_message()
    return reports


def test_row_count_against_previous_batch(duck) -> None:
    wh, settings = duck
    _insert_shop(wh, _shop_rows(D, 4))
    # no earlier partition: skipped, with a note that is recorded like any other outcome
    reports = _row_count_report(wh, settings, QualityConfig())
    skipped = reports[1]
    assert skipped.success and skipped.results[0].observed_value.startswith("skipped: no earlier partition")
    assert skipped.to_rows("run-1")[0]["observed_value"].startswith("skipped:")

    _insert_shop(wh, _shop_rows(PREV, 10, start=100))
    # 4 rows vs 10: inside the default floor of ±50 rows, so no warning
    reports = _row_count_report(wh, settings, QualityConfig())
    assert reports[1].success and not reports[1].warnings
    assert "(at least ±50 rows)" in (reports[1].sample_note or "")
    # a source whose volume is irregular by nature (row_count_check: false in the sources file): skipped, said so
    [_, skipped] = _row_count_report(wh, settings, QualityConfig(row_count_min_change=0), row_count_check=False)
    assert skipped.success and "row_count_check: false" in skipped.results[0].observed_value
    # without the floor: outside ±50 %; a warning by default, so the gate passes and says so
    reports = _row_count_report(wh, settings, QualityConfig(row_count_min_change=0))
    volume = reports[1]
    assert volume.success and len(volume.warnings) == 1
    assert volume.warnings[0].observed_value == "4"
    assert "4 rows vs 10 in the previous partition (2026-03-01)" in (volume.sample_note or "")
    raise_if_any_blocking(reports)

    # configured blocking: the run stops, naming the suite, the expectation and the values
    reports = _row_count_report(wh, settings, QualityConfig(row_count_severity="blocking", row_count_min_change=0))
    with pytest.raises(QualityGateError) as caught:
        raise_if_any_blocking(reports)
    message = str(caught.value)
    for fragment in ("'raw.shop_orders.row_count'", "expect_table_row_count_to_be_between(min_value=5, max_value=15)",
                     ": 4"):
        assert fragment in message, message
    # a wider band accepts it
    assert _row_count_report(wh, settings, QualityConfig(row_count_band=1.5, row_count_severity="blocking",
                                                         row_count_min_change=0))[1].success


def test_large_duckdb_batches_are_validated_in_chunks(duck) -> None:
    wh, settings = duck
    wh.execute(
        "insert into raw.shop_orders (order_id, ordered_at, currency, order_total, discount_amount, item_count, "
        "category, order_status, device, _partition_date, _source_file, _source_line, _run_id) "
        "select 'SO-' || i, %s, 'EUR', 10.0, 0.0, 1, 'Books', 'completed', 'web', %s, 'landing/shop.csv', i, 'run' "
        "from range(5000) t(i)",
        (dt.datetime.combine(D, dt.time(10)), D),
    )
    report = raw_batch_reports(wh, settings, CHANNELS["online_orders"], D, event_time_grace=GRACE,
                               config=QualityConfig(chunk_rows=2048))[0]
    assert report.success and report.row_count == 5000
    assert "in chunks of 2048 rows, all 5000 rows" in (report.sample_note or "")
    whole = raw_batch_reports(wh, settings, CHANNELS["online_orders"], D, event_time_grace=GRACE,
                              config=QualityConfig())[0]
    assert "all 5000 rows" in (whole.sample_note or "") and "chunk" not in (whole.sample_note or "")


@pytest.mark.parametrize("chunk_rows", [1_000_000, 30])
def test_duckdb_reads_only_the_checked_columns_and_still_checks_every_column_name(duck, chunk_rows) -> None:
    # The rows are read with only the columns the row checks use (GX copies every column of the frame
    # for each check), and the column-exists checks run on the table's column names: a missing column
    # that no row check reads must still fail, and a bad value must still be found.
    from expectations.suites import published_suite

    wh, settings = duck
    rows = _customers(YESTERDAY, D)
    rows[0] = (*rows[0][:17], 1.5, *rows[0][18:])  # churn_probability out of [0, 1]
    _load_segments(wh, settings.build_schema, "customer_segments", rows)
    wh.execute(f"alter table {settings.build_schema}.customer_segments drop column value_tier")
    report = published_reports(wh, settings, D, QualityConfig(chunk_rows=chunk_rows))[0]
    suite = published_suite()
    assert [(o.expectation, o.column) for o in report.results] == [(c.expectation, c.column) for c in suite.checks]
    failed = {(o.expectation, o.column) for o in report.results if not o.success}
    assert failed == {("expect_column_to_exist", "value_tier"),
                      ("expect_column_values_to_be_between", "churn_probability")}  # fmt: skip
    churn = next(o for o in report.results if o.column == "churn_probability" and not o.success)
    assert (churn.unexpected_count, churn.element_count, report.row_count) == (1, 100, 100)
    assert f"the {len(suite.split_structure()[1].columns_read())} columns the row checks read" in report.sample_note
    if chunk_rows > 100:  # validated whole: one GX result of the whole suite, for Data Docs
        assert [r.expectation_config.type for r in report.gx_result.results] == [c.expectation for c in suite.checks]
        assert report.gx_result.statistics["unsuccessful_expectations"] == 2


# -- segment shares ---------------------------------------------------------------------------------


def _share_reports(wh, settings, today: dict, config: QualityConfig | None = None):
    _load_segments(wh, settings.build_schema, "customer_segments", _customers(today, D))
    return published_reports(wh, settings, D, config or QualityConfig())


def test_segment_shares_against_the_previous_published_date(duck) -> None:
    wh, settings = duck
    # first run: nothing published yet, so the share check is skipped with a recorded note
    first = _share_reports(wh, settings, YESTERDAY)
    assert first[0].success, first[0].failure_message()
    assert first[1].suite_name == "analytics.segment_shares" and first[1].success
    assert "no earlier published date" in first[1].results[0].observed_value

    _load_segments(wh, "analytics", "segment_history", _customers(YESTERDAY, PREV))
    steady = _share_reports(wh, settings, STEADY)
    assert all(r.success for r in steady)
    shares = {o.column: o.observed_value for o in steady[1].results}
    assert shares["rfm_segment=Champions"] == "0.21" and shares["lifecycle_stage=prospect"] == "0.2"

    # Champions collapse from 20 % to nothing: blocking, with the segment, the band and today's share
    collapse = _share_reports(wh, settings, COLLAPSE)
    with pytest.raises(QualityGateError) as caught:
        raise_if_any_blocking(collapse)
    message = str(caught.value)
    assert "'analytics.segment_shares'" in message
    assert "expect_column_mean_to_be_between(column='rfm_segment=Champions', min_value=0.1, max_value=0.3): 0.0" \
        in message
    assert "column='rfm_segment=Loyal', min_value=0.15, max_value=0.45): 0.5" in message  # 30 % -> 50 %
    assert [o.column for o in collapse[1].blocking_failures] == ["rfm_segment=Champions", "rfm_segment=Loyal"]
    # configurable: a wide band lets it through; a warning severity records without blocking
    assert _share_reports(wh, settings, COLLAPSE, QualityConfig(segment_share_band=1.0))[1].success
    lenient = _share_reports(wh, settings, COLLAPSE, QualityConfig(segment_share_severity="warning"))
    assert lenient[1].success and len(lenient[1].warnings) == 2


# -- the same suites through GX's SQL datasource on PostgreSQL ---------------------------------------


def _outcomes(reports) -> list[tuple]:
    return [(r.suite_name, o.expectation, o.column, o.success) for r in reports for o in r.results]


@pytest.mark.postgres
def test_postgres_runs_the_same_suites_in_the_database(duck, pg) -> None:
    results = {}
    for name, (wh, settings) in {"duckdb": duck, "postgres": pg}.items():
        _insert_shop(wh, _shop_rows(PREV, 10, start=100))
        _insert_shop(wh, _shop_rows(D, 4))
        _insert_shop(wh, [(*_shop_rows(D, 1, start=50)[0][:6], -3.0, *_shop_rows(D, 1, start=50)[0][7:])])
        _load_segments(wh, "analytics", "segment_history", _customers(YESTERDAY, PREV))
        raw = raw_batch_reports(wh, settings, CHANNELS["online_orders"], D, event_time_grace=GRACE,
                                config=QualityConfig())
        published = _share_reports(wh, settings, COLLAPSE)
        # a source with nothing loaded on the date: an empty batch, not an error (GX's daily batches raise)
        empty = raw_batch_reports(wh, settings, CHANNELS["marketing"], D, event_time_grace=GRACE,
                                  config=QualityConfig())
        assert empty[0].success and empty[0].row_count in (0, None), empty[0].failure_message()
        results[name] = (raw, published, empty)
        assert not raw[0].success and [o.column for o in raw[0].blocking_failures] == ["order_total"]
        assert raw[0].row_count == 5
    duck_raw, duck_pub, duck_empty = results["duckdb"]
    pg_raw, pg_pub, pg_empty = results["postgres"]
    assert _outcomes(pg_raw) == _outcomes(duck_raw)
    assert _outcomes(pg_empty) == _outcomes(duck_empty)
    assert _outcomes(pg_pub) == _outcomes(duck_pub)
    assert "PostgreSQL through GX's SQL datasource" in (pg_raw[0].sample_note or "")
    assert "pandas DataFrame read from DuckDB" in (duck_raw[0].sample_note or "")
    assert pg_raw[0].blocking_failures[0].unexpected_sample in (["-3.00"], [-3.0])


# -- the action loop's tables -------------------------------------------------------------------------------


def _load_campaign_tables(wh: Warehouse, schema: str, audience_rows: str, uplift_rows: str) -> None:
    wh.execute(f"create or replace table {schema}.campaign_audience as select * from (values {audience_rows}) "
               "as t (campaign_id, customer_id, playbook_id, rfm_segment, is_control, assigned_on, "
               "conversion_window_ends_on, as_of_date)")
    columns = ", ".join(CAMPAIGN_UPLIFT_COLUMNS)
    wh.execute(f"create or replace table {schema}.campaign_uplift as select * from (values {uplift_rows}) "
               f"as t ({columns})")
    # an earlier run's alert that would fail (compared with its own date): only the run's rows are validated
    wh.execute(f"create or replace table {schema}.customer_alerts as select * from (values "
               f"(date '{D}', 'a', 'churn_risk_up', 'low', 'high', 'churn risk rose from low to high', 12.5, 'p1', "
               f"'Call', date '{D - dt.timedelta(days=1)}', true, false, false), "
               f"(date '{D - dt.timedelta(days=1)}', 'a', 'churn_risk_up', 'low', 'high', 'x', 1.0, 'p1', 'Call', "
               f"date '{D - dt.timedelta(days=1)}', true, false, false)) as t ({', '.join(CUSTOMER_ALERTS_COLUMNS)})")


def _uplift_row(campaign: str, lower: float, estimate: float, upper: float) -> str:
    """One campaign_uplift row in CAMPAIGN_UPLIFT_COLUMNS' order: 10 treated and 10 control measured."""
    values = [f"'{campaign}'", "'campaign'", "'all'", f"date '{D}'", "7", "false", "20", "10", "10", "5", "3",
              "0.5", "0.3",
              *(str(v) for v in (estimate, lower, upper)),  # conversion uplift
              "0.67", "-0.2", "2.5",  # relative conversion uplift
              "4.0", "-1.0", "9.0",  # revenue uplift
              "0.4", "-0.1", "1.2",  # relative revenue uplift
              "12.0", "8.0", "false", "false"]
    return "(" + ", ".join(values) + ")"


def test_the_action_loop_suites_block_a_broken_audience_or_interval(duck) -> None:
    wh, settings = duck
    schema = settings.build_schema
    audience = (f"('c1', 'a', 'p1', 'Lost', false, date '{D}', date '{D + dt.timedelta(days=7)}', date '{D}'), "
                f"('c1', 'b', 'p1', 'Lost', true, date '{D}', date '{D + dt.timedelta(days=7)}', date '{D}')")
    _load_campaign_tables(wh, schema, audience, _uplift_row("c1", 0.0, 0.2, 0.4))
    reports = action_reports(wh, settings, D, QualityConfig())
    assert [report.suite_name for report in reports] == [
        "analytics.campaign_audience", "analytics.campaign_uplift", "analytics.customer_alerts"]
    assert all(report.success for report in reports)
    assert reports[2].row_count == 1
    # an assignment dated after the run, and an interval that does not hold its estimate
    late = D + dt.timedelta(days=1)
    audience = audience.replace(f"'b', 'p1', 'Lost', true, date '{D}'", f"'b', 'p1', 'Lost', true, date '{late}'")
    _load_campaign_tables(wh, schema, audience, _uplift_row("c1", 0.3, 0.2, 0.4))
    audience_report, uplift_report, alerts_report = action_reports(wh, settings, D, QualityConfig())
    assert alerts_report.success
    pairs = ((audience_report, campaign_audience_suite()), (uplift_report, campaign_uplift_suite()))
    failed = [dict(check.kwargs) for report, suite in pairs
              for check, outcome in zip(suite.checks, report.results, strict=True) if not outcome.success]
    assert failed == [
        {"column_A": "as_of_date", "column_B": "assigned_on", "or_equal": True},
        {"column_A": "conversion_uplift", "column_B": "conversion_uplift_lower", "or_equal": True,
         "ignore_row_if": "either_value_is_missing"},
    ]
    with pytest.raises(QualityGateError):
        raise_if_any_blocking([audience_report, uplift_report])
