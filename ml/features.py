"""Per-customer behavioural features computed from purchase events as of a given date.

Conventions (shared by every model in ``ml``):

* Only rows with ``order_date <= as_of_date`` are used. ``as_of_date`` is the DAG's as-of date, never
  the wall clock, so a re-run of a past date reproduces its features exactly, and rows that
  arrive late with a future date cannot leak into the past.
* A *purchase event* is a row with ``net_amount >= 0`` (a fully discounted or free order is still
  a visit that bought something; CDNOW has such rows). Rows with ``net_amount < 0`` are refunds:
  they reduce ``monetary``/``spend_90d`` but never count as a purchase, so a customer whose
  only rows are refunds is not a buyer.
* A *purchase day* is a distinct calendar day with at least one purchase event. Several
  purchases on one day (e.g. an online order and a store receipt, or a split basket) count as
  one transaction for ``frequency`` and for the BG/NBD summary, as in Fader, Hardie & Lee (2005)
  and the ``lifetimes`` convention. Counting them separately would inflate repeat rates for
  omnichannel customers.
* Output is sorted by ``customer_id`` so results do not depend on the row order of the input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

CHANNELS: tuple[str, ...] = ("online", "store", "app")
"""Known channels; a share column is produced for each (unknown channels only dilute the shares)."""

ENGAGEMENT_COLUMNS: tuple[str, ...] = ("email_open_rate", "email_click_rate", "web_sessions_90d")
"""Optional columns of ``customers`` passed through to the features (NaN → 0: no signal = no engagement)."""

WINDOW_DAYS = 90
"""Length of the trailing window for ``orders_90d`` and ``spend_90d``."""

BASE_FEATURE_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_order_value",
    "online_share",
    "store_share",
    "app_share",
    "discount_share",
    "category_breadth",
    "orders_90d",
    "spend_90d",
)
"""Columns always returned by :func:`customer_features` (engagement columns are appended when present)."""

FEATURE_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "online_share",
    "store_share",
    "app_share",
    "discount_share",
    "category_breadth",
)
"""Features used for clustering.

Deliberately few and interpretable: recency/frequency/monetary (RFM), basket size, channel mix,
discount affinity and basket breadth. ``tenure_days``, ``orders_90d`` and ``spend_90d`` are left
out because they are largely redundant with recency/frequency/monetary, and redundant columns
weigh the same behaviour twice in k-means' Euclidean distance. Engagement columns are left out
because they are often missing for store-only customers, which would split clusters on data
availability rather than behaviour.
"""

SNAPSHOT_FEATURES: dict[str, float] = {
    "web_sessions_30d": 0.0,
    "web_sessions_90d": 0.0,
    "web_recency_days": 365.0,
    "emails_sent_90d": 0.0,
    "emails_opened_90d": 0.0,
    "emails_clicked_90d": 0.0,
}
"""Point-in-time engagement features (name → value for a customer absent from the snapshot, i.e.
no web session or e-mail in the windows: unengaged, last visit at the cap).

