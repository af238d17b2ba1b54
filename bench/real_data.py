"""Figures on real data for issue 21: cluster names, CLV on a holdout, churn calibration.

Run: ``.venv/bin/python -m bench.real_data`` (about a minute: several BG/NBD fits).

* CDNOW sample (tests/fixtures/cdnow): clusters as of 1998-03-31 and a refit a month later;
  CLV validated with the paper's split (calibration 1997-01-01..1997-09-30, 39-week holdout to
  1998-06-30) and as ``fit_models`` records it as of 1998-03-31; churn as recorded by
  ``fit_models`` as of 1998-03-31 (latest labelled window 1997-12-31..1998-03-31, model and three
  baselines with bootstrap intervals) and measured on the quarter after it (1998-03-31..1998-06-29).
* Demo data (``custseg.demo.generate``, 2,000 customers, seed 42, to 2026-10-31): clusters as of
  2026-10-24 and 2026-10-31, CLV holdout and churn as recorded as of 2026-10-31 (purchases only:
  the engagement snapshot is the pipeline's, not built here).

The loaders are shared with the tests (tests/test_ml_clustering.py, test_ml_clv.py, test_ml_churn.py).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT / "tests" / "fixtures" / "cdnow" / "CDNOW_sample.txt"
DEMO_END = dt.date(2026, 10, 31)


def cdnow_transactions() -> pd.DataFrame:
    """CDNOW sample rows as ``ml`` transactions (sample customer id, day, dollars)."""
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["full_id", "customer_id", "date", "cds", "amount"],
                      dtype=str)
    return pd.DataFrame({"customer_id": raw["customer_id"],
                         "order_date": pd.to_datetime(raw["date"], format="%Y%m%d"),
                         "net_amount": raw["amount"].astype(float)})


def demo_transactions(out_dir: Path) -> pd.DataFrame:
    """The demo data's purchases per person, as ``ml`` transactions with channel, discount and category.

    The person is the CRM id (an order's ``customer_ref``, a loyalty card's CRM record) or, for a
    guest order, the lower-cased e-mail address (as in tests/test_rfm_segments.py). Cancelled
    orders are dropped and refunded ones count as 0; till sales without a loyalty card are anonymous."""
    import duckdb

    from custseg.demo.generate import generate

    # without the planted campaigns: these figures are the models' against the latent behaviour alone
    landing = generate(out_dir, customers=2_000, days=365, end_date=DEMO_END, seed=42, campaigns=False).landing_dir
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    orders = con.execute("""
        select coalesce(nullif(trim(customer_ref), ''), lower(trim(customer_email))) as customer_id,
               cast(cast(order_ts as timestamptz) as date) as order_date,
               case when order_status = 'refunded' then 0 else cast(order_total as double) end as net_amount,
               case when order_status = 'refunded' then 0 else coalesce(try_cast(discount_amount as double), 0) end
                   as discount_amount,
               case when device = 'app' then 'app' else 'online' end as channel, lower(category) as category
        from read_csv($orders, all_varchar = true, union_by_name = true)
        where order_status <> 'cancelled' and coalesce(nullif(trim(customer_ref), ''), customer_email) is not null
          and try_cast(order_total as double) >= 0 and try_cast(order_ts as timestamptz) is not null
    """, {"orders": str(landing / "shop" / "orders" / "*.csv")}).df()
    cards = con.execute("""
        select distinct upper(regexp_replace(loyalty_card, '[^A-Za-z0-9]', '', 'g')) as card, crm_customer_id
        from read_csv($crm, all_varchar = true, union_by_name = true) where loyalty_card is not null
    """, {"crm": str(landing / "crm" / "customers" / "*.csv")}).df()
    sales = con.execute("""
        select upper(regexp_replace(loyalty_card, '[^A-Za-z0-9]', '', 'g')) as card,
               cast(sold_at_local as date) as order_date, cast(amount as double) as net_amount,
               cast(discount_amount as double) as discount_amount, 'store' as channel, lower(category) as category
        from read_parquet($pos) where loyalty_card is not null
    """, {"pos": str(landing / "pos" / "sales" / "*.parquet")}).df()
    sales = sales.merge(cards, on="card").rename(columns={"crm_customer_id": "customer_id"}).drop(columns="card")
    tx = pd.concat([orders, sales[orders.columns]], ignore_index=True)
    tx["order_date"] = pd.to_datetime(tx["order_date"])
    return tx


def customers_of(tx: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": sorted(tx["customer_id"].astype(str).unique())})


def fit(tx: pd.DataFrame, as_of_date: dt.date, previous: Any = None) -> Any:
    from ml.bundle import fit_models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_models(tx, customers_of(tx), as_of_date, random_state=0,
                          previous_centroids=None if previous is None else previous.centroids,
                          previous_names=None if previous is None else previous.cluster_names)


def next_quarter_churn(tx: pd.DataFrame, bundle: Any, as_of_date: dt.date, days: int = 90) -> pd.DataFrame:
    """Each buyer's churn probability as of ``as_of_date``, and whether they bought in the ``days`` after it."""
    from ml.scoring import score_with

    labels = score_with(bundle, tx, customers_of(tx), as_of_date).labels
    labels = labels[labels["churn_probability"].notna()]
    end = pd.Timestamp(as_of_date + dt.timedelta(days))
    later = tx[(tx["order_date"] > pd.Timestamp(as_of_date)) & (tx["order_date"] <= end) & (tx["net_amount"] >= 0)]
    churned = ~labels["customer_id"].isin(set(later["customer_id"].astype(str)))
    return pd.DataFrame({"customer_id": labels["customer_id"].to_numpy(),
                         "p": labels["churn_probability"].to_numpy(), "churned": churned.astype(int).to_numpy()})


