"""The score task: label every customer with the latest approved model (clusters, churn risk,
lifetime value) and write the labels to the build schema, chunk by chunk.

Also the warehouse side of the ML: reading `ml/`'s inputs, choosing the model, the fit minimum
(:class:`FitMinimum`), and recording drift and the scoring run. `ml/` itself stays pure.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import gc
import itertools
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from custseg.clock import utc_now
from custseg.config import ConfigError, Settings
from custseg.dbt import release_dbt_duckdb
from custseg.registry import APPROVED, Registry
from custseg.steps.quality import data_docs, record_quality
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import qualified, quote_ident
from expectations import suites
from expectations.report import combine_reports
from expectations.runner import validate_dataframe
from ml.features import SNAPSHOT_FEATURES, prepare_transactions

if TYPE_CHECKING:
    from expectations.report import ValidationReport
    from ml.bundle import ModelBundle
    from ml.scoring import ScoringResult

log = logging.getLogger(__name__)


# -- inputs ----------------------------------------------------------------------------------
def read_ml_inputs(
    wh: Warehouse,
    build_schema: str,
    customer_range: tuple[str | None, str | None] = (None, None),
    snapshot_date: dt.date | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Purchases, customers and engagement snapshots from the build schema, as identical frames on both engines.

    ``customer_range`` (lower bound inclusive, upper exclusive; None: open) limits every frame to a
    chunk of customers (:func:`customer_chunks`); ``snapshot_date`` limits the snapshots to one date
    (scoring needs only tonight's, fitting all of them).
    """
    build = quote_ident(build_schema)
    lower, upper = customer_range
    # not null in every read: a row without a customer falls in no range, so it must not be scored
    # when there is only one (the model's inputs must not depend on the chunk size)
    in_range = "".join([" and customer_id is not null",
                        " and customer_id >= %s" if lower is not None else "",
                        " and customer_id < %s" if upper is not None else ""])
    bounds = tuple(b for b in customer_range if b is not None)
    transactions = _read_frame(
        wh,
        "select customer_id, purchase_date as order_date, cast(net_amount as double precision) as net_amount, "
        "cast(discount_amount as double precision) as discount_amount, sales_channel as channel, category "
        # no order by: prepare_transactions sorts on every column, and sorting 3.8M rows in the
        # warehouse too doubled the read's peak memory
        f"from {build}.fct_purchases where not is_refund{in_range}",
        bounds,
    )
    customers = _read_frame(
        wh,
        "select customer_id, email_open_rate, email_click_rate, "
        f"cast(web_sessions_90d as double precision) as web_sessions_90d from {build}.fct_customer_features "
        f"where true{in_range} order by customer_id",
        bounds,
    )
    snapshot_columns = ", ".join(f"cast({c} as double precision) as {c}" for c in SNAPSHOT_FEATURES)
    on_date = " and snapshot_date = %s" if snapshot_date is not None else ""
    engagement = _read_frame(
        wh,
        f"select customer_id, snapshot_date, {snapshot_columns} from {build}.fct_customer_engagement_snapshots "
        f"where true{in_range}{on_date} order by snapshot_date, customer_id",
        (*bounds, *((snapshot_date,) if snapshot_date is not None else ())),
    )
    # Both engines must hand ML identical frames (dtypes included): the model version hashes them.
    engagement["customer_id"] = engagement["customer_id"].astype("string")
    engagement["snapshot_date"] = pd.to_datetime(engagement["snapshot_date"]).astype("datetime64[ns]")
    for col in SNAPSHOT_FEATURES:
        engagement[col] = pd.to_numeric(engagement[col]).astype("float64")
    transactions["order_date"] = pd.to_datetime(transactions["order_date"]).astype("datetime64[ns]")
    for frame, numeric in ((transactions, ("net_amount", "discount_amount")),
                           (customers, ("email_open_rate", "email_click_rate", "web_sessions_90d"))):
        for col in frame.columns:
            if col in numeric:
                frame[col] = pd.to_numeric(frame[col]).astype("float64")
            elif col != "order_date":
                frame[col] = frame[col].astype("string")
    return transactions, customers, engagement


def _read_frame(wh: Warehouse, sql: str, params: tuple = ()) -> pd.DataFrame:
    # Through Arrow: the ML inputs are millions of rows, and the score task's peak memory is this read.
    return wh.query_arrow(sql, params).to_pandas()


