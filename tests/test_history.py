"""Point-in-time history: running day 1, then day 2, then day 3 as the data lands equals
backfilling days 1-3 after everything has landed. Runs the pipeline's real steps (ingest, dbt,
ML scoring) without the Airflow scheduler, on DuckDB.

The one documented exception (docs/operations.md "Erasure"): a person erased with `custseg erase` between the daily runs
and the backfill is absent from the backfill, which the daily runs' tables no longer show either once erased
(tests/test_erasure.py proves a backfill keeps them out). Nobody is erased here."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest

from custseg.config import load_settings
from custseg.dbt import dbt_run_env, run_dbt
from custseg.demo.truth import campaign_uplift_truth
from custseg.steps.identity import resolve_identities
from custseg.steps.ingest import ingest, source_names
from custseg.steps.prepare import prepare_warehouse
from custseg.steps.score import score
from custseg.warehouse import connect
from tests.conftest import E2E_END

DAYS = [E2E_END - dt.timedelta(days=2), E2E_END - dt.timedelta(days=1), E2E_END]


def _settings(root: Path, landing: Path):
    return load_settings({
        "CUSTSEG_DATA_DIR": str(root),
        "CUSTSEG_LANDING_DIR": str(landing),
        "CUSTSEG_DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "CUSTSEG_DOCS_DIR": str(root / "docs"),
        # the demo's campaigns (tests/conftest.py warehouse_env): they assign from DAYS[0] with a 2-day window
        "CUSTSEG_CAMPAIGNS_FILE": str(landing.parent / "campaigns.yml"),
    })


def _prepare(settings) -> None:
    prepare_warehouse(settings)
    run_dbt(settings, ["seed"])


def _ingest(settings, day: dt.date, run_id: str) -> None:
    for source in source_names(settings):
        ingest(settings, source, day, run_id)


def _build(settings, day: dt.date, run_id: str) -> None:
    resolve_identities(settings, day)
    run_dbt(settings, ["run", "--exclude", "tag:scored"], dbt_run_env(day))
    score(settings, day, run_id)
    run_dbt(settings, ["run", "--select", "tag:scored"], dbt_run_env(day))


def _land_until(source_landing: Path, target_landing: Path, day: dt.date) -> None:
    """Copy the landing files dated on or before `day`: what had arrived by then."""
    for path in source_landing.rglob("*.*"):
        if dt.date.fromisoformat(path.stem) <= day:
            dest = target_landing / path.relative_to(source_landing)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


# One person seen across the three days: a guest order, then an e-mail and a web session under the
# guest's address, then a CRM record with that address, which merges the guest into the CRM customer.
# The last night must re-attribute the guest's order and day-2 events to the CRM customer.
LATE_LINKED = {
    ("shop/orders", 0): ("order_id,order_ts,customer_ref,customer_email,customer_phone,currency,order_total,"
                         "discount_amount,item_count,category,order_status,device",
                         "SO-LATE-LINKED,{day}T10:00:00+00:00,,late.linked@example.org,,EUR,42.00,0.00,1,Home,"
                         "completed,web"),
    ("marketing/email_events", 1): ("event_id,campaign_id,email,event_type,event_ts",
                                    "EV-LATE-LINKED,CMP-LATE,late.linked@example.org,send,{day}T08:00:00Z"),
    ("web/sessions", 1): (None, '{{"session_id":"WS-LATE-LINKED","started_at_ms":{ms},"crm_customer_id":null,'
                                '"user_email":"late.linked@example.org","platform":"web","page_views":3,'
                                '"added_to_cart":false}}'),
    ("crm/customers", 2): ("crm_customer_id,email,phone,first_name,last_name,street_address,city,region,country,"
                           "birth_year,gender,signup_date,signup_source,loyalty_card,updated_at",
                           "CRM-LATE-LINKED,late.linked@example.org,,Late,Linked,1 High Street,Leeds,Yorkshire,GB,"
                           "1990,f,{day},web,,{day}T12:00:00Z"),
}


def _landing_with_late_link(demo_landing: Path, landing: Path) -> Path:
    shutil.copytree(demo_landing, landing)
    shutil.copy2(demo_landing.parent / "campaigns.yml", landing.parent / "campaigns.yml")
    for (entity, day_index), (header, line) in LATE_LINKED.items():
        day = DAYS[day_index]
        [path] = [p for p in (landing / entity).glob(f"{day}.*")] or [landing / entity / f"{day}.csv"]
        noon_ms = int(dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp() * 1000)
        text = path.read_text() if path.exists() else f"{header}\n"
        row = line.format(day=day, ms=noon_ms)
        if header:  # a CSV: empty values for the optional columns the file has beyond the ones given
            row += "," * (text.splitlines()[0].count(",") - header.count(","))
        path.write_text(text.rstrip("\n") + "\n" + row + "\n")
    return landing


INCREMENTAL_STAGING = ("stg_web__sessions", "stg_marketing__email_events", "stg_shop__orders", "stg_pos__sales",
                       "stg_crm__customers", "stg_social__interactions")
INCREMENTAL_ATTRIBUTION = ("int_web_sessions_attributed", "int_email_events_attributed", "fct_purchases")


def _incremental_tables(settings) -> dict[str, list[tuple]]:
    # built_as_of dates each row by the build that wrote it, so it is the one column in which an
    # extended table and a rebuild differ
    with connect(settings) as wh:
        tables = {}
        for t in INCREMENTAL_STAGING + INCREMENTAL_ATTRIBUTION:
            columns = [c for c in wh.columns("analytics_build", t) if c != "built_as_of"]
            tables[t] = sorted(wh.fetchall(f"select {', '.join(columns)} from analytics_build.{t}"), key=repr)
        return tables


def _migration(settings) -> list[tuple]:
    with connect(settings) as wh:
        return wh.fetchall("select * from analytics_build.segment_migration order by 1, 2, 3, 4, 5, 6")


def _portrait(settings) -> dict[str, list[tuple]]:
    """The portrait tables: the events of every date (published by date), and the last date's interests."""
    with connect(settings) as wh:
        return {
            "customer_events": wh.fetchall("select * from analytics_build.customer_events "
                                           "order by as_of_date, customer_id, event_type"),
            "customer_interests": wh.fetchall(
                "select customer_id, as_of_date, category, spend, purchases, page_views, round(interest_share, 12), "
                "round(affinity_index, 9), interest_rank from analytics_build.customer_interests "
                "order by customer_id, category"),
        }


