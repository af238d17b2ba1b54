"""The nightly pipeline's steps as plain functions. The DAG wires them; the CLI and tests call them.

Each step takes the settings and the run's logical date explicitly, and never reads the clock
for anything it computes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from custseg.config import DBT_PROJECT_DIR, PUBLISHED_TABLES, Settings
from custseg.dbt import run_dbt
from custseg.ingest import FUTURE_TOLERANCE, LoadResult, ingest_source
from custseg.sources import load_sources
from custseg.warehouse import Warehouse, connect, quote_ident

log = logging.getLogger(__name__)


def _utc_now() -> dt.datetime:
    """Only for operational records (when a row was written), never for computed values."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def prepare_warehouse(settings: Settings) -> None:
    """Create schemas and pipeline tables, and store the PII salt where staging can join it."""
    with connect(settings) as wh:
        wh.bootstrap()
        with wh.transaction():
            wh.execute("create table if not exists raw.pii_salt (pii_salt text not null)")
            wh.execute("delete from raw.pii_salt")
            wh.execute("insert into raw.pii_salt (pii_salt) values (%s)", (settings.pii_salt,))


def source_names(settings: Settings) -> list[str]:
    return list(load_sources(settings.sources_file))


def ingest(settings: Settings, source: str, logical_date: dt.date, run_id: str) -> dict[str, int]:
    results: list[LoadResult] = ingest_source(settings, source, logical_date, run_id)
    return {
        "partitions": len(results),
        "rows_read": sum(r.rows_read for r in results),
        "rows_loaded": sum(r.rows_loaded for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
    }


def _record_quality(wh: Warehouse, run_id: str, logical_date: dt.date, rows: list[dict]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows)
    frame["logical_date"] = logical_date
    frame["recorded_at"] = _utc_now()
    wh.execute(
        "delete from ops.quality_results where run_id = %s and suite_name in ("
        + ", ".join(["%s"] * frame["suite_name"].nunique()) + ")",
        (run_id, *frame["suite_name"].unique().tolist()),
    )
    cols = ["run_id", "logical_date", "suite_name", "expectation", "column_name", "severity", "success",
            "observed_value", "unexpected_sample", "recorded_at"]
    wh.write_arrow("ops", "quality_results", pa.Table.from_pandas(frame[cols], preserve_index=False))


def _data_docs(settings: Settings, name: str, reports: list, run_id: str, as_of: dt.date) -> Path:
    """GX Data Docs for this step's reports, written before any gate raises so failures are browsable."""
    from expectations.data_docs import build_data_docs

    run_time = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
    return build_data_docs(settings.docs_dir / "gx" / name, reports, run_name=run_id, run_time=run_time)


def validate_raw(settings: Settings, logical_date: dt.date, run_id: str) -> dict[str, bool]:
    """GX checks on the rows this run loaded, per source. A blocking failure stops the run."""
    from expectations.runner import validate_dataframe
    from expectations.suites import raw_suite

    sources = load_sources(settings.sources_file)
    reports = []
    with connect(settings) as wh:
        for name, src in sources.items():
            batch = wh.query_df(
                f"select * from raw.{src.channel.table} where _partition_date = %s", (logical_date,)
            )
            report = validate_dataframe(
                batch,
                # same tolerance as ingestion: local evening times can fall on the next UTC day
                raw_suite(name, logical_date, event_time_grace=FUTURE_TOLERANCE),
                suite_name=f"raw.{name}",
                batch_name=logical_date.isoformat(),
            )
            reports.append(report)
        _record_quality(wh, run_id, logical_date, [row for r in reports for row in r.to_rows(run_id)])
    _data_docs(settings, "raw", reports, run_id, logical_date)
    for report in reports:
        report.raise_if_blocking_failed()
    return {r.suite_name: r.success for r in reports}


def score(settings: Settings, as_of: dt.date, run_id: str) -> dict[str, object]:
    """Read the feature marts, fit and score the ML models, write labels to the build schema."""
    from expectations.runner import validate_dataframe
    from expectations.suites import ml_labels_suite
    from ml.scoring import score_customers

    build = quote_ident(settings.build_schema)
    with connect(settings) as wh:
        transactions = wh.query_df(
            "select customer_id, purchase_date as order_date, cast(net_amount as double precision) as net_amount, "
            "cast(discount_amount as double precision) as discount_amount, sales_channel as channel, category "
            f"from {build}.fct_purchases where not is_refund order by customer_id, purchase_date, purchase_id"
        )
        customers = wh.query_df(
            "select customer_id, email_open_rate, email_click_rate, "
            f"cast(web_sessions_90d as double precision) as web_sessions_90d from {build}.fct_customer_features "
            "order by customer_id"
        )
        # Both engines must hand ML identical frames (dtypes included): the model version hashes them.
        transactions["order_date"] = pd.to_datetime(transactions["order_date"]).astype("datetime64[ns]")
        for frame, numeric in ((transactions, ("net_amount", "discount_amount")),
                               (customers, ("email_open_rate", "email_click_rate", "web_sessions_90d"))):
            for col in frame.columns:
                if col in numeric:
                    frame[col] = pd.to_numeric(frame[col]).astype("float64")
                elif col != "order_date":
                    frame[col] = frame[col].astype("string")
        previous = _previous_centroids(wh, as_of)
        result = score_customers(transactions, customers, as_of, random_state=0, previous_centroids=previous)
        labels = result.labels.copy()
        labels["model_version"] = result.model_version
        report = validate_dataframe(labels, ml_labels_suite(), suite_name="ml.customer_labels",
                                    batch_name=as_of.isoformat())
        _record_quality(wh, run_id, as_of, report.to_rows(run_id))
        _data_docs(settings, "ml_labels", [report], run_id, as_of)
        report.raise_if_blocking_failed()

        profiles = _profile_table(result.cluster_profiles)
        profiles["model_version"] = result.model_version
        _replace_table(wh, settings.build_schema, "ml_customer_labels", labels)
        _replace_table(wh, settings.build_schema, "ml_cluster_profiles", profiles)
        with wh.transaction():
            wh.execute("delete from ml.model_runs where as_of_date = %s and model_version = %s",
                       (as_of, result.model_version))
            wh.execute(
                "insert into ml.model_runs (model_version, as_of_date, run_id, metrics, params, recorded_at) "
                "values (%s, %s, %s, %s, %s, %s)",
                (result.model_version, as_of, run_id, json.dumps(result.metrics, default=str),
                 json.dumps({"centroids": result.centroids.to_dict(orient="index")}, default=float), _utc_now()),
            )
    return {"model_version": result.model_version, "customers": len(labels)}


def _previous_centroids(wh: Warehouse, as_of: dt.date) -> pd.DataFrame | None:
    """Centroids of the latest model scored before this date, so cluster ids stay stable.

    Only earlier dates count: rerunning a date, or backfilling dates in order, sees exactly the
    model the original run saw.
    """
    rows = wh.fetchall(
        "select params from ml.model_runs where as_of_date < %s and params is not null "
        "order by as_of_date desc, recorded_at desc limit 1",
        (as_of,),
    )
    if not rows:
        return None
    centroids = json.loads(rows[0][0]).get("centroids") or {}
    if not centroids:
        return None
    frame = pd.DataFrame.from_dict(centroids, orient="index")
    frame.index = frame.index.astype(int)
    return frame.sort_index()


LABEL_COLUMNS = {
    "customer_id": "text",
    "cluster_id": "integer",
    "cluster_name": "text",
    "churn_probability": "double precision",
    "churn_risk_band": "text",
    "p_alive": "double precision",
    "expected_purchases_90d": "double precision",
    "predicted_clv_12m": "double precision",
    "model_version": "text",
}

PROFILE_FEATURES = ("recency_days", "frequency", "monetary", "online_share", "store_share", "app_share",
                    "discount_share", "category_breadth")


def _profile_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """Cluster profiles with the columns analytics.cluster_profiles publishes."""
    out = pd.DataFrame({
        "cluster_id": profiles["cluster_id"].astype("int64"),
        "cluster_name": profiles["cluster_name"].astype(str),
        "customers": profiles["customers"].astype("int64"),
    })
    for feature in PROFILE_FEATURES:
        out[f"avg_{feature}"] = profiles[feature].astype(float) if feature in profiles else float("nan")
    return out


def _replace_table(wh: Warehouse, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Replace a build-schema table with a DataFrame, with explicit column types for both engines."""
    types = {c: LABEL_COLUMNS.get(c) for c in frame.columns}
    for col in frame.columns:
        if types[col] is None:
            kind = frame[col].dtype.kind
            types[col] = "bigint" if kind in "iu" else "double precision" if kind == "f" else "text"
    target = f"{quote_ident(schema)}.{quote_ident(table)}"
    ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items())
    data = frame.copy()
    for col, typ in types.items():
        if typ == "integer":
            data[col] = data[col].astype("Int32")
        elif typ == "text":
            data[col] = data[col].astype("string")
    with wh.transaction():
        wh.execute(f"drop table if exists {target}")
        wh.execute(f"create table {target} ({ddl})")
        wh.write_arrow(schema, table, pa.Table.from_pandas(data, preserve_index=False))


def audit(settings: Settings, as_of: dt.date, run_id: str) -> dict[str, bool]:
    """GX suite on the build schema's published tables; nothing is published unless it passes."""
    from expectations.runner import validate_dataframe
    from expectations.suites import published_suite

    with connect(settings) as wh:
        segments = wh.query_df(f"select * from {quote_ident(settings.build_schema)}.customer_segments")
        report = validate_dataframe(segments, published_suite(), suite_name="analytics.customer_segments",
                                    batch_name=as_of.isoformat())
        _record_quality(wh, run_id, as_of, report.to_rows(run_id))
        _data_docs(settings, "audit", [report], run_id, as_of)
        stale = wh.fetchall(
            f"select count(*) from {quote_ident(settings.build_schema)}.customer_segments where as_of_date <> %s",
            (as_of,),
        )[0][0]
    report.raise_if_blocking_failed()
    if stale:
        raise RuntimeError(f"audit: {stale} rows of the build's customer_segments are not as of {as_of}")
    return {report.suite_name: report.success}


def publish(settings: Settings) -> dict[str, int]:
    with connect(settings) as wh:
        counts = wh.publish(PUBLISHED_TABLES)
    log.info("published %s", counts)
    return counts


def build_docs(settings: Settings, as_of: dt.date) -> Path:
    """Generate the static dbt docs site (a single self-contained HTML file) into docs_dir."""
    from custseg.dbt import dbt_vars

    run_dbt(settings, ["docs", "generate", "--static"], dbt_vars(as_of))
    settings.docs_dir.mkdir(parents=True, exist_ok=True)
    target = settings.docs_dir / "dbt"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("static_index.html", "index.html", "manifest.json", "catalog.json"):
        src = DBT_PROJECT_DIR / "target" / name
        if src.exists():
            shutil.copy2(src, target / name)
    return target / "static_index.html"