def customer_chunks(wh: Warehouse, build_schema: str, size: int) -> list[tuple[str | None, str | None]]:
    """Ranges of ``customer_id`` (lower inclusive, upper exclusive) of about ``size`` customers of
    ``fct_customer_features`` each, for :func:`read_ml_inputs`. The first is open below and the last
    above, so every purchase falls in exactly one, its customer's; the bounds are ordered by the
    warehouse itself, with the same collation as the range filters."""
    rows = wh.fetchall(
        "select customer_id from (select customer_id, row_number() over (order by customer_id) as position "
        f"from {quote_ident(build_schema)}.fct_customer_features) as numbered "
        "where position > 1 and mod(position - 1, %s) = 0 order by customer_id",
        (size,),
    )
    bounds = [None, *(str(r[0]) for r in rows), None]
    return list(itertools.pairwise(bounds))


def previous_clusters(wh: Warehouse, as_of_date: dt.date) -> tuple[pd.DataFrame | None, dict[int, str] | None]:
    """Centroids and cluster names of the latest approved (or pre-registry) model trained before
    ``as_of_date``: a refit keeps its cluster ids (centroids) and, where a cluster stayed alike, its name."""
    rows = wh.fetchall(
        "select params from ml.model_runs where as_of_date < %s and params is not null "
        "and (status is null or status = %s) order by as_of_date desc, recorded_at desc limit 1",
        (as_of_date, APPROVED),
    )
    if not rows:
        return None, None
    params = json.loads(rows[0][0])
    centroids = params.get("centroids") or {}
    if not centroids:
        return None, None
    frame = pd.DataFrame.from_dict(centroids, orient="index")
    frame.index = frame.index.astype(int)
    names = {int(k): str(v) for k, v in (params.get("cluster_names") or {}).items()} or None
    return frame.sort_index(), names


# -- nightly ---------------------------------------------------------------------------------
@dataclass
class ModelChoice:
    """What the nightly run scores with: the approved bundle, or what it needs to fit one first."""
    bundle: ModelBundle | None
    reason: str
    previous_centroids: pd.DataFrame | None = None
    previous_names: dict[int, str] | None = None


def choose_model(wh: Warehouse, registry: Registry, as_of_date: dt.date) -> ModelChoice:
    """The latest approved model trained on or before the date; if none (or it cannot be loaded),
    what `bootstrap_model` needs to fit one (the reason, and the centroids that keep cluster ids)."""
    entry = registry.latest_approved(as_of_date)
    reason = f"bootstrap: no approved model trained on or before {as_of_date}"
    if entry is not None:
        try:
            return ModelChoice(registry.load(entry), "approved")
        except Exception as exc:  # unloadable model: keep the nightly run alive, say why
            log.warning("approved model %s cannot be loaded (%s); fitting a new one", entry.model_version, exc)
            reason = f"bootstrap: approved model {entry.model_version} could not be loaded: {exc}"
    return ModelChoice(None, reason, *previous_clusters(wh, as_of_date))


@dataclass(frozen=True)
class FitMinimum:
    """The least data a model is fitted from, nightly (first model) and weekly (retrain).

    ``CUSTSEG_MIN_BUYERS`` (default 200) customers with a purchase as of the date, of whom
    ``CUSTSEG_MIN_REPEAT_BUYERS`` (default 50) bought on two days or more: the churn model and
    BG/NBD learn from repeat purchases, and the clusters from a few hundred customers. Below it
    the night publishes its rule-based segments with null cluster, churn and CLV labels and the
    reason in ``ml.scoring_runs``; the first night above it fits.
    """
    buyers: int = 200
    repeat_buyers: int = 50

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> FitMinimum:
        env = dict(os.environ if env is None else env)
        default = cls()
        return cls(_count_setting(env, "CUSTSEG_MIN_BUYERS", default.buyers),
                   _count_setting(env, "CUSTSEG_MIN_REPEAT_BUYERS", default.repeat_buyers))


def _count_setting(env: dict[str, str], name: str, default: int) -> int:

    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a whole number of customers (0 or more), got {raw!r}")
    return int(raw)


MINIMUM_HINT = "CUSTSEG_MIN_BUYERS / CUSTSEG_MIN_REPEAT_BUYERS set the minimum"

#: customers a model is fitted on at most (first night and weekly retrain); 0 fits on every customer
FIT_SAMPLE_ENV = "CUSTSEG_FIT_SAMPLE_CUSTOMERS"
DEFAULT_FIT_SAMPLE_CUSTOMERS = 250_000


