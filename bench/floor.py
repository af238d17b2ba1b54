"""floor: the least work the job needs on this machine.

One DuckDB scan of the order files (web-shop CSVs + till Parquet) into per-customer RFM and
clustering inputs and per-customer-day purchases, then the pipeline's own estimators: the same
k-means (``ml.clustering.BehaviourClusterer``) and the same BG/NBD + Gamma-Gamma fit
(``ml.features.clv_summary`` -> ``ml.clv.CLVModel``). Nothing else: no identity resolution, no
currency conversion, no churn model, no validation, no warehouse, no Airflow.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from bench.data import order_files, scenario_args
from ml.clustering import BehaviourClusterer
from ml.features import FEATURE_COLUMNS, clv_summary

TX_SQL = """
create temp table tx as
with shop as (
    select
        coalesce(nullif(trim(customer_ref), ''), lower(trim(customer_email))) as customer_id,
        cast(try_cast(order_ts as timestamptz) as date) as order_date,
        try_cast(order_total as double) as net_amount,
        coalesce(try_cast(discount_amount as double), 0) as discount_amount,
        case when lower(trim(device)) = 'app' then 'app' else 'online' end as channel,
        lower(trim(category)) as category,
    from read_csv($shop, all_varchar = true, header = true)
    where lower(trim(order_status)) = 'completed'
),
till as (
    select
        'LC' || regexp_replace(loyalty_card, '\\D', '', 'g') as customer_id,
        cast(try_cast(sold_at_local as timestamp) as date) as order_date,
        amount as net_amount,
        coalesce(discount_amount, 0) as discount_amount,
        'store' as channel,
        lower(trim(category)) as category,
    from read_parquet($pos)
    where loyalty_card is not null
)
select * from (select * from shop union all select * from till)
where customer_id is not null and net_amount is not null and order_date <= $as_of_date
"""

FEATURES_SQL = """
select
    customer_id,
    date_diff('day', max(order_date) filter (where net_amount >= 0), $as_of_date) as recency_days,
    count(distinct order_date) filter (where net_amount >= 0) as frequency,
    greatest(sum(net_amount), 0) as monetary,
    avg(net_amount) filter (where net_amount >= 0) as avg_order_value,
    avg(case when channel = 'online' then 1 else 0 end) filter (where net_amount >= 0) as online_share,
    avg(case when channel = 'store' then 1 else 0 end) filter (where net_amount >= 0) as store_share,
    avg(case when channel = 'app' then 1 else 0 end) filter (where net_amount >= 0) as app_share,
    coalesce(sum(discount_amount) filter (where net_amount >= 0)
        / nullif(sum(net_amount + discount_amount) filter (where net_amount >= 0), 0), 0) as discount_share,
    count(distinct category) filter (where net_amount >= 0) as category_breadth,
from tx group by customer_id having count(*) filter (where net_amount >= 0) > 0 order by customer_id
"""

DAILY_SQL = """
select customer_id, order_date, sum(net_amount) as net_amount
from tx where net_amount >= 0 group by all order by customer_id, order_date
"""


def main() -> None:
    args = scenario_args(__doc__)
    shop, pos = order_files(args.landing, args.as_of)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(TX_SQL, {"shop": [str(p) for p in shop], "pos": [str(p) for p in pos], "as_of_date": args.as_of})
    features = con.execute(FEATURES_SQL, {"as_of_date": args.as_of}).df().set_index("customer_id")
    daily = con.execute(DAILY_SQL).df()
    order_rows = con.execute("select count(*) from tx").fetchone()[0]  # type: ignore[index]
    con.close()

    clusterer = BehaviourClusterer(random_state=0).fit(features[list(FEATURE_COLUMNS)].astype(float))
    from ml.clv import CLVModel  # lazy, as in ml.scoring: the PyMC import is slow

    summary = clv_summary(daily, args.as_of)
    clv = CLVModel(random_state=0).fit(summary)
    labels = clv.predict(summary).set_index("customer_id")
    labels = features[["recency_days", "frequency", "monetary"]].join(labels)
    labels["cluster_id"] = clusterer.labels_
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(labels).to_parquet(args.out)
    print(json.dumps({"order_rows": int(order_rows), "customers": len(features), "k": int(clusterer.k_),
                      "bgnbd": clv.fit_info_.get("bgnbd_method"), "gg": clv.fit_info_.get("gg_method")}))


if __name__ == "__main__":
    main()