# -- printing ---------------------------------------------------------------------------------
def _ci(v: dict[str, Any], metric: str) -> str:
    lo, hi = v["intervals"][metric]
    return f"{v[metric]:.4f} [{lo:.4f}, {hi:.4f}]"


def print_clusters(title: str, first: Any, second: Any) -> None:
    print(f"\n## Clusters: {title}")
    print(f"{'id':>3} | {first.trained_as_of} (k={first.metrics['k']}, merged {first.metrics['clusters_merged']}) "
          f"| customers | {second.trained_as_of} (k={second.metrics['k']}) | customers")
    a, b = first.metrics["cluster_sizes_at_fit"], second.metrics["cluster_sizes_at_fit"]
    for cid in sorted({*map(int, a), *map(int, b)}):
        print(f"{cid:>3} | {first.cluster_names.get(cid, '-'):<45} | {a.get(str(cid), a.get(cid, 0)):>9} "
              f"| {second.cluster_names.get(cid, '-'):<45} | {b.get(str(cid), b.get(cid, 0)):>9}")
    same = all(first.cluster_names.get(c) == n for c, n in second.cluster_names.items())
    print(f"names distinct: {len(set(first.cluster_names.values())) == len(first.cluster_names)}; "
          f"refit keeps every id's name: {same}; smallest cluster allowed: {first.metrics['min_cluster_size']}")


def print_clv(title: str, h: dict[str, Any]) -> None:
    print(f"\n## CLV holdout: {title}")
    if h.get("status") != "validated":
        print(f"skipped: {h.get('reason')}")
        return
    print(f"calibration {h['calibration_start']}..{h['calibration_end']}, holdout to {h['holdout_end']} "
          f"({h['holdout_weeks']:.1f} weeks), {h['customers']:,} customers; "
          f"BG/NBD r={h['params']['r']:.3f} alpha={h['params']['alpha']:.3f} a={h['params']['a']:.3f} "
          f"b={h['params']['b']:.3f}")
    print(f"per customer: MAE {h['mae']:.3f}, RMSE {h['rmse']:.3f}, correlation {h['correlation']:.3f}")
    print(f"holdout repeat purchases: predicted {h['predicted_total']:.1f}, actual {h['actual_total']:.0f}, "
          f"error {h['aggregate_error_pct']:+.1f} %")
    c = h["cumulative"]
    print(f"cumulative repeat purchases, calibration + holdout (FHL 2005 tracking): predicted {c['predicted']:.1f}, "
          f"actual {c['actual']}, error {c['error_pct']:+.1f} %")
    r = h["revenue"]
    print(f"holdout revenue (BG/NBD x Gamma-Gamma): predicted {r['predicted']:,.0f}, actual {r['actual']:,.0f}, "
          f"error {r['error_pct']:+.1f} %")
    print("conditional expectation by calibration frequency: x | customers | mean predicted | mean actual")
    for row in h["conditional_expectation"]:
        print(f"  {row['frequency']:>3} | {row['customers']:>5} | {row['mean_predicted']:.3f} | "
              f"{row['mean_actual']:.3f}")