def fit_sample(wh: Warehouse, build_schema: str, env: dict[str, str] | None = None
               ) -> tuple[tuple[str | None, str | None], dict[str, Any]]:
    """The customers a model is fitted on, as a ``customer_range`` for :func:`read_ml_inputs`, and what to
    record of it (``metrics['fit_sample']``).

    Above ``CUSTSEG_FIT_SAMPLE_CUSTOMERS`` customers (default 250,000) the fit reads the ones with the
    lowest ``customer_id``: ids are keyed hashes, so that is a uniform random sample, the same on both
    warehouses and on every rerun. Every estimator of the bundle (k-means, the churn model, BG/NBD and
    Gamma-Gamma) learns population parameters that a sample of this size pins down; scoring still
    reads every customer, in chunks. The fit's memory, the first night's peak, is then bounded by the
    sample instead of growing with the customer base.
    """
    size = _count_setting(dict(os.environ if env is None else env), FIT_SAMPLE_ENV, DEFAULT_FIT_SAMPLE_CUSTOMERS)
    total = int(wh.fetchall(f"select count(*) from {quote_ident(build_schema)}.fct_customer_features")[0][0])
    if size == 0 or total <= size:
        return (None, None), {"customers": total, "of_customers": total, "sampled": False}
    # the first of the scoring task's chunks of this size: the same bounds, ordered by the warehouse
    return customer_chunks(wh, build_schema, size)[0], {
        "customers": size, "of_customers": total, "sampled": True,
        "rule": "the customers with the lowest keyed customer_id (a uniform sample)"}


def bootstrap_model(choice: ModelChoice, transactions: pd.DataFrame, customers: pd.DataFrame, as_of_date: dt.date,
                    engagement: pd.DataFrame | None = None, minimum: FitMinimum | None = None) -> ModelBundle:
    """Fit the first model of a warehouse (no warehouse access: pure ML on the frames).

    Below ``minimum`` (default :meth:`FitMinimum.from_env`) the bundle has no models and
    ``metrics['not_fitted']`` says why; the caller neither registers nor approves it."""
    # imported here: imports scikit-learn (tests/test_architecture.py LAZY)
    from ml.bundle import fit_models

    minimum = minimum or FitMinimum.from_env()
    bundle = fit_models(transactions, customers, as_of_date, random_state=0,
                        previous_centroids=choice.previous_centroids, previous_names=choice.previous_names,
                        engagement=engagement, min_buyers=minimum.buyers, min_repeat_buyers=minimum.repeat_buyers)
    if not bundle.has_models:
        log.warning("no model fitted as of %s: %s (%s); the labels stay null until a night with enough "
                    "buyers", as_of_date, bundle.metrics.get("not_fitted"), MINIMUM_HINT)
    return bundle


def record_scoring(wh: Warehouse, run_id: str, as_of_date: dt.date, result: Any) -> list[str]:
    """ml.feature_drift (PSI per feature) and ml.scoring_runs rows; returns the drifted features."""
    # imported here: imports scikit-learn (tests/test_architecture.py LAZY)
    from ml.drift import PSI_WARN

    bundle = result.bundle
    drift = result.drift if result.drift is not None else pd.DataFrame(columns=["feature", "psi", "bins", "status"])
    now = utc_now()
    frame = pd.DataFrame({
        "run_id": run_id,
        "as_of_date": as_of_date,
        "model_version": result.model_version,
        "model_trained_as_of": bundle.trained_as_of,
        "feature": drift["feature"].astype(str),
        "psi": drift["psi"].astype(float),
        "bins": drift["bins"].astype("int32"),
        "status": drift["status"].astype(str),
        "warn_threshold": PSI_WARN,
        "recorded_at": now,
    })
    drifted = frame.loc[frame["psi"] >= PSI_WARN, "feature"].tolist()
    if drifted:
        log.warning("feature drift: PSI >= %.2f between the training data of %s (as of %s) and %s for %s",
                    PSI_WARN, result.model_version, bundle.trained_as_of, as_of_date,
                    ", ".join(f"{f}={p:.3f}" for f, p in zip(frame["feature"], frame["psi"], strict=True)
                              if f in drifted))
    metrics = {k: result.metrics.get(k) for k in ("n_customers", "n_buyers", "n_prospects", "cluster_sizes",
                                                  "buyers_not_in_customers", "drift_max_psi", "scored_in_chunks")}
    if not bundle.has_models:  # why tonight's cluster, churn and CLV labels are null
        metrics["not_fitted"] = bundle.metrics.get("not_fitted")
        metrics["n_train_repeat_buyers"] = bundle.metrics.get("n_train_repeat_buyers")
    with wh.transaction():
        wh.execute("delete from ml.feature_drift where run_id = %s and as_of_date = %s", (run_id, as_of_date))
        wh.execute("delete from ml.scoring_runs where run_id = %s and as_of_date = %s", (run_id, as_of_date))
        if len(frame):
            wh.write_arrow("ml", "feature_drift", pa.Table.from_pandas(frame, preserve_index=False))
        wh.execute(
            "insert into ml.scoring_runs (run_id, as_of_date, model_version, model_trained_as_of, n_customers, "
            "n_buyers, drift_max_psi, metrics, recorded_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, as_of_date, result.model_version, bundle.trained_as_of, result.metrics.get("n_customers"),
             result.metrics.get("n_buyers"), result.metrics.get("drift_max_psi"), json.dumps(metrics), now),
        )
    return drifted


