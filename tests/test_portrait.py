"""The customer portrait on the session's end-to-end DuckDB run, against what the demo generator landed and
the ground truth it planted: social engagement (worked out here from the landed interactions, independently
of dbt), the recovered interests, the birthday events, and the interest table's own arithmetic."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from custseg.config import load_settings
from custseg.hashing import keyed_hash
from custseg.warehouse import connect
from tests.conftest import E2E_END

pytestmark = pytest.mark.e2e

#: the documented rules (dbt_project.yml vars; dbt docs overview "Social media" and "Events")
SOCIAL_WINDOW_DAYS, HIGH_MIN, MEDIUM_MIN, LOW_MIN, ADVOCATE_WINDOW_DAYS = 90, 12, 4, 1, 365
EVENTS_HORIZON_DAYS = 30


def _query(env: dict[str, str], sql: str) -> pd.DataFrame:
    with connect(load_settings(env)) as wh:
        return wh.query_df(sql)


def _crm_truth(env: dict[str, str], demo_data) -> pd.DataFrame:
    """The planted truth of CRM customers with the customer_id the pipeline gives them (the keyed hash
    of their CRM id) and the normalised e-mail addresses they appear under."""
    truth = pd.read_parquet(demo_data.ground_truth_dir / "customers.parquet")
    truth = truth[truth["crm_customer_id"].notna()].copy()
    key = load_settings(env).hash_key
    truth["customer_id"] = [keyed_hash(key, "customer:crm", ref.strip()) for ref in truth["crm_customer_id"]]
    identities = pd.read_parquet(demo_data.ground_truth_dir / "identities.parquet")
    emails = identities[identities["source_key"].str.contains("@", na=False)].copy()
    emails["email"] = emails["source_key"].str.strip().str.lower()
    truth["emails"] = truth["person_id"].map(emails.groupby("person_id")["email"].agg(set)).apply(
        lambda found: found if isinstance(found, set) else set())
    return truth.reset_index(drop=True)


def _landed_interactions(demo_data) -> pd.DataFrame:
    files = sorted((demo_data.landing_dir / "social" / "interactions").glob("*.jsonl"))
    frames = [pd.read_json(path, lines=True, dtype=False) for path in files if path.stat().st_size]
    rows = pd.concat(frames, ignore_index=True).drop_duplicates("interaction_id", keep="last")
    rows["date"] = pd.to_datetime(rows["interacted_at"], utc=True).dt.date
    handle = rows["handle"].str.strip().str.lstrip("@").str.lower()
    rows["key"] = rows["platform"].str.strip().str.lower() + ":" + handle
    rows["email"] = rows["user_email"].str.strip().str.lower()
    return rows[rows["date"] <= E2E_END]


def _expected_social(truth: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per CRM customer, the social features the documented rules give on the interactions that are
    theirs: their platform handle when the CRM holds it, or an e-mail of theirs on the row."""
    by_key = rows.groupby("key")
    expected = []
    for person in truth.itertuples():
        mine = rows[rows["email"].isin(person.emails)]
        if person.social_handle_in_crm:
            key = f"{person.social_platform}:{person.social_handle}"
            if key in by_key.groups:
                mine = pd.concat([mine, by_key.get_group(key)]).drop_duplicates("interaction_id")
        recent = (mine["date"] > E2E_END - dt.timedelta(days=SOCIAL_WINDOW_DAYS)).sum()
        advocacy = mine[mine["interaction_type"].isin(["share", "mention"])
                        & (mine["date"] > E2E_END - dt.timedelta(days=ADVOCATE_WINDOW_DAYS))]
        level = ("high" if recent >= HIGH_MIN else "medium" if recent >= MEDIUM_MIN
                 else "low" if recent >= LOW_MIN else "none")
        expected.append({
            "customer_id": person.customer_id,
            "social_engagement_level": level,
            "is_advocate": len(advocacy) > 0,
            "social_recency_days": (E2E_END - mine["date"].max()).days if len(mine) else None,
        })
    return pd.DataFrame(expected)


def test_social_features_are_what_the_landed_interactions_say(e2e_duckdb_env, demo_data) -> None:
    truth = _crm_truth(e2e_duckdb_env, demo_data)
    expected = _expected_social(truth, _landed_interactions(demo_data))
    published = _query(e2e_duckdb_env, "select customer_id, social_engagement_level, is_advocate, social_recency_days "
                                       "from analytics.customer_segments")
    merged = expected.merge(published, on="customer_id", suffixes=("_expected", ""), validate="one_to_one")
    assert len(merged) >= 0.95 * len(expected), "CRM customers missing from customer_segments"
    assert len(merged[merged["social_engagement_level"] != "none"]) >= 20, "too little social data to mean anything"
    assert merged["is_advocate"].sum() >= 3
    for column in ("social_engagement_level", "is_advocate", "social_recency_days"):
        got = merged[column].astype("object").where(merged[column].notna(), None)
        want = merged[f"{column}_expected"].astype("object").where(merged[f"{column}_expected"].notna(), None)
        differ = merged[[g != w for g, w in zip(got, want, strict=True)]]
        assert differ.empty, f"{column}: {len(differ)} customers differ, e.g.\n{differ.head()}"