They come from ``fct_customer_engagement_snapshots`` as of a given date, counting only events
dated on or before it that had landed by then. That is what lets the churn model use engagement
at its training cutoff without leakage (today's engagement snapshot in ``customers`` is not)."""

_REQUIRED_TX = ("customer_id", "order_date", "net_amount")
_PREPARED_FLAG = "ml_prepared_transactions"
#: Integer number of the customer in a prepared frame (sorted like customer_id); internal to ml/.
CUSTOMER_CODE = "_customer_code"


def _as_timestamp(as_of_date: dt.date | pd.Timestamp | str) -> pd.Timestamp:
    """Normalise ``as_of_date`` to a midnight Timestamp (the day is what matters, not the time)."""
    return pd.Timestamp(as_of_date).normalize()


def prepare_transactions(transactions: pd.DataFrame, as_of_date: dt.date | pd.Timestamp | str) -> pd.DataFrame:
    """Return a clean copy of ``transactions`` restricted to ``order_date <= as_of_date``.

    Dates are normalised to days (times and time zones dropped), ``customer_id`` becomes ``str``,
    optional columns get neutral defaults (no discount, unknown channel/category) so callers
    can pass a minimal frame, and rows are sorted so downstream results are order-independent.
    """
    missing = [c for c in _REQUIRED_TX if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions is missing required columns: {missing}")
    cutoff = _as_timestamp(as_of_date)
    if transactions.attrs.get(_PREPARED_FLAG):
        # Already clean and sorted (scoring prepares once, then every model re-cuts it): a
        # date filter keeps the order, and skips re-sorting ten million rows per model.
        in_range = transactions["order_date"] <= cutoff
        if in_range.all():  # nothing to cut: no copy of millions of rows (frames are not mutated here)
            return transactions
        kept = transactions[in_range].reset_index(drop=True)
        kept.attrs[_PREPARED_FLAG] = True
        return kept
    dates = pd.to_datetime(transactions["order_date"])
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    out = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].astype(str),
            "order_date": dates.dt.normalize().astype("datetime64[ns]"),
            "net_amount": pd.to_numeric(transactions["net_amount"]).astype(float),
            "discount_amount": (
                pd.to_numeric(transactions["discount_amount"]).astype(float).fillna(0.0).clip(lower=0.0)
                if "discount_amount" in transactions
                else 0.0
            ),
            "channel": (transactions["channel"].astype(str).str.lower() if "channel" in transactions else "unknown"),
            "category": transactions["category"].astype(str) if "category" in transactions else "unknown",
        },
        index=transactions.index,
    )
    out = out[(out["order_date"] <= cutoff) & out["net_amount"].notna() & out["order_date"].notna()]
    # every column is a sort key: rows that still tie are identical, so the result (and the model's
    # training-data hash) does not depend on the order the warehouse returned them in
    out = out.sort_values(
        ["customer_id", "order_date", "net_amount", "channel", "category", "discount_amount"], kind="stable"
    )
    out = out.reset_index(drop=True)
    # rows are sorted by customer: number the customers in that order once, so the per-customer
    # group-bys below run on integers instead of factorizing millions of strings each time
    ids = out["customer_id"]
    out[CUSTOMER_CODE] = (ids.ne(ids.shift())).cumsum().astype("int64") - 1
    out.attrs[_PREPARED_FLAG] = True
    return out


def is_purchase(net_amount: pd.Series) -> pd.Series:
    """Boolean mask of purchase events (``net_amount >= 0``); negative rows are refunds."""
    return pd.to_numeric(net_amount) >= 0


def _engagement(customers: pd.DataFrame | None, index: pd.Index) -> pd.DataFrame:
    """Engagement columns of ``customers`` aligned to ``index`` (absent customer or NaN → 0)."""
    if customers is None:
        return pd.DataFrame(index=index)
    cols = [c for c in ENGAGEMENT_COLUMNS if c in customers.columns]
    if not cols:
        return pd.DataFrame(index=index)
    eng = customers[["customer_id", *cols]].copy()
    eng["customer_id"] = eng["customer_id"].astype(str)
    eng = eng.drop_duplicates("customer_id", keep="last").set_index("customer_id")
    eng = eng.apply(pd.to_numeric, errors="coerce").astype(float)
    return eng.reindex(index).fillna(0.0)


