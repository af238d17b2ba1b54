"""Scoring the pipeline against the demo generator's ground truth (identity resolution and
clusters); used by tests and the benchmark, never by a nightly run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from custseg.config import load_settings
from custseg.hashing import keyed_hash, keyed_hash_sql, namespace_sql
from custseg.steps.identity import (
    ALIAS,
    norm_card,
    norm_crm,
    norm_email,
    norm_phone,
)


# -- evaluation against the generator's truth ------------------------------------------------
def ground_truth_labels(truth_dir: Path, hash_key: str | None = None) -> pd.DataFrame:
    """customer_id (the keyed hash of the CRM id, namespace customer:crm) → behaviour_type, for CRM customers.

    `hash_key` is the key the warehouse was built with; by default the configured one (CUSTSEG_HASH_KEY).
    """
    key = load_settings().hash_key if hash_key is None else hash_key
    truth = pd.read_parquet(Path(truth_dir) / "customers.parquet", columns=["crm_customer_id", "behaviour_type"])
    truth = truth[truth["crm_customer_id"].notna()]
    # the CRM id as staging normalises it (trimmed) before hashing
    ids = [keyed_hash(key, "customer:crm", str(c).strip()) for c in truth["crm_customer_id"]]
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