def score(settings: Settings, as_of_date: dt.date, run_id: str) -> dict[str, object]:
    """Score every customer with the latest approved model and write the labels to the build schema.

    The model is the registry's latest approved one trained on or before ``as_of_date`` (the weekly
    ``retrain_models`` DAG approves new ones); on the first run, with no approved model yet, one is
    fitted on this date's data and approved (custseg/registry.py), unless the date has fewer buyers
    than ``FitMinimum`` (then the labels are null and ``ml.scoring_runs`` says why; the next night
    with enough buyers fits). Feature drift against the model's
    training data goes to ``ml.feature_drift`` (a warning above the PSI threshold), and the model
    that scored the date to ``ml.scoring_runs``.

    Customers are read and scored in chunks of ``CUSTSEG_SCORE_CHUNK_CUSTOMERS``, so the
    task's memory is bounded by a chunk, not by the customer base. The labels go to a staging table
    chunk by chunk, and replace ``ml_customer_labels`` only once every chunk passed the label checks.
    """

    release_dbt_duckdb()  # this task's frames must not come on top of dbt's DuckDB buffer pool
    _return_free_memory()  # nor on what earlier tasks of this process freed but the allocator kept
    build = settings.build_schema
    with connect(settings) as wh:
        choice = choose_model(wh, Registry(wh), as_of_date)
        training, sample = None, {}
        if choice.bundle is None:
            sample_range, sample = fit_sample(wh, build)
            training = read_ml_inputs(wh, build, sample_range)
    bundle = choice.bundle
    if training is not None:
        # The first night fits on the whole date's data, with the warehouse closed: the file is not
        # held for minutes, nor DuckDB's buffer pool next to the frames (the task's peak memory).
        transactions, customers, engagement = training
        del training
        # cleaned and sorted once: every model of the fit reuses it instead of making a copy
        transactions = prepare_transactions(transactions, as_of_date)
        _return_free_memory()
        bundle = bootstrap_model(choice, transactions, customers, as_of_date, engagement)
        bundle.metrics["fit_sample"] = sample  # recorded with the model in ml.model_runs.metrics
        del transactions, customers, engagement
        _return_free_memory()

    staged = f"{LABELS_TABLE}_scoring"
    result, reports = _score_in_chunks(settings, bundle, as_of_date, staged)
    # one chunk: its own report (with the GX result for Data Docs); more: their sum, each chunk's
    # GX result on its own Data Docs page
    report = reports[0] if len(reports) == 1 else dataclasses.replace(combine_reports(reports, sample_note=(
        f"validated in {len(reports)} chunks of customers, {result.metrics['n_customers']} rows in all; "
        "each customer is in one chunk, so customer_id is checked unique over all of them")),
        batch_name=as_of_date.isoformat())
    profiles = _profile_table(result.cluster_profiles)
    profiles["model_version"] = result.model_version
    with connect(settings) as wh:
        if choice.bundle is None and bundle.has_models:
            Registry(wh).register(bundle, status=APPROVED, reason=choice.reason, run_id=run_id,
                                  dag_id="customer_segmentation")
        record_quality(wh, run_id, as_of_date, report.to_rows(run_id))
        data_docs(settings, "ml_labels", reports, run_id, as_of_date)
        if not report.success:
            wh.execute(f"drop table if exists {qualified(build, staged)}")
        report.raise_if_blocking_failed()
        with wh.transaction():
            wh.execute(f"drop table if exists {qualified(build, LABELS_TABLE)}")
            wh.execute(f"alter table {qualified(build, staged)} rename to {quote_ident(LABELS_TABLE)}")
        _replace_table(wh, build, "ml_cluster_profiles", profiles)
        drifted = record_scoring(wh, run_id, as_of_date, result)
    summary: dict[str, object] = {"model_version": result.model_version,
                                  "model_trained_as_of": bundle.trained_as_of.isoformat(),
                                  "customers": result.metrics["n_customers"], "drifted_features": drifted}
    if not bundle.has_models:  # too few buyers: the labels are null tonight, and this is why
        summary["models_not_fitted"] = bundle.metrics.get("not_fitted")
    return summary