def customer_features(
    transactions: pd.DataFrame,
    as_of_date: dt.date | pd.Timestamp | str,
    customers: pd.DataFrame | None = None,
    *,
    window_days: int = WINDOW_DAYS,
) -> pd.DataFrame:
    """Behavioural features per customer with at least one purchase on or before ``as_of_date``.

    Returns a float DataFrame indexed by ``customer_id`` (sorted) with the
    :data:`BASE_FEATURE_COLUMNS` plus any :data:`ENGAGEMENT_COLUMNS` present in ``customers``:

    * ``recency_days``: days from the last purchase day to ``as_of_date`` (0 = bought today);
    * ``frequency``: distinct purchase days;
    * ``monetary``: sum of ``net_amount`` including refunds, floored at 0;
    * ``tenure_days``: days from the first purchase day to ``as_of_date``;
    * ``avg_order_value``: gross purchase amount / number of purchase events (rows), i.e. the
      basket size, not the daily spend;
    * ``<channel>_share``: share of purchase events made in that channel;
    * ``discount_share``: discount / (net + discount) over purchase events, the fraction of list
      price the customer did not pay;
    * ``category_breadth``: distinct categories bought;
    * ``orders_90d`` / ``spend_90d``: purchase events and net spend (floored at 0) in the window
      ``(as_of_date - window_days, as_of_date]``.
    """
    tx = prepare_transactions(transactions, as_of_date)
    cutoff = _as_timestamp(as_of_date)
    purchases = tx[is_purchase(tx["net_amount"])]
    if purchases.empty:
        cols = list(BASE_FEATURE_COLUMNS) + list(_engagement(customers, pd.Index([])).columns)
        return pd.DataFrame(columns=cols, index=pd.Index([], name="customer_id", dtype=str), dtype=float)

    key = CUSTOMER_CODE
    g = purchases.groupby(key, sort=True)
    first = g["order_date"].min()
    last = g["order_date"].max()
    codes = first.index
    n_events = g.size().astype(float)
    gross = g["net_amount"].sum()
    discount = g["discount_amount"].sum()
    days = purchases[[key, "order_date"]].drop_duplicates().groupby(key).size()
    monetary = tx.groupby(key)["net_amount"].sum().reindex(codes).clip(lower=0.0)

    channel_counts = purchases.groupby([key, "channel"]).size().unstack(fill_value=0).reindex(codes, fill_value=0)
    window_start = cutoff - pd.Timedelta(days=window_days)
    recent_all = tx[tx["order_date"] > window_start]
    recent_purchases = recent_all[is_purchase(recent_all["net_amount"])]

    feats = pd.DataFrame(
        {
            "recency_days": (cutoff - last).dt.days.astype(float),
            "frequency": days.reindex(codes).astype(float),
            "monetary": monetary.astype(float),
            "tenure_days": (cutoff - first).dt.days.astype(float),
            "avg_order_value": gross / n_events,
        },
        index=codes,
    )
    for channel in CHANNELS:
        counts = channel_counts[channel] if channel in channel_counts else pd.Series(0, index=codes)
        feats[f"{channel}_share"] = counts.astype(float) / n_events
    denominator = gross + discount
    feats["discount_share"] = np.where(denominator > 0, discount / denominator.where(denominator > 0, 1), 0.0)
    feats["category_breadth"] = g["category"].nunique().astype(float)
    feats["orders_90d"] = recent_purchases.groupby(key).size().reindex(codes, fill_value=0).astype(float)
    spend_90d = recent_all.groupby(key)["net_amount"].sum().reindex(codes, fill_value=0.0)
    feats["spend_90d"] = spend_90d.clip(lower=0.0).astype(float)
    index = pd.Index(g["customer_id"].first().to_numpy(), name="customer_id")
    feats.index = index

    feats = feats.join(_engagement(customers, index))
    feats.index = feats.index.astype(str)
    feats.index.name = "customer_id"
    return feats.astype(float)


_TIME_UNIT_DAYS = {"D": 1.0, "W": 7.0}