def _campaigns(settings) -> dict[str, list[tuple]]:
    with connect(settings) as wh:
        return {
            "int_campaign_assignments": wh.fetchall(
                "select campaign_id, customer_id, playbook_id, rfm_segment, is_control, assigned_on "
                "from analytics_build.int_campaign_assignments order by campaign_id, customer_id"),
            "campaign_audience": wh.fetchall("select * from analytics_build.campaign_audience "
                                             "order by campaign_id, customer_id"),
            "campaign_uplift": [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in wh.fetchall(
                "select * from analytics_build.campaign_uplift order by campaign_id, segment_type, segment")],
            "customer_alerts": wh.fetchall("select * from analytics_build.customer_alerts "
                                           "order by as_of_date, customer_id, alert_type"),
        }


def _assert_uplift_recovers_the_planted_effects(settings, truth_dir: Path) -> None:
    """The last night measures the first night's assignments (the demo's 2-day window has passed): its counts,
    rates and means are what the audience and the purchases say, each planted effect lies in its 95% interval,
    the strong campaign's effect is detected and the campaign without one is not flagged."""
    with connect(settings) as wh:
        audience = wh.query_df("select campaign_id, customer_id, is_control, assigned_on, conversion_window_ends_on "
                               "from analytics_build.campaign_audience")
        purchases = wh.query_df("select customer_id, purchase_id, purchase_date, net_amount, is_refund "
                                "from analytics_build.fct_purchases")
        uplift = wh.query_df("select * from analytics_build.campaign_uplift where segment_type = 'campaign'")
    for frame, columns in ((audience, ["assigned_on", "conversion_window_ends_on"]), (purchases, ["purchase_date"])):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    uplift = uplift.set_index("campaign_id")
    # the outcome of each measured customer, from the rows themselves
    measured = audience[audience["conversion_window_ends_on"] <= DAYS[-1]]
    assert set(measured["assigned_on"]) == {DAYS[0]}
    in_window = measured.merge(purchases, on="customer_id")
    in_window = in_window[(in_window["purchase_date"] > in_window["assigned_on"])
                          & (in_window["purchase_date"] <= in_window["conversion_window_ends_on"])]
    keys = ["campaign_id", "customer_id"]
    converted = in_window[~in_window["is_refund"].astype(bool)].groupby(keys).size().rename("bought")
    revenue = in_window.groupby(keys)["net_amount"].sum().astype(float).rename("revenue")
    outcomes = measured.set_index(keys).join(converted).join(revenue).fillna({"bought": 0, "revenue": 0.0})
    outcomes["converted"] = outcomes["bought"] > 0
    truth = campaign_uplift_truth(truth_dir, audience, purchases, DAYS[-1]).set_index("campaign_id")
    for campaign_id, row in uplift.iterrows():
        arms = outcomes.loc[campaign_id].groupby("is_control")
        treated, control = arms.get_group(False), arms.get_group(True)
        assert (row["treated_customers"], row["control_customers"]) == (len(treated), len(control))
        assert row["treated_customers"] + row["control_customers"] == truth.loc[campaign_id, "measured_customers"]
        assert row["treated_conversions"] == treated["converted"].sum()
        assert row["control_conversions"] == control["converted"].sum()
        assert row["treated_revenue_per_customer"] == pytest.approx(treated["revenue"].mean(), abs=1e-9)
        assert row["control_revenue_per_customer"] == pytest.approx(control["revenue"].mean(), abs=1e-9)
        # the planted truth lies within the intervals
        true_conversion = truth.loc[campaign_id, "true_conversion_uplift"]
        true_revenue = truth.loc[campaign_id, "true_revenue_uplift"]
        assert row["conversion_uplift_lower"] <= true_conversion <= row["conversion_uplift_upper"], campaign_id
        assert row["revenue_uplift_lower"] <= true_revenue <= row["revenue_uplift_upper"], campaign_id
    assert truth.loc["demo-newsletter-no-effect", ["true_conversion_uplift", "true_revenue_uplift"]].tolist() == [0, 0]
    assert not uplift.loc["demo-newsletter-no-effect", "is_conversion_uplift_significant"]
    assert not uplift.loc["demo-newsletter-no-effect", "is_revenue_uplift_significant"]
    assert uplift.loc["demo-winback-voucher", "is_conversion_uplift_significant"]
    assert truth.loc["demo-winback-voucher", "true_conversion_uplift"] > 0.1