def test_social_features_recover_the_planted_engagement(e2e_duckdb_env, demo_data) -> None:
    truth = _crm_truth(e2e_duckdb_env, demo_data)
    published = _query(e2e_duckdb_env, "select customer_id, social_engagement_level, is_advocate as found_advocate "
                                       "from analytics.customer_segments")
    linked = truth[truth["social_handle_in_crm"].fillna(False)].merge(published, on="customer_id")
    assert len(linked) >= 50
    advocates = linked[linked["found_advocate"]]
    # only planted advocates ever share or mention, so every advocate found is a real one
    assert len(advocates) > 0 and advocates["is_advocate"].all()
    assert linked.loc[linked["is_advocate"], "found_advocate"].mean() >= 0.3
    # the planted level (interaction rate) is recovered for most linked account holders
    agreement = (linked["social_level"] == linked["social_engagement_level"]).mean()
    assert agreement >= 0.65, f"social level agreement {agreement:.2f}"


def test_top_category_recovers_the_planted_interest(e2e_duckdb_env, demo_data) -> None:
    truth = _crm_truth(e2e_duckdb_env, demo_data)
    published = _query(e2e_duckdb_env, "select customer_id, top_category from analytics.customer_segments "
                                       "where top_category != 'unknown'")
    merged = truth.merge(published, on="customer_id")
    assert len(merged) >= 200
    accuracy = (merged["top_category"] == merged["favourite_category"].str.lower()).mean()
    # 8 categories: chance is 12.5 %; 82 % measured on this dataset
    assert accuracy >= 0.7, f"top-category accuracy {accuracy:.2f}"


def test_customer_interests_add_up(e2e_duckdb_env) -> None:
    interests = _query(e2e_duckdb_env, "select * from analytics.customer_interests")
    segments = _query(e2e_duckdb_env, "select customer_id, top_category, interest_breadth "
                                      "from analytics.customer_segments")
    assert len(interests) > 300 and interests["category"].nunique() == 8
    per_customer = interests.groupby("customer_id")
    assert (per_customer["interest_share"].sum() - 1).abs().max() < 1e-9
    assert (per_customer["interest_rank"].min() == 1).all()
    top = interests[interests["interest_rank"] == 1].set_index("customer_id")["category"]
    merged = segments.set_index("customer_id").join(top.rename("rank_1"))
    assert (merged["top_category"] == merged["rank_1"].fillna("unknown")).all()
    breadth = interests[interests["interest_share"] >= 0.1].groupby("customer_id").size()
    assert (merged["interest_breadth"] == breadth.reindex(merged.index).fillna(0).astype(int)).all()
    # the index is against the average active customer: it averages to 100 in every category
    n_active = interests["customer_id"].nunique()
    mean_index = interests.groupby("category")["affinity_index"].sum() / n_active
    assert (mean_index - 100).abs().max() < 1e-6


def _next_birthday(born: dt.date) -> dt.date:
    """The first birthday after E2E_END; 29 February falls on 28 February outside leap years."""
    for year in (E2E_END.year, E2E_END.year + 1):
        try:
            day = born.replace(year=year)
        except ValueError:  # 29 February in a year that is not a leap year
            day = dt.date(year, 2, 28)
        if day > E2E_END:
            return day
    raise AssertionError(born)


def test_birthday_events_are_published_by_week_only(e2e_duckdb_env, demo_data) -> None:
    truth = _crm_truth(e2e_duckdb_env, demo_data)
    truth = truth[truth["birth_date"].notna()]
    expected = set()
    for person in truth.itertuples():
        due = _next_birthday(person.birth_date)
        if due <= E2E_END + dt.timedelta(days=EVENTS_HORIZON_DAYS):
            year, week, _ = due.isocalendar()
            expected.add((person.customer_id, f"{year}-W{week:02d}"))
    events = _query(e2e_duckdb_env, "select * from analytics.customer_events")
    assert set(pd.to_datetime(events["as_of_date"]).dt.date) == {E2E_END}
    birthdays = events[events["event_type"] == "birthday"]
    assert len(expected) >= 5
    assert set(zip(birthdays["customer_id"], birthdays["due_week"], strict=True)) == expected
    # never the day: no due date or day count for a birthday, and no date of birth in any published column
    assert birthdays["due_date"].isna().all() and birthdays["days_until"].isna().all()
    others = events[events["event_type"] != "birthday"]
    assert others["due_date"].notna().all()
    assert (others["days_until"].between(1, EVENTS_HORIZON_DAYS)).all()
    columns = _query(e2e_duckdb_env, "select table_name, column_name from information_schema.columns "
                                     "where table_schema = 'analytics'")
    assert not [c for c in columns["column_name"] if "birth" in c and c != "birth_month"]