def clv_summary(transactions: pd.DataFrame, as_of_date: dt.date | pd.Timestamp | str,
                time_unit: str = "W") -> pd.DataFrame:
    """Frequency / recency / T / monetary_value per buyer, the input of BG/NBD and Gamma-Gamma.

    Same-day purchases are summed into one transaction (see module docstring). With
    ``time_unit='W'`` durations are days / 7. Columns:

    * ``frequency``: repeat purchase days = distinct purchase days − 1;
    * ``recency``: first → last purchase day;
    * ``T``: first purchase day → ``as_of_date``;
    * ``monetary_value``: mean spend per *repeat* purchase day (the first day is excluded, as
      Gamma-Gamma is fitted on repeat transactions only), 0 when ``frequency`` is 0.

    Refunds (``net_amount < 0``) are ignored here: Gamma-Gamma models the value of transactions,
    and netting a refund against a later day would fabricate a small "transaction".
    """
    if time_unit not in _TIME_UNIT_DAYS:
        raise ValueError(f"time_unit must be one of {sorted(_TIME_UNIT_DAYS)}, got {time_unit!r}")
    unit = _TIME_UNIT_DAYS[time_unit]
    cutoff = _as_timestamp(as_of_date)
    tx = prepare_transactions(transactions, as_of_date)
    purchases = tx[is_purchase(tx["net_amount"])]
    columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    if purchases.empty:
        return pd.DataFrame(columns=columns).astype({c: float for c in columns[1:]})

    daily = purchases.groupby([CUSTOMER_CODE, "order_date"], sort=True)["net_amount"].sum().reset_index()
    g = daily.groupby(CUSTOMER_CODE, sort=True)
    first = g["order_date"].min()
    last = g["order_date"].max()
    n_days = g.size()
    total = g["net_amount"].sum()
    first_day_spend = g["net_amount"].first()  # daily is sorted by date within customer
    ids = purchases.groupby(CUSTOMER_CODE, sort=True)["customer_id"].first()
    frequency = (n_days - 1).astype(float)
    repeat_spend = total - first_day_spend
    monetary_value = np.where(frequency > 0, repeat_spend / frequency.where(frequency > 0, 1), 0.0)
    out = pd.DataFrame(
        {
            "customer_id": ids.to_numpy().astype(str),
            "frequency": frequency.to_numpy(),
            "recency": (last - first).dt.days.to_numpy(dtype=float) / unit,
            "T": (cutoff - first).dt.days.to_numpy(dtype=float) / unit,
            "monetary_value": np.asarray(monetary_value, dtype=float),
        }
    )
    return out.reset_index(drop=True)


def select_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return ``frame[columns]`` as float, raising a clear error naming any missing column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"missing feature columns: {missing}")
    return frame.loc[:, list(columns)].astype(float)


def engagement_at(
    snapshots: pd.DataFrame | None,
    snapshot_date: dt.date | pd.Timestamp | str,
    customer_ids: Sequence[str],
    snapshot_exists: bool = False,
) -> pd.DataFrame | None:
    """The engagement snapshot of ``snapshot_date`` for ``customer_ids`` (absent customers get the
    :data:`SNAPSHOT_FEATURES` defaults), or None when ``snapshots`` has no rows for that date.

    ``snapshots`` has ``customer_id``, ``snapshot_date`` and the :data:`SNAPSHOT_FEATURES` columns.
    ``snapshot_exists``: the snapshot of that date exists though ``snapshots`` may hold none of its
    rows (a chunk of unengaged customers): every customer is then absent, not the snapshot.
    """
    day = _as_timestamp(snapshot_date)
    if snapshots is not None and len(snapshots):
        rows = snapshots[pd.to_datetime(snapshots["snapshot_date"]).dt.normalize() == day]
    else:
        rows = pd.DataFrame(columns=["customer_id", *SNAPSHOT_FEATURES])
    if not len(rows) and not snapshot_exists:
        return None
    values = rows.set_index(rows["customer_id"].astype(str))[list(SNAPSHOT_FEATURES)].astype(float)
    index = pd.Index(pd.Series(customer_ids, dtype=str).to_numpy(), name="customer_id")
    return values.reindex(index).fillna(SNAPSHOT_FEATURES)
