"""A seeded synthetic customer base with known behaviour types and a known churn process.

Used by the ``ml`` unit tests and the scale benchmarks: the truth (planted type, dropout date)
is returned alongside the data, so tests can check that clustering recovers the types and that
churn scores rank true churners first. Fully vectorised, so a million customers take seconds.

Generative story per customer (a buy-till-you-die process, like BG/NBD/Pareto-NBD):

* a planted type decides the purchase rate, basket size, channel mix, discount affinity,
  category breadth and mean lifetime;
* the first purchase happens on a uniform day in the ``history_days`` before ``as_of_date``;
* the customer stays alive for an exponential lifetime, buying as a Poisson process meanwhile;
* purchases are generated up to ``as_of_date + future_days`` so callers can verify that rows after
  ``as_of_date`` are ignored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BehaviourType:
    """Parameters of one planted customer type."""

    name: str
    weight: float
    purchases_per_year: float
    basket_eur: float
    channel_probs: tuple[float, float, float]  # online, store, app
    discount_rate: float
    categories: int
    mean_lifetime_days: float
    one_timer: bool = False


TYPES: tuple[BehaviourType, ...] = (
    BehaviourType("frequent omnichannel high spenders", 0.3, 30.0, 120.0, (0.4, 0.35, 0.25), 0.03, 6, 900.0),
    BehaviourType("discount-driven online one-timers", 0.4, 0.0, 30.0, (0.95, 0.0, 0.05), 0.35, 1, 1.0, True),
    BehaviourType("store loyalists", 0.3, 10.0, 55.0, (0.03, 0.95, 0.02), 0.02, 2, 600.0),
)

CATEGORIES: tuple[str, ...] = ("apparel", "shoes", "beauty", "home", "electronics", "sports", "toys", "food")


@dataclass(frozen=True)
class SyntheticData:
    """Transactions, customers (incl. prospects) and the planted truth per customer."""

    transactions: pd.DataFrame
    customers: pd.DataFrame
    truth: pd.DataFrame  # customer_id, type_id, type_name, first_date, dropout_date


def make_customer_base(
    n_customers: int = 500,
    as_of_date: dt.date = dt.date(2024, 6, 30),
    *,
    seed: int = 0,
    history_days: int = 730,
    future_days: int = 60,
    prospect_share: float = 0.1,
    types: tuple[BehaviourType, ...] = TYPES,
) -> SyntheticData:
    """Generate ``n_customers`` customers (a ``prospect_share`` of them without purchases)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:07d}" for i in range(n_customers)])
    is_prospect = rng.random(n_customers) < prospect_share
    weights = np.array([t.weight for t in types])
    type_id = rng.choice(len(types), size=n_customers, p=weights / weights.sum())
    as_of_ts = pd.Timestamp(as_of_date)
    end_offset = history_days + future_days  # day index of as_of_date + future_days, day 0 = start

    buyers = np.flatnonzero(~is_prospect)
    tid = type_id[buyers]
    first_day = rng.integers(0, history_days, size=buyers.size)
    rate = np.array([t.purchases_per_year for t in types])[tid] / 365.0
    rate = rate * rng.lognormal(0.0, 0.35, size=buyers.size)
    lifetime = rng.exponential(np.array([t.mean_lifetime_days for t in types])[tid])
    death_day = first_day + lifetime
    active_end = np.minimum(death_day, end_offset)
    extra = rng.poisson(rate * np.maximum(active_end - first_day, 0.0))
    one_timer = np.array([t.one_timer for t in types])[tid]
    extra = np.where(one_timer, (rng.random(buyers.size) < 0.08).astype(int), extra)
    extra_window = np.where(one_timer, np.minimum(120.0, end_offset - first_day), active_end - first_day)

    counts = 1 + extra
    owner = np.repeat(np.arange(buyers.size), counts)
    is_first = np.zeros(owner.size, dtype=bool)
    is_first[np.concatenate(([0], np.cumsum(counts)[:-1]))] = True
    offsets = rng.random(owner.size) * extra_window[owner]
    day = np.where(is_first, first_day[owner], first_day[owner] + np.floor(offsets)).astype(int)
    day = np.minimum(day, end_offset)

    otid = tid[owner]
    basket = np.array([t.basket_eur for t in types])[otid] * rng.lognormal(0.0, 0.3, size=owner.size)
    disc_rate = np.clip(np.array([t.discount_rate for t in types])[otid] + rng.normal(0, 0.03, owner.size), 0, 0.8)
    channel_p = np.array([t.channel_probs for t in types])[otid]
    channel_idx = (rng.random(owner.size)[:, None] > np.cumsum(channel_p, axis=1)).sum(axis=1)
    channel_idx = np.minimum(channel_idx, 2)
    n_cat = np.array([t.categories for t in types])[otid]
    category_idx = (rng.integers(0, 10**6, size=owner.size) % n_cat + tid[owner] * 2) % len(CATEGORIES)

    start = as_of_ts - pd.Timedelta(days=history_days)
    transactions = pd.DataFrame(
        {
            "customer_id": ids[buyers][owner],
            "order_date": start + pd.to_timedelta(day, unit="D"),
            "net_amount": np.round(basket * (1 - disc_rate), 2),
            "discount_amount": np.round(basket * disc_rate, 2),
            "channel": np.array(["online", "store", "app"])[channel_idx],
            "category": np.array(CATEGORIES)[category_idx],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "email_open_rate": np.where(rng.random(n_customers) < 0.2, np.nan, rng.beta(2, 5, n_customers)),
            "email_click_rate": np.where(rng.random(n_customers) < 0.2, np.nan, rng.beta(1, 12, n_customers)),
            "web_sessions_90d": rng.poisson(3, n_customers).astype(float),
        }
    )
    first_dates = np.full(n_customers, np.datetime64("NaT"), dtype="datetime64[ns]")
    death_dates = np.full(n_customers, np.datetime64("NaT"), dtype="datetime64[ns]")
    first_dates[buyers] = (start + pd.to_timedelta(first_day, unit="D")).to_numpy()
    death_dates[buyers] = (start + pd.to_timedelta(np.minimum(death_day, 10**5), unit="D")).to_numpy()
    truth = pd.DataFrame(
        {
            "customer_id": ids,
            "type_id": np.where(is_prospect, -1, type_id),
            "type_name": np.where(is_prospect, "prospect", np.array([t.name for t in types])[type_id]),
            "first_date": first_dates,
            "dropout_date": death_dates,
        }
    )
    return SyntheticData(transactions=transactions, customers=customers, truth=truth)
