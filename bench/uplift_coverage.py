"""Coverage of campaign_uplift's 95% intervals over many generated datasets (issue 24).

Run: ``.venv/bin/python -m bench.uplift_coverage --seeds 50`` (``make bench-uplift``; about 40 s a seed).

For each seed the demo generator writes a fresh dataset with its three planted campaigns (custseg/demo/generate.py:
a known response probability each, one of them zero) and the pipeline's real steps run on DuckDB, as the nightly
DAG runs them (prepare, ingest, identity resolution, dbt, scoring, dbt), for the campaigns' first night and the
night their two-day conversion window has passed. The published campaign_uplift of that night is compared with
the truth the generator knows (custseg.demo.truth.campaign_uplift_truth: the average effect over the measured
audience, from every customer's potential response, realised or not). A 95% interval should hold the truth in
about 95% of the datasets, and the campaign without an effect should be flagged in about 5% of them.

Results: ``bench/results/<date>-uplift-coverage.json`` (every seed) and ``.md`` (the table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
END = dt.date(2026, 10, 31)
CUSTOMERS = 1_500
DAYS = 120
Z = 1.959963984540054


def _one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
    # imported here: the pipeline's modules pull in dbt, DuckDB and scikit-learn
    from custseg.config import load_settings
    from custseg.dbt import dbt_run_env, run_dbt
    from custseg.demo.generate import generate
    from custseg.demo.truth import campaign_uplift_truth
    from custseg.steps.identity import resolve_identities
    from custseg.steps.ingest import ingest, source_names
    from custseg.steps.prepare import prepare_warehouse
    from custseg.steps.score import score
    from custseg.warehouse import connect

    summary = generate(work / "data", customers=CUSTOMERS, days=DAYS, end_date=END, seed=seed)
    settings = load_settings({
        "CUSTSEG_DATA_DIR": str(work),
        "CUSTSEG_LANDING_DIR": str(summary.landing_dir),
        "CUSTSEG_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "CUSTSEG_DOCS_DIR": str(work / "docs"),
        "CUSTSEG_CAMPAIGNS_FILE": str(summary.out_dir / "campaigns.yml"),
    })
    first, measured = END - dt.timedelta(days=2), END
    prepare_warehouse(settings)
    run_dbt(settings, ["seed"])
    for source in source_names(settings):
        ingest(settings, source, measured, f"seed{seed}")
    # the night that assigns, then the night the window has passed (a backfill in date order: what the
    # nightly runs give, tests/test_history.py)
    for night in (first, measured):
        resolve_identities(settings, night)
        run_dbt(settings, ["run", "--exclude", "tag:scored"], dbt_run_env(night))
        score(settings, night, f"seed{seed}-{night}")
        run_dbt(settings, ["run", "--select", "tag:scored"], dbt_run_env(night))
    with connect(settings) as wh:
        audience = wh.query_df("select campaign_id, customer_id, is_control, assigned_on "
                               "from analytics_build.campaign_audience")
        purchases = wh.query_df("select customer_id, purchase_id, purchase_date, net_amount "
                                "from analytics_build.fct_purchases")
        uplift = wh.query_df("select * from analytics_build.campaign_uplift where segment_type = 'campaign'")
    for frame, column in ((audience, "assigned_on"), (purchases, "purchase_date")):
        frame[column] = pd.to_datetime(frame[column]).dt.date
    truth = campaign_uplift_truth(summary.ground_truth_dir, audience, purchases, measured).set_index("campaign_id")
    rows = []
    for row in uplift.itertuples():
        true_conversion = float(truth.loc[row.campaign_id, "true_conversion_uplift"])
        true_revenue = float(truth.loc[row.campaign_id, "true_revenue_uplift"])
        rows.append({
            "seed": seed,
            "campaign_id": row.campaign_id,
            "treated": int(row.treated_customers),
            "control": int(row.control_customers),
            "true_conversion_uplift": true_conversion,
            "conversion_uplift": row.conversion_uplift,
            "conversion_lower": row.conversion_uplift_lower,
            "conversion_upper": row.conversion_uplift_upper,
            "conversion_covered": bool(row.conversion_uplift_lower <= true_conversion <= row.conversion_uplift_upper),
            "conversion_significant": bool(row.is_conversion_uplift_significant),
            "true_revenue_uplift": true_revenue,
            "revenue_uplift": row.revenue_uplift,
            "revenue_lower": row.revenue_uplift_lower,
            "revenue_upper": row.revenue_uplift_upper,
            "revenue_covered": bool(row.revenue_uplift_lower <= true_revenue <= row.revenue_uplift_upper),
            "revenue_significant": bool(row.is_revenue_uplift_significant),
        })
    return rows


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a coverage rate (the study's own sampling error)."""
    p = successes / n
    centre, spread = p + Z * Z / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (centre - spread) / (1 + Z * Z / n), (centre + spread) / (1 + Z * Z / n)


def summarise(rows: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(rows)
    lines = [
        f"Coverage of campaign_uplift's 95% intervals: {frame['seed'].nunique()} generated datasets "
        f"({CUSTOMERS:,} customers, {DAYS} days to {END}), the campaigns' first night and the night their "
        "window has passed (`python -m bench.uplift_coverage`).",
        "",
        "| campaign | seeds | mean treated / control | mean true conversion uplift | conversion coverage [95% CI] "
        "| flagged (conversion) | mean true revenue uplift | revenue coverage [95% CI] | flagged (revenue) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for campaign, group in [*frame.groupby("campaign_id"), ("all campaigns", frame)]:
        n = len(group)
        conv, rev = int(group["conversion_covered"].sum()), int(group["revenue_covered"].sum())
        cl, cu = _wilson(conv, n)
        rl, ru = _wilson(rev, n)
        lines.append(
            f"| {campaign} | {n} | {group['treated'].mean():.0f} / {group['control'].mean():.0f} "
            f"| {group['true_conversion_uplift'].mean():+.4f} | {conv / n:.1%} [{cl:.1%}, {cu:.1%}] "
            f"| {group['conversion_significant'].mean():.0%} | {group['true_revenue_uplift'].mean():+.2f} "
            f"| {rev / n:.1%} [{rl:.1%}, {ru:.1%}] | {group['revenue_significant'].mean():.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50, help="generated datasets (default 50)")
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        work = Path(tempfile.mkdtemp(prefix=f"custseg-uplift-{seed}-"))
        try:
            rows.extend(_one_seed(seed, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"seed {seed}: done, {time.perf_counter() - started:.0f}s so far", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{dt.date.today().isoformat()}-uplift-coverage"  # the file's date, not a computed value
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str) + "\n", encoding="utf-8")
    table = summarise(rows)
    stem.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
