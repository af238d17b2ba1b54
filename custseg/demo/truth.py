"""Scoring the pipeline against the demo generator's ground truth (identity resolution, clusters and
the planted campaign effects); used by tests and the benchmark, never by a nightly run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from custseg.config import load_settings
from custseg.demo.generate import DEMO_CAMPAIGNS, crm_customer_id
from custseg.hashing import keyed_hash_sql, namespace_sql, norm_card, norm_crm, norm_email, norm_phone
from custseg.steps.identity import ALIAS


# -- evaluation against the generator's truth ------------------------------------------------
def ground_truth_labels(truth_dir: Path, hash_key: str | None = None) -> pd.DataFrame:
    """customer_id (the keyed hash of the CRM id, namespace customer:crm) → behaviour_type, for CRM customers.

    `hash_key` is the key the warehouse was built with; by default the configured one (CUSTSEG_HASH_KEY).
    """
    key = load_settings().hash_key if hash_key is None else hash_key
    truth = pd.read_parquet(Path(truth_dir) / "customers.parquet", columns=["crm_customer_id", "behaviour_type"])
    truth = truth[truth["crm_customer_id"].notna()]
    ids = [crm_customer_id(key, str(c)) for c in truth["crm_customer_id"]]
    return pd.DataFrame({"customer_id": ids, "behaviour_type": truth["behaviour_type"].astype(str).to_numpy()})


def cluster_agreement(labels: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Adjusted Rand index of cluster_id vs the latent behaviour_type, over labelled buyers in the truth."""
    # imported here: scikit-learn (2.2 s) (tests/test_architecture.py LAZY)
    from sklearn.metrics import adjusted_rand_score

    joined = labels.dropna(subset=["cluster_id"]).merge(truth, on="customer_id", how="inner")
    joined = joined[joined["behaviour_type"] != "prospect"]
    return {
        "customers": len(joined),
        "adjusted_rand_index": float(adjusted_rand_score(joined["behaviour_type"], joined["cluster_id"].astype(int)))
        if len(joined) else float("nan"),
        "crosstab": pd.crosstab(joined["behaviour_type"], joined["cluster_id"].astype(int)),
    }


