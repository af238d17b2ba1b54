"""End to end: the real customer_segmentation DAG (Airflow + dbt + GX + scikit-learn) on
a small generated dataset, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from custseg.campaigns import is_control, load_campaigns
from custseg.config import PUBLISHED_TABLES, load_settings
from custseg.warehouse import connect
from tests.conftest import E2E_END, E2E_SCORE_CHUNK_CUSTOMERS, run_nightly, warehouse_env

pytestmark = pytest.mark.e2e

CONTRACT_COLUMNS = [
    "customer_id", "as_of_date", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
    "rfm_segment", "lifecycle_stage", "value_tier", "frequency_class", "channel_preference", "loyalty_tier",
    "satisfaction_class", "cluster_id", "cluster_name", "churn_probability", "churn_risk_band", "p_alive",
    "expected_purchases_90d", "predicted_clv_12m", "model_version", "scored_at",
]
RFM_SEGMENTS = {
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About To Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost",
}
LIFECYCLE = {"prospect", "new", "active", "at_risk", "churned", "reactivated"}


def published_checksums(env: dict[str, str]) -> dict[str, str]:
    settings = load_settings({**env})
    with connect(settings) as wh:
        return {t: wh.table_checksum("analytics", t) for t in PUBLISHED_TABLES}


def read_segments(env: dict[str, str]) -> pd.DataFrame:
    with connect(load_settings({**env})) as wh:
        return wh.query_df("select * from analytics.customer_segments order by customer_id")


def assert_segments_are_sound(segments: pd.DataFrame, as_of_date: dt.date) -> None:
    missing = [c for c in CONTRACT_COLUMNS if c not in segments.columns]
    assert not missing, f"contract columns missing: {missing}"
    assert len(segments) > 100
    assert segments["customer_id"].is_unique
    assert set(pd.to_datetime(segments["as_of_date"]).dt.date) == {as_of_date}
    buyers = segments[segments["lifecycle_stage"] != "prospect"]
    prospects = segments[segments["lifecycle_stage"] == "prospect"]
    assert len(buyers) > 0 and len(prospects) > 0
    for score in ("r_score", "f_score", "m_score"):
        assert buyers[score].between(1, 5).all(), score
        # frequency is heavily tied (most buyers have 1 or 2 purchase days) and ties share a score,
        # so only recency and monetary are expected to fill all five quintiles
        expected = 5 if score != "f_score" else 3
        assert buyers[score].nunique() >= expected, f"{score} uses too few scores"
        assert prospects[score].isna().all(), f"prospects must have null {score}"
    assert set(buyers["rfm_segment"]) <= RFM_SEGMENTS
    assert len(set(buyers["rfm_segment"])) >= 6, "a realistic customer base spans most RFM segments"
    assert prospects["rfm_segment"].isna().all()
    assert set(segments["lifecycle_stage"]) <= LIFECYCLE
    assert buyers["churn_probability"].between(0, 1).all()
    assert buyers["p_alive"].between(0, 1).all()
    assert (buyers["predicted_clv_12m"].astype(float) >= 0).all()
    assert (buyers["expected_purchases_90d"] >= 0).all()
    assert buyers["cluster_id"].notna().all()
    assert set(buyers["churn_risk_band"]) <= {"low", "medium", "high", "critical"}
    # not constant placeholders: every label varies across customers
    for col in ("churn_probability", "p_alive", "predicted_clv_12m", "cluster_id", "value_tier", "loyalty_tier"):
        assert buyers[col].nunique() > 1, f"{col} is constant"
    assert segments["model_version"].nunique() == 1
    assert set(pd.to_datetime(segments["scored_at"])) == {pd.Timestamp(as_of_date + dt.timedelta(days=1))}


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Same values compare equal whatever driver dtypes (int32 vs int64, NaN vs None) the engines return."""
    out = frame.reset_index(drop=True).copy()
    for col in out.columns:
        values = pd.to_numeric(out[col], errors="coerce") if out[col].dtype != bool else None
        if values is not None and out[col].notna().any() and values.notna().sum() == out[col].notna().sum():
            # whole numbers as integers (an int column with nulls arrives as floats from one driver)
            if (values.dropna() % 1 == 0).all():
                out[col] = values.astype("Int64")
            elif values.dtype.kind == "f":
                out[col] = values.round(9)
    return out.astype("string").fillna("<null>")


