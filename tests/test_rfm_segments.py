"""RFM segments that mean something on real order logs: the real dbt scoring model on the CDNOW sample
and on the demo data, judged by what the customers did in the next quarter.

Definitions, written here and computed independently of the pipeline:
* a customer's purchases up to the as-of date D: CDNOW's rows by sample customer id; the demo data's
  web orders (not cancelled) and loyalty-card till sales, the person being the CRM id (an order's
  `customer_ref`, a card's CRM record) or, for a guest, the lower-cased e-mail address;
* recency_days = D - the last purchase day; purchase_days = distinct days with a purchase;
  net_revenue = the sum of amounts (refunds and returns deducted);
* repurchase = at least one purchase in the 91 days after D.

These inputs are written as `int_customer_purchase_stats` and dbt builds the real
`int_customer_rfm_scores` on them (seed map included), so the test checks the scoring rule and the
map, not a copy of them.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from custseg.config import PROJECT_DIR, load_settings
from custseg.dbt import run_dbt
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect

CDNOW = PROJECT_DIR / "tests" / "fixtures" / "cdnow" / "CDNOW_sample.txt"
NEXT_QUARTER = dt.timedelta(days=91)
MAX_CHAMPION_SHARE = 0.15
#: segments this small carry too much sampling noise to rank
MIN_SEGMENT = 30
BOTTOM = {"Lost", "Hibernating"}


@pytest.fixture(scope="module")
def rfm_settings(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("rfm")
    settings = load_settings({"CUSTSEG_DATA_DIR": str(tmp), "CUSTSEG_DUCKDB_PATH": str(tmp / "wh.duckdb")})
    prepare_warehouse(settings)
    run_dbt(settings, ["seed", "--select", "rfm_segment_map"])
    return settings


def cdnow_purchases() -> pd.DataFrame:
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["full_id", "customer", "day", "cds", "amount"])
    raw["day"] = pd.to_datetime(raw["day"].astype(str), format="%Y%m%d")
    return raw[["customer", "day", "amount"]].astype({"customer": str})


@pytest.fixture(scope="module")
def demo_purchases(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The demo data `make demo` generates (2,000 customers, one year), as purchases per person."""
    from custseg.demo.generate import generate

    landing = generate(tmp_path_factory.mktemp("demo"), customers=2_000, days=365, end_date=dt.date(2026, 10, 31),
                       seed=42).landing_dir
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    orders = con.execute("""
        select coalesce(nullif(trim(customer_ref), ''), lower(trim(customer_email))) as customer,
               cast(cast(order_ts as timestamptz) as date) as day,
               case when order_status = 'refunded' then 0 else cast(order_total as double) end as amount
        from read_csv($orders, all_varchar = true, union_by_name = true)
        where order_status <> 'cancelled' and coalesce(nullif(trim(customer_ref), ''), customer_email) is not null
          and try_cast(order_total as double) >= 0 and try_cast(order_ts as timestamptz) is not null
          and currency in ('EUR', 'GBP', 'USD')
    """, {"orders": str(landing / "shop" / "orders" / "*.csv")}).df()
    cards = con.execute("""
        select distinct upper(regexp_replace(loyalty_card, '[^A-Za-z0-9]', '', 'g')) as card, crm_customer_id
        from read_csv($crm, all_varchar = true, union_by_name = true) where loyalty_card is not null
    """, {"crm": str(landing / "crm" / "customers" / "*.csv")}).df()
    sales = con.execute("""
        select upper(regexp_replace(loyalty_card, '[^A-Za-z0-9]', '', 'g')) as card,
               cast(sold_at_local as date) as day, cast(amount as double) as amount
        from read_parquet($pos) where loyalty_card is not null
    """, {"pos": str(landing / "pos" / "sales" / "*.parquet")}).df()
    sales = sales.merge(cards, on="card").rename(columns={"crm_customer_id": "customer"})
    purchases = pd.concat([orders, sales[["customer", "day", "amount"]]], ignore_index=True)
    purchases["day"] = pd.to_datetime(purchases["day"])
    return purchases


def purchase_stats(purchases: pd.DataFrame, as_of_date: dt.date) -> pd.DataFrame:
    seen = purchases[purchases["day"] <= pd.Timestamp(as_of_date)]
    stats = seen.groupby("customer").agg(last=("day", "max"), purchase_days=("day", "nunique"),
                                         net_revenue=("amount", "sum"))
    stats["recency_days"] = (pd.Timestamp(as_of_date) - stats["last"]).dt.days
    return stats.drop(columns="last").reset_index(names="customer_id")