def _score_in_chunks(settings: Settings, bundle: ModelBundle, as_of_date: dt.date, staged: str
                     ) -> tuple[ScoringResult, list[ValidationReport]]:
    """Score every customer chunk by chunk into the build table ``staged`` (made anew), validating
    each chunk's labels; the scoring result over all chunks and each chunk's validation report."""
    # imported here: imports scikit-learn (tests/test_architecture.py LAZY)
    from ml.scoring import ChunkScorer

    build, suite = settings.build_schema, suites.ml_labels_suite()
    with connect(settings) as wh:
        snapshot_exists = _has_engagement_snapshot(wh, build, as_of_date)
        chunks = customer_chunks(wh, build, settings.score_chunk_customers)
        _create_table(wh, build, staged, LABEL_COLUMNS)
    scorer = ChunkScorer(bundle, as_of_date, snapshot_exists=snapshot_exists)
    reports = []
    for number, customer_range in enumerate(chunks, start=1):
        # A connection per read and per write: DuckDB's buffer pool (every purchase block a range
        # scan touched) is freed before the chunk's frames grow, and the file is not held while
        # the models score.
        with connect(settings) as wh:
            transactions, customers, engagement = read_ml_inputs(wh, build, customer_range, snapshot_date=as_of_date)
        labels = scorer.score(transactions, customers, engagement)
        labels["model_version"] = bundle.model_version
        batch = (as_of_date.isoformat() if len(chunks) == 1
                 else f"{as_of_date.isoformat()} customers {number} of {len(chunks)}")
        reports.append(validate_dataframe(labels, suite, suite_name="ml.customer_labels", batch_name=batch))
        with connect(settings) as wh:
            _append_frame(wh, build, staged, labels, LABEL_COLUMNS)
        del transactions, customers, engagement, labels
        _return_free_memory()
    return scorer.result(), reports


def _has_engagement_snapshot(wh: Warehouse, build_schema: str, as_of_date: dt.date) -> bool:
    return bool(wh.fetchall(
        f"select 1 from {quote_ident(build_schema)}.fct_customer_engagement_snapshots where snapshot_date = %s limit 1",
        (as_of_date,),
    ))


def _return_free_memory() -> None:
    """Give the memory of freed frames back to the OS between the score task's phases.

    glibc keeps freed heap pages and pyarrow's pool keeps freed buffers for reuse, and the score
    task's RSS ratcheted up phase after phase (read, fit, score): 3.6 GB at 1M customers when
    what was alive at any moment was far less. Returned between phases, the peak is what is alive.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


LABELS_TABLE = "ml_customer_labels"


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
    types = {c: LABEL_COLUMNS.get(c) or _sql_type(frame[c]) for c in frame.columns}
    with wh.transaction():
        _create_table(wh, schema, table, types)
        _append_frame(wh, schema, table, frame, types)


def _sql_type(column: pd.Series) -> str:
    kind = column.dtype.kind
    return "bigint" if kind in "iu" else "double precision" if kind == "f" else "text"


def _create_table(wh: Warehouse, schema: str, table: str, types: dict[str, str]) -> None:
    """(Re)create an empty build-schema table with these column types."""
    target = f"{qualified(schema, table)}"
    wh.execute(f"drop table if exists {target}")
    wh.execute(f"create table {target} ({', '.join(f'{quote_ident(c)} {t}' for c, t in types.items())})")


def _append_frame(wh: Warehouse, schema: str, table: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
    """Insert a DataFrame's rows (bulk, through Arrow) into a table made by :func:`_create_table`."""
    data = frame.loc[:, list(types)].copy()
    for col, typ in types.items():
        if typ == "integer":
            data[col] = data[col].astype("Int32")
        elif typ == "text":
            data[col] = data[col].astype("string")
    wh.write_arrow(schema, table, pa.Table.from_pandas(data, preserve_index=False))
