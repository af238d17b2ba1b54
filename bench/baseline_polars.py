"""baseline-polars: the baseline-pandas notebook (bench/baseline_pandas.py) written in polars.

The same inputs (``bench.data.order_files``: web-shop CSVs + till Parquet landed up to the as-of
date), the same filters, RFM inputs, quintile scores, segment map and KMeans(k=5) on log RFM, and one
CSV; its RFM columns (recency_days, frequency, monetary, r, f, m, segment) equal baseline-pandas's on
the same data. It skips what baseline-pandas skips, on purpose (see README): identity resolution
across channels (shop customer_ref/email and till loyalty cards stay separate customers; no CRM),
currency conversion, de-duplication, quarantine of bad rows (they are dropped silently),
web/email/support/CRM signals, rule-based segments, churn, CLV, the choice of k, stable cluster ids,
history, quality gates, publishing and docs. It always re-reads everything.

Where it cannot be pandas to the letter: order_ts is parsed with the one ISO 8601 form the shop
export has (``2026-10-31T20:48:58-04:00``) and sold_at_local with ``%Y-%m-%d %H:%M:%S``, where pandas
accepts any ISO 8601 / infers the format; and only an empty CSV field is missing, where pandas's
read_csv also takes "NA", "null", "None", ... for missing. On the generated data both read the same.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from bench.baseline_pandas import SEGMENTS  # the same map (sklearn loads pandas in both notebooks anyway)
from bench.data import order_files, scenario_args


def load_orders(landing: Path, as_of_date: dt.date) -> pl.LazyFrame:
    """customer, when (UTC, naive), amount, day: the completed shop orders and the carded till sales."""
    shop_files, pos_files = order_files(landing, as_of_date)
    # every column as text (pandas: dtype=str); only the three used are read
    shop = (
        pl.scan_csv(shop_files, infer_schema=False)
        .filter(pl.col("order_status").str.strip_chars().str.to_lowercase() == "completed")
        .select(
            customer=pl.coalesce("customer_ref", pl.col("customer_email").str.strip_chars().str.to_lowercase()),
            when=pl.col("order_ts")
            .str.to_datetime("%Y-%m-%dT%H:%M:%S%z", time_unit="us", time_zone="UTC", strict=False)
            .dt.replace_time_zone(None),
            amount=pl.col("order_total").cast(pl.Float64, strict=False),
        )
    )
    till = (
        pl.scan_parquet(pos_files)
        .filter(pl.col("loyalty_card").is_not_null())
        .select(
            customer=pl.lit("LC") + pl.col("loyalty_card").str.replace_all(r"\D", ""),
            when=pl.col("sold_at_local").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", strict=False),
            amount=pl.col("amount").cast(pl.Float64),
        )
    )
    return (
        pl.concat([shop, till])
        .with_columns(pl.col("amount").fill_nan(None))  # pandas's dropna drops NaN as well as missing
        .drop_nulls()
        .with_columns(day=pl.col("when").dt.date())
        .filter(pl.col("day") <= as_of_date)
    )


def _quintile(column: str, descending: bool = False) -> pl.Expr:
    """pandas's ``qcut(x.rank(method="first"), 5, labels=[1..5])``, in exact integer arithmetic.

    "ordinal" ranks ties in the order the rows come (pandas's "first"); the caller sorts by customer,
    the order of pandas's groupby. Over the ranks 1..n qcut's right-closed bins put rank k in quintile
    q when (q-1)(n-1)/5 < k-1 <= q(n-1)/5 (rank 1 in quintile 1), so q = ceil(5(k-1)/(n-1)), at least 1.
    pandas rounds its quantiles up (tile.qcut), so its float edges never fall below these exact ones.
    """
    rank = pl.col(column).rank("ordinal", descending=descending).cast(pl.Int64)
    n = pl.len().cast(pl.Int64)
    return ((5 * (rank - 1) + n - 2) // (n - 1)).clip(lower_bound=1).cast(pl.Int64)


def rfm(orders: pl.LazyFrame, as_of_date: dt.date) -> pl.LazyFrame:
    """One row per customer, sorted by customer; collect it with ``engine="in-memory"`` (see main)."""
    key = pl.col("r").cast(pl.String) + ((pl.col("f") + pl.col("m")) // 2).cast(pl.String)
    segment = pl.coalesce(
        *(pl.when(key.str.contains(f"^{pattern}$")).then(pl.lit(name)) for name, pattern in SEGMENTS.items()),
        pl.lit("Other"),
    )
    return (
        orders.group_by("customer")
        .agg(
            last_day=pl.col("day").max(),
            frequency=pl.col("day").n_unique().cast(pl.Int64),
            monetary=pl.col("amount").sum().clip(lower_bound=0),
        )
        .sort("customer")  # pandas's groupby order, which its rank(method="first") breaks ties by
        .select(
            "customer",
            recency_days=(pl.lit(as_of_date) - pl.col("last_day")).dt.total_days(),
            frequency="frequency",
            monetary="monetary",
        )
        .with_columns(r=_quintile("recency_days", descending=True), f=_quintile("frequency"),
                      m=_quintile("monetary"))
        .with_columns(segment=segment)
    )


def main() -> None:
    args = scenario_args(__doc__)
    orders = load_orders(args.landing, args.as_of)
    # The in-memory engine: its group-by sum is Kahan-compensated in row order, like pandas's, so
    # monetary is the same to the last bit (the streaming engine's is not: a few per cent of the
    # customers then differ by an ulp, and an ulp can reorder a tie in the m ranks).
    order_rows, table = pl.collect_all([orders.select(pl.len()), rfm(orders, args.as_of)], engine="in-memory")
    # numpy's log1p on the same float64 matrix as pandas's, so KMeans sees identical input
    x = StandardScaler().fit_transform(np.log1p(table.select("recency_days", "frequency", "monetary").to_numpy()))
    table = table.with_columns(cluster=KMeans(n_clusters=5, n_init="auto", random_state=0).fit_predict(x))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(args.out)
    print(json.dumps({"order_rows": order_rows.item(), "customers": table.height}))


if __name__ == "__main__":
    main()