def print_churn(title: str, bundle: Any, quarter: pd.DataFrame | None) -> None:
    from ml.churn import evaluate_scores

    m = bundle.metrics["churn"]
    ev = bundle.metrics["churn_evaluation"]
    print(f"\n## Churn: {title}")
    print(f"calibration: {m['calibration']}")
    print(f"evaluation: {m['evaluation']} ({m['n_holdout']:,} customers, churn rate {m['base_rate']:.3f}; "
          f"bootstrap {ev['scorers']['model']['draws']} draws, 95 % intervals)")
    print(f"{'scorer':<26} | {'ROC AUC':<24} | {'PR AUC':<24} | {'Brier':<24} | ECE")
    for name, v in ev["scorers"].items():
        print(f"{name:<26} | {_ci(v, 'roc_auc'):<24} | {_ci(v, 'pr_auc'):<24} | {_ci(v, 'brier'):<24} | "
              f"{_ci(v, 'ece')}")
    if quarter is None:
        return
    out = evaluate_scores(quarter["churned"].to_numpy(), {"model": (quarter["p"].to_numpy(), quarter["p"].to_numpy())})
    v = out["model"]
    print(f"next quarter after {bundle.trained_as_of} ({len(quarter):,} customers, churn rate "
          f"{quarter['churned'].mean():.3f}, mean prediction {quarter['p'].mean():.3f}): ECE {_ci(v, 'ece')}, "
          f"ROC AUC {_ci(v, 'roc_auc')}, PR AUC {_ci(v, 'pr_auc')}, Brier {_ci(v, 'brier')}")
    print("reliability (10 bins): bin | customers | mean predicted | observed churn")
    for row in v["reliability"]:
        if row["customers"]:
            print(f"  {row['lower']:.1f}-{row['upper']:.1f} | {row['customers']:>5} | {row['mean_predicted']:.3f} | "
                  f"{row['observed_rate']:.3f}")


def main() -> None:
    from ml.clv import holdout_validation

    np.set_printoptions(precision=4)
    print("# Real-data figures (bench/real_data.py)")
    tx = cdnow_transactions()
    march = fit(tx, dt.date(1998, 3, 31))
    april = fit(tx, dt.date(1998, 4, 30), previous=march)
    print_clusters("CDNOW sample, as of 1998-03-31 and refitted as of 1998-04-30", march, april)
    print_clv("CDNOW, the paper's split (ml.clv.holdout_validation as of 1998-06-30, 39 weeks)",
              holdout_validation(tx, dt.date(1998, 6, 30)))
    print_clv("CDNOW, as recorded by fit_models as of 1998-03-31", march.metrics["clv_holdout"])
    print_churn("CDNOW, fit_models as of 1998-03-31", march, next_quarter_churn(tx, march, dt.date(1998, 3, 31)))

    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_transactions(Path(tmp))
    week = fit(demo, DEMO_END - dt.timedelta(days=7))
    last = fit(demo, DEMO_END, previous=week)
    print_clusters("demo data, as of 2026-10-24 and refitted as of 2026-10-31", week, last)
    print_clv("demo data, as recorded by fit_models as of 2026-10-31", last.metrics["clv_holdout"])
    # the demo data ends on 2026-10-31: there is no next quarter to score, only the recorded window
    print_churn("demo data (purchases only, no engagement snapshot), as recorded by fit_models as of 2026-10-31",
                last, None)


if __name__ == "__main__":
    main()