def test_duckdb_end_to_end(e2e_duckdb_env) -> None:
    assert_segments_are_sound(read_segments(e2e_duckdb_env), E2E_END)
    with connect(load_settings(e2e_duckdb_env)) as wh:
        for table in PUBLISHED_TABLES:
            rows = wh.fetchall(f"select count(*) from analytics.{table}")[0][0]
            # migration and alerts compare two as-of dates, so they are empty after the very first run
            assert rows > 0 or table in ("segment_migration", "customer_alerts"), table
        # scored chunk by chunk (tests/conftest.py sets a small chunk): every customer labelled once
        n_customers, metrics = wh.fetchall("select n_customers, metrics from ml.scoring_runs")[0]
        assert json.loads(metrics)["scored_in_chunks"] == -(-n_customers // E2E_SCORE_CHUNK_CUSTOMERS) >= 3
        labels = wh.fetchall("select count(*), count(distinct customer_id) from analytics_build.ml_customer_labels")
        assert labels == [(n_customers, n_customers)]
        assert not wh.table_exists("analytics_build", "ml_customer_labels_scoring")
    assert_holdout_is_the_keyed_hash(e2e_duckdb_env)
    with connect(load_settings(e2e_duckdb_env)) as wh:
        docs = Path(e2e_duckdb_env["CUSTSEG_DOCS_DIR"]) / "dbt" / "static_index.html"
        assert docs.stat().st_size > 100_000, "the static dbt docs site was not built"


def test_every_input_row_is_loaded_or_quarantined(e2e_duckdb_env, demo_data) -> None:
    with connect(load_settings(e2e_duckdb_env)) as wh:
        audit = wh.query_df(
            "select source, sum(rows_read) as read, sum(rows_loaded) as loaded, "
            "sum(rows_quarantined) as quarantined, sum(coalesce(rows_suppressed, 0)) as suppressed "
            "from ops.load_audit where status = 'success' group by source"
        ).set_index("source")
        quarantine = wh.query_df("select source, count(*) as n from raw.quarantine group by source").set_index("source")
    assert (audit["read"] == audit["loaded"] + audit["quarantined"] + audit["suppressed"]).all()
    assert (audit["suppressed"] == 0).all(), "nobody was erased in this warehouse"
    for source, rows in demo_data.rows.items():
        assert audit.loc[source, "read"] == rows, source
    # the generator plants invalid shop orders; every one is quarantined with a reason
    assert audit.loc["shop_orders", "quarantined"] == demo_data.invalid_rows["shop_orders"]
    assert quarantine.loc["shop_orders", "n"] == demo_data.invalid_rows["shop_orders"]


def test_every_row_read_is_accounted_for_up_to_the_purchases(e2e_duckdb_env, demo_data) -> None:
    """Per source: rows read = quarantined + not yet visible + merged + excluded + published, each
    counted on its own by the night's audit (ops.source_reconciliation), and nothing unaccounted."""
    with connect(load_settings(e2e_duckdb_env)) as wh:
        rec = wh.query_df("select * from ops.source_reconciliation").set_index("source")
        duplicates = dict(wh.fetchall("select source, sum(rows_duplicate) from ops.load_audit "
                                      "where status = 'success' group by source"))
        cancelled = wh.fetchall("select count(*) from analytics_build.stg_shop__orders where is_cancelled")[0][0]
    assert sorted(rec.index) == sorted(demo_data.rows)
    assert (rec["rows_unaccounted"] == 0).all(), rec
    for source, rows in demo_data.rows.items():
        r = rec.loc[source]
        assert r.rows_read == rows, source
        assert r.rows_read == (r.rows_quarantined + r.rows_suppressed + r.rows_not_yet_visible + r.rows_superseded
                               + r.rows_excluded + r.rows_published), source
        # the generator's exact copies are loaded, counted as duplicates, and merged by staging
        assert duplicates[source] == demo_data.duplicate_rows[source], source
        assert r.rows_superseded >= demo_data.duplicate_rows[source], source
    assert rec.loc["shop_orders", "rows_quarantined"] == demo_data.invalid_rows["shop_orders"]
    assert rec.loc["shop_orders", "excluded"].startswith(f"cancelled: {cancelled};")
    assert rec.loc["pos_sales", "rows_excluded"] > 0, "the demo data has anonymous till sales"


def test_rerun_of_the_same_date_gives_identical_tables(e2e_duckdb_env, airflow_home) -> None:
    """Identical, with the one documented exception (docs/operations.md "Erasure"): a person erased between the
    two runs is missing from the rerun and from its aggregates (tests/test_erasure.py). Nobody was erased here."""
    with connect(load_settings(e2e_duckdb_env)) as wh:
        assert wh.fetchall("select count(*) from ops.erasure_log")[0][0] == 0
    before = published_checksums(e2e_duckdb_env)
    run_nightly(e2e_duckdb_env, airflow_home)
    assert published_checksums(e2e_duckdb_env) == before
    with connect(load_settings(e2e_duckdb_env)) as wh:
        # the rerun replaced the logical date's partition rather than appending to it
        dupes = wh.fetchall(
            "select count(*) from (select _partition_date, _source_line, count(*) from raw.shop_orders "
            "group by 1, 2 having count(*) > 1)"
        )[0][0]
    assert dupes == 0


@pytest.mark.postgres
def assert_holdout_is_the_keyed_hash(env: dict[str, str]) -> None:
    """Every campaign of the demo assigned customers tonight, and each one's side of the holdout is the one
    the Python rule (custseg.campaigns.is_control) gives: the SQL applies the one keyed-hash spec."""
    settings = load_settings(env)
    campaigns = {c.campaign_id: c for c in load_campaigns(settings.campaigns_file)}
    with connect(settings) as wh:
        audience = wh.query_df("select campaign_id, customer_id, is_control, assigned_on, as_of_date "
                               "from analytics.campaign_audience")
    assert set(audience["campaign_id"]) == set(campaigns) and len(campaigns) >= 3
    share = {campaign_id: campaign.control_share for campaign_id, campaign in campaigns.items()}
    expected = [is_control(settings.hash_key, row.campaign_id, row.customer_id, share[row.campaign_id])
                for row in audience.itertuples()]
    assert audience["is_control"].astype(bool).tolist() == expected
    assert 0 < sum(expected) < len(expected)
    # one night ran: everyone in a target was assigned on it
    assert set(pd.to_datetime(audience["assigned_on"]).dt.date) == {E2E_END}


def test_postgres_end_to_end_matches_duckdb(pg_database, demo_data, airflow_home, session_dir, e2e_duckdb_env) -> None:
    data_dir = session_dir / "postgres_run"
    env = warehouse_env("postgres", data_dir, pg_url=pg_database, landing_dir=demo_data.landing_dir)
    run_nightly(env, airflow_home)
    pg = read_segments(env)
    assert_segments_are_sound(pg, E2E_END)
    duck = read_segments(e2e_duckdb_env)
    keys = ["customer_id", "rfm_segment", "lifecycle_stage", "r_score", "f_score", "m_score", "value_tier",
            "frequency_class", "channel_preference", "loyalty_tier", "satisfaction_class", "cluster_id",
            "churn_risk_band", "model_version",
            # the portrait: the same SQL (cross-database macros) gives the same values on both engines
            "gender", "country", "region", "age_band", "birth_month", "social_engagement_level", "is_advocate",
            "social_recency_days", "top_category", "interest_breadth", "interest_segment", "has_open_complaint",
            "last_ticket_topic", "nps_trend", "price_sensitivity", "promo_responsiveness", "playbook_id",
            # consent per channel
            "has_email_consent", "has_sms_consent", "has_ads_consent"]
    pd.testing.assert_frame_equal(_comparable(pg[keys]), _comparable(duck[keys]))
    assert (pg["churn_probability"].astype(float) - duck["churn_probability"].astype(float)).abs().max() < 1e-9
    summary_sql = ("select as_of_date, segment_type, segment, customers from analytics.segment_summary "
                   "order by segment_type, segment")
    with connect(load_settings(env)) as wh:
        pg_summary = wh.query_df(summary_sql)
    with connect(load_settings(e2e_duckdb_env)) as wh:
        duck_summary = wh.query_df(summary_sql)
    pd.testing.assert_frame_equal(pg_summary.astype(str), duck_summary.astype(str))
    for sql in ("select customer_id, event_type, due_week, due_date, days_until, anniversary_years "
                "from analytics.customer_events order by customer_id, event_type",
                "select customer_id, category, spend, purchases, page_views, interest_share, affinity_index, "
                "interest_rank from analytics.customer_interests order by customer_id, category"):
        with connect(load_settings(env)) as wh:
            pg_rows = wh.query_df(sql)
        with connect(load_settings(e2e_duckdb_env)) as wh:
            duck_rows = wh.query_df(sql)
        assert len(duck_rows) > 50, sql
        pd.testing.assert_frame_equal(_comparable(pg_rows), _comparable(duck_rows), check_dtype=False)
    # the action loop: the same audience, sides of the holdout and statistics on both engines
    for sql in ("select campaign_id, customer_id, playbook_id, rfm_segment, is_control, assigned_on, "
                "conversion_window_ends_on from analytics.campaign_audience order by campaign_id, customer_id",
                "select * from analytics.campaign_uplift order by campaign_id, segment_type, segment"):
        with connect(load_settings(env)) as wh:
            pg_rows = wh.query_df(sql)
        with connect(load_settings(e2e_duckdb_env)) as wh:
            duck_rows = wh.query_df(sql)
        assert len(duck_rows) > 3, sql
        for frame in (pg_rows, duck_rows):  # dates as dates, whatever type each driver returns them as
            for column in ("assigned_on", "conversion_window_ends_on", "as_of_date"):
                if column in frame:
                    frame[column] = pd.to_datetime(frame[column]).dt.date.astype(str)
        pd.testing.assert_frame_equal(_comparable(pg_rows), _comparable(duck_rows), check_dtype=False)
    assert_holdout_is_the_keyed_hash(env)
    assert_exports_agree(env, e2e_duckdb_env, data_dir / "exports")
    assert_bi_role_is_read_only_on_analytics(pg_database)


def assert_exports_agree(pg_env: dict[str, str], duck_env: dict[str, str], out: Path) -> None:
    """`custseg export` reads PostgreSQL as it reads DuckDB: the same customers, CRM references and contact
    details, the same counts left out, for a campaign and a segment audience, and a record of each file."""
    from custseg.steps.activate import export_audience

    with connect(load_settings(duck_env), read_only=True) as wh:
        [(segment,)] = wh.fetchall("select rfm_segment from analytics.customer_segments where has_ads_consent "
                                   "and rfm_segment is not null group by 1 order by count(*) desc, 1 limit 1")
    for audience, channel, include in (("campaign:demo-winback-voucher", "email", ("email", "phone")),
                                       (segment, "ads", ())):
        files = {}
        for name, env in (("postgres", pg_env), ("duckdb", duck_env)):
            manifest = export_audience(load_settings(env), audience, "csv", out / name, channel, include)
            files[name] = (manifest, pd.read_csv(out / name / manifest["file"], dtype=str))
        (pg_manifest, pg_file), (duck_manifest, duck_file) = files["postgres"], files["duckdb"]
        assert pg_manifest["rows"] > 5, audience
        for key in ("rows", "columns", "campaign_controls_left_out", "without_consent_left_out", "as_of_date"):
            assert pg_manifest[key] == duck_manifest[key], (audience, key)
        exact = [c for c in pg_file.columns if c != "predicted_clv_12m"]
        pd.testing.assert_frame_equal(pg_file[exact], duck_file[exact])
        assert ((pg_file["predicted_clv_12m"].astype(float) - duck_file["predicted_clv_12m"].astype(float)).abs()
                .max() < 1e-6)
        with connect(load_settings(pg_env)) as wh:
            [(recorded,)] = wh.fetchall("select sha256 from ops.audience_exports where file_path = %s",
                                        (str((out / "postgres" / pg_manifest["file"]).resolve()),))
        assert recorded == pg_manifest["sha256"]


def assert_bi_role_is_read_only_on_analytics(url: str) -> None:
    """custseg_bi reads analytics and nothing else, and cannot write (a login role is made for it)."""
    import uuid

    import psycopg

    login = f"bi_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"create role {login} login in role custseg_bi")
    try:
        bi_url = url.replace("postgres@", f"{login}@", 1)
        with psycopg.connect(bi_url, autocommit=True) as bi:
            assert bi.execute("select count(*) from analytics.customer_segments").fetchone()[0] > 0
            assert bi.execute("select count(*) from analytics.segment_summary").fetchone()[0] > 0
            for table in PUBLISHED_TABLES:  # every published table, the action loop's included
                bi.execute(f"select * from analytics.{table} limit 1")
            for forbidden in ("raw.shop_orders", "raw.crm_customers", "analytics_build.customer_segments",
                              "ml.model_runs", "ops.load_audit"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bi.execute(f"select 1 from {forbidden} limit 1")
            for statement in ("delete from analytics.customer_segments",
                              "insert into analytics.segment_summary (as_of_date) values (current_date)",
                              "create table analytics.bi_scratch (x int)",
                              "drop table analytics.customer_segments"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bi.execute(statement)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"drop owned by {login}")
            admin.execute(f"drop role {login}")