def score_against_truth(key_map: pd.DataFrame, identities_parquet: str, hash_key: str,
                        country_code: str = "44") -> dict[str, float]:
    """Pairwise precision and recall of the map against the generator's ground truth.

    The truth lists every key each person appeared under, as written. Keys are normalised and
    hashed with the same SQL as the map, then every pair of distinct keys is judged: same person
    and same customer_id (true positive), different person but same customer (false merge), same
    person but different customers (missed link). A key missing from the map is its own customer.
    `country_code` must be the `Settings.phone_country_code` the map was built with.
    """
    con = duckdb.connect()
    # the key where HASH_KEY_SQL reads it, as in the warehouse
    con.execute("create schema raw")
    con.execute("create table raw.pii_salt as select ? as pii_salt", [hash_key])
    con.register("key_map", key_map[key_map["key_type"] != ALIAS][["key_type", "key_value", "customer_id"]])
    k = "t.source_key"
    typed = f"""
        select distinct person_id,
            case when {k} like 'CRM-%' then 'crm_id' when {k} like '%@%' then 'email'
                 when upper(trim({k})) like 'LC%' then 'loyalty_card' else 'phone' end as key_type,
            {k} as source_key
        from read_parquet(?) as t
    """
    email = keyed_hash_sql("duckdb", norm_email(k), namespace_sql("email"))
    phone = keyed_hash_sql("duckdb", norm_phone(k, country_code), namespace_sql("phone"))
    value = (f"case key_type when 'crm_id' then {norm_crm(k)} when 'email' then {email} "
             f"when 'phone' then {phone} else {norm_card(k)} end")
    frame = con.execute(f"""
        with typed as ({typed}),
        truth as (
            select distinct t.person_id, t.key_type, {value} as key_value
            from typed as t
        )
        select truth.person_id, truth.key_type, truth.key_value,
            coalesce(m.customer_id, 'unmapped:' || truth.key_type || truth.key_value) as customer_id
        from truth left join key_map as m using (key_type, key_value)
    """, [identities_parquet]).df()
    con.close()

    def pairs(counts: pd.Series) -> int:
        c = counts.to_numpy(dtype=np.int64)
        return int((c * (c - 1) // 2).sum())

    together = pairs(frame.groupby(["person_id", "customer_id"]).size())
    same_customer = pairs(frame.groupby("customer_id").size())
    same_person = pairs(frame.groupby("person_id").size())
    return {
        "keys": len(frame),
        "persons": int(frame["person_id"].nunique()),
        "customers": int(frame["customer_id"].nunique()),
        "precision": together / same_customer if same_customer else 1.0,
        "recall": together / same_person if same_person else 1.0,
    }


def campaign_uplift_truth(truth_dir: Path, audience: pd.DataFrame, purchases: pd.DataFrame, as_of_date: dt.date,
                          hash_key: str | None = None) -> pd.DataFrame:
    """The true effect of each demo campaign (generate.DEMO_CAMPAIGNS) on its measured audience, as of a date.

    `audience`: campaign_id, customer_id, assigned_on, is_control (analytics.campaign_audience);
    `purchases`: customer_id, purchase_id, purchase_date, net_amount and, when given, is_refund
    (analytics_build.fct_purchases). A member is measured once their window has closed
    (assigned_on + conversion_window_days <= `as_of_date`), in either arm, as campaign_uplift measures.

    The effect is the sample average treatment effect over the measured members, from both potential
    outcomes of each one (ground_truth/campaign_responses.parquet has every potential response, the
    control members' too): Y0 = a purchase in the window (after assigned_on, up to the window's end; a
    refunded one does not convert, as in campaign_uplift) other than this campaign's own planted orders
    (purchase_id 'shop:' || order_id); Y1 = Y0, or the member's potential response falls in the window.
    Other campaigns' realised responses count in Y0: they happen whichever arm of this campaign the member
    is in. The revenue effect is the response amount (EUR, the reporting currency) when it falls in the window.
    Guests and members without a potential response have no effect, so a campaign planted with none has
    exactly 0.

    Returns one row per demo campaign in `audience` (DEMO_CAMPAIGNS order): campaign_id,
    measured_customers, true_conversion_uplift, true_revenue_uplift (NaN when nobody is measured yet).
    Campaigns that are not the demo's are left out: the generator planted nothing for them.
    `hash_key` is the key the warehouse ran with (None: the configured one, CUSTSEG_HASH_KEY).
    """
    key = load_settings().hash_key if hash_key is None else hash_key
    windows = {c.campaign_id: c.conversion_window_days for c in DEMO_CAMPAIGNS}
    measured = audience.loc[audience["campaign_id"].isin(list(windows)), ["campaign_id", "customer_id", "assigned_on"]]
    measured = measured.assign(assigned_on=_days(measured["assigned_on"]))
    measured["window_ends_on"] = measured["assigned_on"] + pd.to_timedelta(
        measured["campaign_id"].map(windows).astype("int64"), unit="D")
    measured = measured[measured["window_ends_on"] <= pd.Timestamp(as_of_date)]

    responses = pd.read_parquet(Path(truth_dir) / "campaign_responses.parquet",
                                columns=["campaign_id", "crm_customer_id", "response_date", "amount_eur", "order_id"])
    responses["customer_id"] = [crm_customer_id(key, str(c)) for c in responses["crm_customer_id"]]
    responses["purchase_id"] = "shop:" + responses["order_id"].astype(str)
    responses["response_date"] = _days(responses["response_date"])

    converted = _converted_without_the_campaign(measured, purchases, responses)
    members = measured.merge(converted, on=["campaign_id", "customer_id"], how="left").merge(
        responses[["campaign_id", "customer_id", "response_date", "amount_eur"]],
        on=["campaign_id", "customer_id"], how="left")
    # a missing response date (no potential response, or a guest) compares False: no effect
    responds = ((members["response_date"] > members["assigned_on"])
                & (members["response_date"] <= members["window_ends_on"]))
    members["conversion_effect"] = (responds & ~members["converted"].eq(True)).astype(float)
    members["revenue_effect"] = members["amount_eur"].where(responds, 0.0).astype(float)

    in_audience = set(audience["campaign_id"])
    present = [c for c in windows if c in in_audience]
    grouped = members.groupby("campaign_id")
    return pd.DataFrame({
        "campaign_id": present,
        "measured_customers": grouped.size().reindex(present, fill_value=0).astype("int64").to_numpy(),
        "true_conversion_uplift": grouped["conversion_effect"].mean().reindex(present).to_numpy(dtype=float),
        "true_revenue_uplift": grouped["revenue_effect"].mean().reindex(present).to_numpy(dtype=float),
    })


def _days(values: pd.Series) -> pd.Series:
    """Dates (date objects, strings or timestamps) as naive midnight timestamps, to compare and add days to."""
    days = pd.to_datetime(values)
    if days.dt.tz is not None:
        days = days.dt.tz_localize(None)
    return days.dt.normalize()


def _converted_without_the_campaign(measured: pd.DataFrame, purchases: pd.DataFrame,
                                    responses: pd.DataFrame) -> pd.DataFrame:
    """campaign_id, customer_id, converted = True for members with a converting purchase in their window
    that is not one of the campaign's own planted orders (Y0 of the member)."""
    bought = purchases[["customer_id", "purchase_id", "purchase_date"]].assign(
        purchase_date=_days(purchases["purchase_date"]))
    if "is_refund" in purchases.columns:
        bought = bought[~purchases["is_refund"].fillna(False).astype(bool).to_numpy()]
    joined = measured.merge(bought, on="customer_id")
    joined = joined[(joined["purchase_date"] > joined["assigned_on"])
                    & (joined["purchase_date"] <= joined["window_ends_on"])]
    own = joined.merge(responses[["campaign_id", "purchase_id"]], on=["campaign_id", "purchase_id"],
                       how="left", indicator=True)["_merge"].eq("both").to_numpy()
    return joined.loc[~own, ["campaign_id", "customer_id"]].drop_duplicates().assign(converted=True)
