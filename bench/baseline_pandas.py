"""baseline-pandas: what an analyst would write in a notebook instead of the pipeline.

Reads the order files (web-shop CSVs + till Parquet), computes RFM inputs, quintile scores and
named segments, fits k-means on log RFM, and writes one CSV. It skips, on purpose (see README):
identity resolution across channels (shop customer_ref/email and till loyalty cards stay separate
customers; no CRM), currency conversion, de-duplication, quarantine of bad rows (they are dropped
silently), web/email/support/CRM signals, rule-based segments, churn, CLV, the choice of k,
stable cluster ids, history, quality gates, publishing and docs. It always re-reads everything.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from bench.data import order_files, scenario_args

SEGMENTS = {  # classic RFM map on r and (f+m)/2, first match wins
    "Champions": "[4-5][4-5]", "Loyal": "[3-5][3-5]", "Potential Loyalist": "[4-5][2-3]", "New": "[5][1]",
    "Promising": "[4][1]", "Need Attention": "[3][2-3]", "About To Sleep": "[3][1-2]",
    "Can't Lose Them": "[1][4-5]", "At Risk": "[1-2][3-5]", "Hibernating": "[2][1-2]", "Lost": "[1][1-2]",
}


def load_orders(landing: Path, as_of_date: dt.date) -> pd.DataFrame:
    shop_files, pos_files = order_files(landing, as_of_date)
    shop = pd.concat((pd.read_csv(f, dtype=str) for f in shop_files), ignore_index=True)
    shop = shop[shop["order_status"].str.strip().str.lower() == "completed"]
    email = shop["customer_email"].str.strip().str.lower()
    shop_orders = pd.DataFrame({
        "customer": shop["customer_ref"].fillna(email),
        "when": pd.to_datetime(shop["order_ts"], utc=True, errors="coerce", format="ISO8601").dt.tz_localize(None),
        "amount": pd.to_numeric(shop["order_total"], errors="coerce"),
    })
    pos = pd.concat((pd.read_parquet(f) for f in pos_files), ignore_index=True)
    pos = pos[pos["loyalty_card"].notna()]
    till = pd.DataFrame({
        "customer": "LC" + pos["loyalty_card"].str.replace(r"\D", "", regex=True),
        "when": pd.to_datetime(pos["sold_at_local"], errors="coerce"),
        "amount": pos["amount"],
    })
    orders = pd.concat([shop_orders, till], ignore_index=True).dropna()
    orders["day"] = orders["when"].dt.date
    return orders[orders["day"] <= as_of_date]


def rfm(orders: pd.DataFrame, as_of_date: dt.date) -> pd.DataFrame:
    g = orders.groupby("customer")
    out = pd.DataFrame({
        "recency_days": (pd.Timestamp(as_of_date) - pd.to_datetime(g["day"].max())).dt.days,
        "frequency": g["day"].nunique(),
        "monetary": g["amount"].sum().clip(lower=0),
    })
    for col, score in (("recency_days", "r"), ("frequency", "f"), ("monetary", "m")):
        ranks = out[col].rank(method="first", ascending=col != "recency_days")
        out[score] = pd.qcut(ranks, 5, labels=[1, 2, 3, 4, 5]).astype(int)
    key = out["r"].astype(str) + ((out["f"] + out["m"]) // 2).astype(str)
    out["segment"] = "Other"
    for name, pattern in reversed(SEGMENTS.items()):
        out.loc[key.str.fullmatch(pattern), "segment"] = name
    return out


def main() -> None:
    args = scenario_args(__doc__)
    orders = load_orders(args.landing, args.as_of)
    table = rfm(orders, args.as_of)
    x = StandardScaler().fit_transform(np.log1p(table[["recency_days", "frequency", "monetary"]]))
    table["cluster"] = KMeans(n_clusters=5, n_init="auto", random_state=0).fit_predict(x)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out)
    print(json.dumps({"order_rows": len(orders), "customers": len(table)}))


if __name__ == "__main__":
    main()