def scored_segments(settings, purchases: pd.DataFrame, as_of_date: dt.date) -> pd.DataFrame:
    """The real dbt model on these customers, with each customer's next-quarter repurchase."""
    import pyarrow as pa

    stats = purchase_stats(purchases, as_of_date)
    with connect(settings) as wh:
        wh.execute("drop table if exists analytics_build.int_customer_purchase_stats")
        wh.execute("create table analytics_build.int_customer_purchase_stats (customer_id text, "
                   "recency_days integer, purchase_days integer, net_revenue double precision)")
        wh.write_arrow("analytics_build", "int_customer_purchase_stats", pa.Table.from_pandas(
            stats[["customer_id", "recency_days", "purchase_days", "net_revenue"]], preserve_index=False))
    run_dbt(settings, ["run", "--select", "int_customer_rfm_scores"])
    with connect(settings) as wh:
        scores = wh.query_df("select customer_id, frequency, r_score, f_score, m_score, rfm_segment "
                             "from analytics_build.int_customer_rfm_scores")
    later = purchases[(purchases["day"] > pd.Timestamp(as_of_date))
                      & (purchases["day"] <= pd.Timestamp(as_of_date + NEXT_QUARTER))]
    scores["repurchased"] = scores["customer_id"].isin(set(later["customer"]))
    assert len(scores) == len(stats), "every buyer is scored"
    return scores


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, draws: int = 2_000) -> tuple[float, float]:
    means = rng.choice(values, size=(draws, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def segment_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per segment: customers, share of buyers, next-quarter repurchase rate and its bootstrap 95% interval."""
    rng = np.random.default_rng(0)
    rows = []
    for segment, group in scores.groupby("rfm_segment"):
        low, high = bootstrap_interval(group["repurchased"].to_numpy(dtype=float), rng)
        rows.append({"segment": segment, "customers": len(group), "share": len(group) / len(scores),
                     "repurchase_rate": group["repurchased"].mean(), "low": low, "high": high})
    return pd.DataFrame(rows).set_index("segment").sort_values("repurchase_rate", ascending=False)


def assert_segments_mean_something(table: pd.DataFrame, label: str) -> None:
    champions = table.loc["Champions"]
    assert champions.share <= MAX_CHAMPION_SHARE, f"{label}: Champions are {champions.share:.1%} of buyers\n{table}"
    ranked = table[table["customers"] >= MIN_SEGMENT]
    assert ranked.index[0] == "Champions", f"{label}: best next-quarter repurchase is not Champions\n{table}"
    assert ranked.index[-1] in BOTTOM, f"{label}: worst next-quarter repurchase is {ranked.index[-1]}\n{table}"
    # not only the point values: the intervals of the best and the worst segment do not overlap
    assert champions.low > ranked.iloc[-1].high, f"{label}: Champions and {ranked.index[-1]} overlap\n{table}"


@pytest.mark.parametrize("as_of_date", [dt.date(1997, 9, 30), dt.date(1997, 12, 31), dt.date(1998, 3, 31)])
def test_cdnow_segments_rank_next_quarter_repurchase(rfm_settings, as_of_date: dt.date) -> None:
    table = segment_table(scored_segments(rfm_settings, cdnow_purchases(), as_of_date))
    assert_segments_mean_something(table, f"CDNOW as of {as_of_date}")


@pytest.mark.parametrize("as_of_date", [dt.date(2026, 6, 30), dt.date(2026, 7, 31)])
def test_demo_segments_rank_next_quarter_repurchase(rfm_settings, demo_purchases, as_of_date: dt.date) -> None:
    table = segment_table(scored_segments(rfm_settings, demo_purchases, as_of_date))
    assert_segments_mean_something(table, f"demo data as of {as_of_date}")


def test_ties_never_let_fewer_purchase_days_score_higher(rfm_settings) -> None:
    scores = scored_segments(rfm_settings, cdnow_purchases(), dt.date(1998, 3, 31))
    by_days = scores.groupby("frequency")["f_score"].agg(["min", "max"]).sort_index()
    # every purchase-day count has one f_score, and it never falls as the count grows
    assert (by_days["min"] == by_days["max"]).all()
    assert by_days["min"].is_monotonic_increasing
    assert by_days["min"].iloc[0] == 1 and by_days["min"].iloc[-1] == 5, by_days
    # the scores rank customers: every frequency step is used, though half the buyers bought once
    assert sorted(scores["f_score"].unique()) == [1, 2, 3, 4, 5]
    assert (scores["frequency"] == 1).mean() > 0.4