def _history(settings) -> list[tuple]:
    with connect(settings) as wh:
        return wh.fetchall(
            "select customer_id, as_of_date, rfm_segment, lifecycle_stage, r_score, f_score, m_score, "
            "value_tier, cluster_id, churn_risk_band, round(churn_probability, 9), monetary, model_version, "
            "satisfaction_class, social_engagement_level, interest_segment, price_sensitivity, promo_responsiveness "
            "from analytics_build.segment_history order by as_of_date, customer_id"
        )


@pytest.mark.e2e
def test_daily_runs_equal_a_backfill(demo_data, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    landing = _landing_with_late_link(demo_data.landing_dir, tmp_path / "landing")
    # daily: each day runs when only the files landed by then exist
    daily_landing = tmp_path / "daily_landing"
    daily = _settings(tmp_path / "daily", daily_landing)
    _prepare(daily)
    for day in DAYS:
        _land_until(landing, daily_landing, day)
        _ingest(daily, day, f"daily_{day}")
        capfd.readouterr()
        _build(daily, day, f"daily_{day}")
    last_night_log = capfd.readouterr().out
    for model in INCREMENTAL_STAGING + INCREMENTAL_ATTRIBUTION:
        assert f"{model}: extending the build as of {DAYS[-2]}" in last_night_log

    # backfill: everything has landed (including days after DAYS[-1]'s successors), then days 1-3
    backfill = _settings(tmp_path / "backfill", landing)
    _prepare(backfill)
    _ingest(backfill, DAYS[-1], "backfill")
    for day in DAYS:
        _build(backfill, day, f"backfill_{day}")

    daily_rows, backfill_rows = _history(daily), _history(backfill)
    assert {row[1] for row in daily_rows} == set(DAYS)
    daily_portrait, backfill_portrait = _portrait(daily), _portrait(backfill)
    assert {row[1] for row in daily_portrait["customer_events"]} == set(DAYS)
    assert len(daily_portrait["customer_interests"]) > 100
    assert daily_portrait == backfill_portrait
    # the action loop: the assignments made night by night are the backfill's, and so are the statistics
    daily_campaigns, backfill_campaigns = _campaigns(daily), _campaigns(backfill)
    assert {row[5] for row in daily_campaigns["int_campaign_assignments"]} >= {DAYS[0]}
    # alerts compare each date with the one before: the second and third nights have some
    assert {row[0] for row in daily_campaigns["customer_alerts"]} == set(DAYS[1:])
    assert daily_campaigns == backfill_campaigns
    _assert_uplift_recovers_the_planted_effects(daily, demo_data.ground_truth_dir)
    assert len(daily_rows) == len(backfill_rows) > 0
    assert daily_rows == backfill_rows
    # segment_migration is incremental by date: each run computed its own date's comparisons
    daily_moves, backfill_moves = _migration(daily), _migration(backfill)
    assert {row[0] for row in daily_moves} == set(DAYS[1:])
    assert daily_moves == backfill_moves

    with connect(backfill) as wh:
        moves = wh.fetchall(
            "select comparison, sum(customers) from analytics_build.segment_migration "
            "where as_of_date = %s and segment_type = 'rfm_segment' group by 1", (DAYS[-1],)
        )
    # day 3 compares with day 2 (previous run); there is no as-of date a week earlier
    assert dict(moves) == {"previous_run": len({r[0] for r in backfill_rows if r[1] == DAYS[-1]})}

    # The daily staging and event attribution tables were extended night by night; a rebuild from
    # every landed row (a rerun of the date rebuilds) must hold exactly the same rows.
    with connect(daily) as wh:
        [(crm_customer,)] = wh.fetchall("select customer_id from analytics_build.int_customer_keys "
                                        "where key_type = 'crm_id' and key_value = 'CRM-LATE-LINKED'")
        late_linked = wh.fetchall(
            "select 'email', customer_id from analytics_build.int_email_events_attributed "
            "where event_id = 'EV-LATE-LINKED' union all "
            "select 'web', customer_id from analytics_build.int_web_sessions_attributed "
            "where session_id = 'WS-LATE-LINKED' union all "
            "select 'purchase', customer_id from analytics_build.fct_purchases "
            "where purchase_id = 'shop:SO-LATE-LINKED'")
    assert sorted(late_linked) == [("email", crm_customer), ("purchase", crm_customer), ("web", crm_customer)]
    extended = _incremental_tables(daily)
    assert all(extended.values())
    run_dbt(daily, ["run", "--select", "path:models/staging", *INCREMENTAL_ATTRIBUTION, "--exclude", "tag:scored"],
            dbt_run_env(DAYS[-1]))
    assert _incremental_tables(daily) == extended

    # A rebuilt identity map may have reassigned or dropped any key: the next night the attribution
    # tables rebuild although nothing else would make them.
    next_day = DAYS[-1] + dt.timedelta(days=1)
    with connect(daily) as wh:
        wh.execute("delete from raw.identity_state")
    assert resolve_identities(daily, next_day)["mode"] == "rebuilt"
    capfd.readouterr()
    run_dbt(daily, ["run", "--select", "stg_pipeline__identity_map", "int_customer_keys", *INCREMENTAL_ATTRIBUTION],
            dbt_run_env(next_day))
    next_night_log = capfd.readouterr().out
    for model in INCREMENTAL_ATTRIBUTION:
        assert f"{model}: rebuilding from scratch" in next_night_log

    # A late file for an old day, loaded after the nights that read that day, makes the next
    # night rebuild (extending would miss it): its row is there the next night.
    late = DAYS[0]
    with connect(daily) as wh:
        wh.execute("insert into raw.web_sessions (session_id, started_at, platform, _partition_date, _source_file, "
                   "_source_line, _run_id) values ('WS-LATE-FILE', %s, 'web', %s, 'late.jsonl', 1, 'late')",
                   (dt.datetime.combine(late, dt.time(9)), late))
        wh.execute("insert into ops.load_audit (run_id, as_of_date, source, partition_date, source_file, rows_read, "
                   "rows_loaded, rows_quarantined, status, recorded_at) "
                   "values ('late', %s, 'web_sessions', %s, 'late.jsonl', 1, 1, 0, 'success', %s)",
                   (DAYS[-1], late, dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    run_dbt(daily, ["run", "--select", "stg_web__sessions"], dbt_run_env(DAYS[-1] + dt.timedelta(days=1)))
    with connect(daily) as wh:
        assert wh.fetchall("select landed_date from analytics_build.stg_web__sessions "
                           "where session_id = 'WS-LATE-FILE'") == [(late,)]
