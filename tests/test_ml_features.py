"""Customer features and the CLV summary: hand-computed values, as_of_date cut-off, edge cases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from ml.features import (
    BASE_FEATURE_COLUMNS,
    FEATURE_COLUMNS,
    clv_summary,
    customer_features,
    prepare_transactions,
)
from ml.synthetic import make_customer_base

AS_OF = dt.date(2024, 1, 31)


def _tx(rows: list[tuple[str, str, float, float, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["customer_id", "order_date", "net_amount", "discount_amount", "channel", "category"]
    ).assign(order_date=lambda d: pd.to_datetime(d["order_date"]))


@pytest.fixture()
def tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    transactions = _tx(
        [
            # A: two purchases on Jan 1 (one day), one on Jan 21, a refund on Jan 25
            ("A", "2024-01-01", 100.0, 0.0, "online", "shoes"),
            ("A", "2024-01-01", 50.0, 50.0, "store", "apparel"),
            ("A", "2024-01-21", 30.0, 0.0, "app", "shoes"),
            ("A", "2024-01-25", -20.0, 0.0, "online", "shoes"),
            # B: one old store purchase
            ("B", "2023-09-01", 40.0, 10.0, "store", "home"),
            # C: only a refund, D: only a purchase after as_of_date -> neither is a buyer
            ("C", "2024-01-05", -10.0, 0.0, "online", "home"),
            ("D", "2024-03-01", 70.0, 0.0, "online", "home"),
        ]
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "email_open_rate": [0.5, np.nan, 0.1, 0.2, 0.3],
            "web_sessions_90d": [4.0, 1.0, np.nan, 0.0, 2.0],
        }
    )
    return transactions, customers


def test_features_match_hand_computed_values(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    transactions, customers = tiny
    f = customer_features(transactions, AS_OF, customers)
    assert list(f.index) == ["A", "B"]
    assert list(f.columns) == [*BASE_FEATURE_COLUMNS, "email_open_rate", "web_sessions_90d"]
    a = f.loc["A"]
    assert a["recency_days"] == 10  # Jan 21 -> Jan 31
    assert a["frequency"] == 2  # Jan 1 counts once
    assert a["monetary"] == pytest.approx(160.0)  # 100 + 50 + 30 - 20 refund
    assert a["tenure_days"] == 30
    assert a["avg_order_value"] == pytest.approx(60.0)  # 180 gross / 3 purchase events
    assert a["online_share"] == pytest.approx(1 / 3)
    assert a["store_share"] == pytest.approx(1 / 3)
    assert a["app_share"] == pytest.approx(1 / 3)
    assert a["discount_share"] == pytest.approx(50 / 230)
    assert a["category_breadth"] == 2
    assert a["orders_90d"] == 3
    assert a["spend_90d"] == pytest.approx(160.0)
    assert a["email_open_rate"] == 0.5
    b = f.loc["B"]
    assert b["recency_days"] == 152
    assert b["tenure_days"] == 152
    assert (b["frequency"], b["monetary"], b["avg_order_value"]) == (1, 40.0, 40.0)
    assert b["store_share"] == 1.0
    assert b["discount_share"] == pytest.approx(0.2)
    assert (b["orders_90d"], b["spend_90d"]) == (0, 0.0)
    assert b["email_open_rate"] == 0.0  # NaN -> 0


def test_clv_summary_matches_hand_computed_values(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    transactions, _ = tiny
    s = clv_summary(transactions, AS_OF).set_index("customer_id")
    assert list(s.index) == ["A", "B"]
    assert s.loc["A"].to_dict() == pytest.approx(
        {"frequency": 1.0, "recency": 20 / 7, "T": 30 / 7, "monetary_value": 30.0}
    )
    assert s.loc["B"].to_dict() == pytest.approx(
        {"frequency": 0.0, "recency": 0.0, "T": 152 / 7, "monetary_value": 0.0}
    )
    days = clv_summary(transactions, AS_OF, time_unit="D").set_index("customer_id")
    assert days.loc["A", "T"] == 30.0
    with pytest.raises(ValueError, match="time_unit"):
        clv_summary(transactions, AS_OF, time_unit="Q")


def test_future_rows_change_nothing() -> None:
    data = make_customer_base(300, dt.date(2024, 6, 30), seed=3)
    as_of_date = dt.date(2024, 6, 30)
    past = data.transactions[data.transactions["order_date"] <= pd.Timestamp(as_of_date)]
    assert len(past) < len(data.transactions)  # the generator does produce future rows
    future = pd.DataFrame(
        {
            "customer_id": ["C0000000", "BRAND-NEW"],
            "order_date": pd.to_datetime(["2024-07-01", "2030-01-01"]),
            "net_amount": [1e6, 5.0],
            "discount_amount": [0.0, 0.0],
            "channel": ["app", "store"],
            "category": ["toys", "toys"],
        }
    )
    with_future = pd.concat([data.transactions, future], ignore_index=True)
    pdt.assert_frame_equal(
        customer_features(past, as_of_date, data.customers), customer_features(with_future, as_of_date, data.customers)
    )
    pdt.assert_frame_equal(clv_summary(past, as_of_date), clv_summary(with_future, as_of_date))


def test_row_order_and_date_types_do_not_matter(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    transactions, customers = tiny
    expected = customer_features(transactions, AS_OF, customers)
    shuffled = transactions.sample(frac=1.0, random_state=1)
    as_dates = shuffled.assign(order_date=shuffled["order_date"].dt.date)
    with_times_tz = shuffled.assign(
        order_date=(shuffled["order_date"] + pd.Timedelta(hours=13)).dt.tz_localize("Europe/Berlin")
    )
    for variant in (shuffled, as_dates, with_times_tz):
        pdt.assert_frame_equal(customer_features(variant, AS_OF, customers), expected)
    # as_of_date may be a date, a Timestamp or an ISO string
    pdt.assert_frame_equal(customer_features(transactions, "2024-01-31", customers), expected)
    # A frame prepared once (as scoring does) and re-cut at an earlier date gives the same answer.
    prepared = prepare_transactions(shuffled, dt.date(2024, 12, 31))
    pdt.assert_frame_equal(customer_features(prepared, AS_OF, customers), expected)
    pdt.assert_frame_equal(clv_summary(prepared, AS_OF), clv_summary(transactions, AS_OF))


def test_minimal_columns_and_no_buyers() -> None:
    minimal = pd.DataFrame({"customer_id": [1, 1], "order_date": ["2024-01-02", "2024-01-09"], "net_amount": [10, 20]})
    f = customer_features(minimal, AS_OF)
    assert list(f.index) == ["1"]  # ids are strings
    assert f.loc["1", "discount_share"] == 0.0
    assert f.loc["1", ["online_share", "store_share", "app_share"]].sum() == 0.0  # unknown channel
    empty = customer_features(minimal, dt.date(2023, 1, 1))
    assert empty.empty
    assert set(FEATURE_COLUMNS) <= set(empty.columns)
    assert clv_summary(minimal, dt.date(2023, 1, 1)).empty
    with pytest.raises(ValueError, match="net_amount"):
        customer_features(minimal.drop(columns="net_amount"), AS_OF)


def test_synthetic_features_are_finite_and_bounded() -> None:
    data = make_customer_base(300, dt.date(2024, 6, 30), seed=4)
    f = customer_features(data.transactions, dt.date(2024, 6, 30), data.customers)
    assert np.isfinite(f.to_numpy()).all()
    assert (f["frequency"] >= 1).all()
    assert (f["recency_days"] <= f["tenure_days"]).all()
    shares = f[["online_share", "store_share", "app_share"]].sum(axis=1)
    assert np.allclose(shares, 1.0)
    assert f["discount_share"].between(0, 1).all()
