"""Model registry and artifact I/O: the plumbing around the pure `ml` package.

* **Registry** (`ml.model_runs`): one row per fit with its version, training date and window,
  training-data hash, parameters (including the CLV parameters r, alpha, a, b, p, q, v), metrics,
  library versions, artifact path and sha256, the DAG that fitted it, and its status:
  ``approved`` or ``rejected``, with the reason; a weekly fit refused below the minimum
  (:class:`FitMinimum`) is a ``not_fitted`` row with the reason and no artifact.
* **Artifacts**: the fitted bundle (``joblib``) plus ``params.json`` and ``metrics.json`` under
  ``$CUSTSEG_MODEL_DIR/<model_version>/`` (default ``$CUSTSEG_DATA_DIR/models``, i.e.
  ``data/models``). A copy of the bundle also goes to ``ml.model_artifacts``, so a worker that
  does not share the directory (Celery/Kubernetes) still loads the model; the sha256 in the
  registry is checked either way. Artifacts are pickles written by this pipeline: only load
  them from a directory and warehouse you control.
* **Nightly** (``score_nightly``): scores with the latest approved model trained on or before
  the run's date, or fits and approves one when there is none yet (first run on an empty
  warehouse), writes PSI drift to ``ml.feature_drift`` and a row to ``ml.scoring_runs``. Below
  the minimum (:class:`FitMinimum`) nothing is fitted: the labels are null and
  ``ml.scoring_runs.metrics`` has ``not_fitted`` with the reason.
* **Weekly** (``retrain``): fits a candidate and approves it only if ``ml.approval.decide``
  says it is not worse than the current approved model; otherwise records why.

Every computed value is as of the logical date; ``recorded_at`` is the only wall-clock value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from custseg.config import PROJECT_ROOT, Settings
from custseg.warehouse import Warehouse, connect, quote_ident
from ml.features import SNAPSHOT_FEATURES

if TYPE_CHECKING:
    from ml.bundle import ModelBundle

log = logging.getLogger(__name__)

APPROVED = "approved"
REJECTED = "rejected"
#: a fit refused below the minimum (FitMinimum): recorded, never loaded
NOT_FITTED = "not_fitted"
ARTIFACT_NAME = "bundle.joblib"


def _utc_now() -> dt.datetime:
    """Only for operational records (when a row was written), never for computed values."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def model_dir(env: dict[str, str] | None = None) -> Path:
    """``CUSTSEG_MODEL_DIR``, else ``<CUSTSEG_DATA_DIR>/models``, else ``data/models``."""
    env = dict(os.environ if env is None else env)
    if env.get("CUSTSEG_MODEL_DIR"):
        return Path(env["CUSTSEG_MODEL_DIR"])
    return Path(env.get("CUSTSEG_DATA_DIR", PROJECT_ROOT / "data")) / "models"


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


# -- artifacts -------------------------------------------------------------------------------
def dump_bundle(bundle: ModelBundle) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(bundle, buf, compress=3)
    return buf.getvalue()


def load_bundle_bytes(content: bytes) -> ModelBundle:
    import joblib

    return joblib.load(io.BytesIO(content))


def save_artifacts(bundle: ModelBundle, directory: Path) -> tuple[Path, str, bytes]:
    """Write bundle.joblib, params.json and metrics.json; returns (bundle path, sha256, bytes)."""
    content = dump_bundle(bundle)
    sha = hashlib.sha256(content).hexdigest()
    target = directory / bundle.model_version
    target.mkdir(parents=True, exist_ok=True)
    path = target / ARTIFACT_NAME
    tmp = target / f".{ARTIFACT_NAME}.{os.getpid()}.tmp"
    tmp.write_bytes(content)
    tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new one
    (target / "params.json").write_text(json.dumps(bundle.registry_params(), indent=2, sort_keys=True))
    (target / "metrics.json").write_text(json.dumps(bundle.metrics, indent=2, sort_keys=True))
    return path, sha, content


@dataclass(frozen=True)
class RegistryEntry:
    model_version: str
    trained_as_of: dt.date
    status: str
    artifact_path: str | None
    artifact_sha256: str | None
    metrics: dict[str, Any]


class Registry:
    """`ml.model_runs` + artifacts. Use inside an open warehouse connection."""

    def __init__(self, wh: Warehouse, directory: Path | None = None):
        self.wh = wh
        self.directory = directory or model_dir()

    def register(self, bundle: ModelBundle, *, status: str, reason: str, run_id: str, dag_id: str) -> Path:
        """Save the artifacts and record the fit (replacing an earlier row of the same version and run)."""
        path, sha, content = save_artifacts(bundle, self.directory)
        row = {
            "model_version": bundle.model_version,
            "as_of_date": bundle.trained_as_of,
            "run_id": run_id,
            "metrics": json.dumps(bundle.metrics, sort_keys=True),
            "params": json.dumps(bundle.registry_params(), sort_keys=True),
            "recorded_at": _utc_now(),
            "dag_id": dag_id,
            "status": status,
            "decision_reason": reason,
            "training_window_start": bundle.training_window_start,
            "training_window_end": bundle.training_window_end,
            "training_data_hash": bundle.training_data_hash,
            "library_versions": json.dumps(bundle.library_versions, sort_keys=True),
            "artifact_path": str(path),
            "artifact_sha256": sha,
        }
        cols = ", ".join(row)
        with self.wh.transaction():
            self.wh.execute("delete from ml.model_runs where model_version = %s and run_id = %s",
                            (bundle.model_version, run_id))
            self.wh.execute(f"insert into ml.model_runs ({cols}) values ({', '.join(['%s'] * len(row))})",
                            tuple(row.values()))
            self.wh.execute("delete from ml.model_artifacts where model_version = %s and artifact_sha256 = %s",
                            (bundle.model_version, sha))
            self.wh.execute(
                "insert into ml.model_artifacts (model_version, artifact_sha256, content, recorded_at) "
                "values (%s, %s, %s, %s)",
                (bundle.model_version, sha, content, _utc_now()),
            )
        log.info("registered model %s (trained as of %s) as %s: %s", bundle.model_version, bundle.trained_as_of,
                 status, reason)
        return path

    def record_not_fitted(self, bundle: ModelBundle, *, reason: str, run_id: str, dag_id: str) -> None:
        """A fit refused below the minimum: a registry row with status ``not_fitted``, the reason and
        the counts, and no artifact (nothing is loaded or approved from it)."""
        row = {
            "model_version": bundle.model_version,
            "as_of_date": bundle.trained_as_of,
            "run_id": run_id,
            "metrics": json.dumps(bundle.metrics, sort_keys=True),
            "recorded_at": _utc_now(),
            "dag_id": dag_id,
            "status": NOT_FITTED,
            "decision_reason": reason,
            "training_window_start": bundle.training_window_start,
            "training_window_end": bundle.training_window_end,
            "training_data_hash": bundle.training_data_hash,
            "library_versions": json.dumps(bundle.library_versions, sort_keys=True),
        }
        with self.wh.transaction():
            self.wh.execute("delete from ml.model_runs where model_version = %s and run_id = %s",
                            (bundle.model_version, run_id))
            self.wh.execute(f"insert into ml.model_runs ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})",
                            tuple(row.values()))

    def latest_approved(self, as_of: dt.date) -> RegistryEntry | None:
        """The approved model with the latest training date on or before ``as_of`` (never a future one)."""
        rows = self.wh.fetchall(
            "select model_version, as_of_date, status, artifact_path, artifact_sha256, metrics from ml.model_runs "
            "where status = %s and as_of_date <= %s and artifact_sha256 is not null "
            "order by as_of_date desc, recorded_at desc limit 1",
            (APPROVED, as_of),
        )
        if not rows:
            return None
        version, trained, status, path, sha, metrics = rows[0]
        trained = pd.Timestamp(trained).date()
        return RegistryEntry(version, trained, status, path, sha, json.loads(metrics) if metrics else {})

    def load(self, entry: RegistryEntry) -> ModelBundle:
        """The entry's bundle from its artifact file, else from the warehouse copy; sha256-checked."""
        content: bytes | None = None
        if entry.artifact_path and Path(entry.artifact_path).is_file():
            content = Path(entry.artifact_path).read_bytes()
            if hashlib.sha256(content).hexdigest() != entry.artifact_sha256:
                log.warning("artifact %s does not match its sha256; using the warehouse copy", entry.artifact_path)
                content = None
        if content is None:
            rows = self.wh.fetchall(
                "select content from ml.model_artifacts where model_version = %s and artifact_sha256 = %s limit 1",
                (entry.model_version, entry.artifact_sha256),
            )
            if not rows:
                raise FileNotFoundError(f"no artifact for model {entry.model_version} (file or warehouse copy)")
            content = bytes(rows[0][0])
            if hashlib.sha256(content).hexdigest() != entry.artifact_sha256:
                raise ValueError(f"warehouse artifact of {entry.model_version} does not match its sha256")
        bundle = load_bundle_bytes(content)
        from ml.bundle import ML_SCHEMA_VERSION

        if bundle.schema_version != ML_SCHEMA_VERSION:
            raise ValueError(f"model {entry.model_version} has schema {bundle.schema_version}, "
                             f"the code expects {ML_SCHEMA_VERSION}")
        return bundle


def previous_clusters(wh: Warehouse, as_of: dt.date) -> tuple[pd.DataFrame | None, dict[int, str] | None]:
    """Centroids and cluster names of the latest approved (or pre-registry) model trained before
    ``as_of``: a refit keeps its cluster ids (centroids) and, where a cluster stayed alike, its name."""
    rows = wh.fetchall(
        "select params from ml.model_runs where as_of_date < %s and params is not null "
        "and (status is null or status = %s) order by as_of_date desc, recorded_at desc limit 1",
        (as_of, APPROVED),
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


def choose_model(wh: Warehouse, registry: Registry, as_of: dt.date) -> ModelChoice:
    """The latest approved model trained on or before the date; if none (or it cannot be loaded),
    what `bootstrap_model` needs to fit one (the reason, and the centroids that keep cluster ids)."""
    entry = registry.latest_approved(as_of)
    reason = f"bootstrap: no approved model trained on or before {as_of}"
    if entry is not None:
        try:
            return ModelChoice(registry.load(entry), "approved")
        except Exception as exc:  # unloadable model: keep the nightly run alive, say why
            log.warning("approved model %s cannot be loaded (%s); fitting a new one", entry.model_version, exc)
            reason = f"bootstrap: approved model {entry.model_version} could not be loaded: {exc}"
    return ModelChoice(None, reason, *previous_clusters(wh, as_of))


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
    from custseg.config import ConfigError

    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a whole number of customers (0 or more), got {raw!r}")
    return int(raw)


MINIMUM_HINT = "CUSTSEG_MIN_BUYERS / CUSTSEG_MIN_REPEAT_BUYERS set the minimum"


def bootstrap_model(choice: ModelChoice, transactions: pd.DataFrame, customers: pd.DataFrame, as_of: dt.date,
                    engagement: pd.DataFrame | None = None, minimum: FitMinimum | None = None) -> ModelBundle:
    """Fit the first model of a warehouse (no warehouse access: pure ML on the frames).

    Below ``minimum`` (default :meth:`FitMinimum.from_env`) the bundle has no models and
    ``metrics['not_fitted']`` says why; the caller neither registers nor approves it."""
    from ml.bundle import fit_models

    minimum = minimum or FitMinimum.from_env()
    bundle = fit_models(transactions, customers, as_of, random_state=0,
                        previous_centroids=choice.previous_centroids, previous_names=choice.previous_names,
                        engagement=engagement, min_buyers=minimum.buyers, min_repeat_buyers=minimum.repeat_buyers)
    if not bundle.has_models:
        log.warning("no model fitted as of %s: %s (%s); the labels stay null until a night with enough "
                    "buyers", as_of, bundle.metrics.get("not_fitted"), MINIMUM_HINT)
    return bundle


def record_scoring(wh: Warehouse, run_id: str, as_of: dt.date, result: Any) -> list[str]:
    """ml.feature_drift (PSI per feature) and ml.scoring_runs rows; returns the drifted features."""
    from ml.drift import PSI_WARN

    bundle = result.bundle
    drift = result.drift if result.drift is not None else pd.DataFrame(columns=["feature", "psi", "bins", "status"])
    now = _utc_now()
    frame = pd.DataFrame({
        "run_id": run_id,
        "as_of_date": as_of,
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
                    PSI_WARN, result.model_version, bundle.trained_as_of, as_of,
                    ", ".join(f"{f}={p:.3f}" for f, p in zip(frame["feature"], frame["psi"], strict=True)
                              if f in drifted))
    metrics = {k: result.metrics.get(k) for k in ("n_customers", "n_buyers", "n_prospects", "cluster_sizes",
                                                  "buyers_not_in_customers", "drift_max_psi", "scored_in_chunks")}
    if not bundle.has_models:  # why tonight's cluster, churn and CLV labels are null
        metrics["not_fitted"] = bundle.metrics.get("not_fitted")
        metrics["n_train_repeat_buyers"] = bundle.metrics.get("n_train_repeat_buyers")
    with wh.transaction():
        wh.execute("delete from ml.feature_drift where run_id = %s and as_of_date = %s", (run_id, as_of))
        wh.execute("delete from ml.scoring_runs where run_id = %s and as_of_date = %s", (run_id, as_of))
        if len(frame):
            wh.write_arrow("ml", "feature_drift", pa.Table.from_pandas(frame, preserve_index=False))
        wh.execute(
            "insert into ml.scoring_runs (run_id, as_of_date, model_version, model_trained_as_of, n_customers, "
            "n_buyers, drift_max_psi, metrics, recorded_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, as_of, result.model_version, bundle.trained_as_of, result.metrics.get("n_customers"),
             result.metrics.get("n_buyers"), result.metrics.get("drift_max_psi"), json.dumps(metrics), now),
        )
    return drifted


# -- weekly ----------------------------------------------------------------------------------
def retrain(settings: Settings, as_of: dt.date, run_id: str, dag_id: str = "retrain_models") -> dict[str, Any]:
    """Fit a candidate as of ``as_of`` and approve it only if it is not worse than the current model.

    Needs the nightly run of ``as_of`` to have built the feature marts (checked: training on a
    stale build would label recent buyers as churned). Returns the decision, also recorded in
    ``ml.model_runs.decision_reason``.
    """
    from ml.approval import decide
    from ml.bundle import fit_models

    with connect(settings) as wh:
        wh.bootstrap()
        built = wh.fetchall(f"select max(as_of_date) from {quote_ident(settings.build_schema)}.fct_customer_features")
        built_as_of = pd.Timestamp(built[0][0]).date() if built and built[0][0] is not None else None
        if built_as_of != as_of:
            raise RuntimeError(f"the build schema holds features as of {built_as_of}, not {as_of}: run the nightly "
                               f"customer_segmentation DAG for {as_of} first")
        transactions, customers, engagement = read_ml_inputs(wh, settings.build_schema)
        registry = Registry(wh)
        entry = registry.latest_approved(as_of)
        current = None
        if entry is not None:
            try:
                current = registry.load(entry)
            except Exception as exc:
                log.warning("current model %s cannot be loaded (%s): comparing with its registered metrics only",
                            entry.model_version, exc)
        fitted = current is not None and current.has_models
        previous = current.centroids if fitted else None
        minimum = FitMinimum.from_env()
        candidate = fit_models(transactions, customers, as_of, random_state=0, previous_centroids=previous,
                               previous_names=current.cluster_names if fitted else None,
                               engagement=engagement, min_buyers=minimum.buyers,
                               min_repeat_buyers=minimum.repeat_buyers)
        summary: dict[str, Any] = {
            "as_of": as_of.isoformat(),
            "candidate": candidate.model_version,
            "current": entry.model_version if entry else None,
        }
        if not candidate.has_models:
            # refused, not failed: the data will not change on a retry; the current model stays
            reason = f"{candidate.metrics.get('not_fitted')} ({MINIMUM_HINT})"
            registry.record_not_fitted(candidate, reason=reason, run_id=run_id, dag_id=dag_id)
            summary.update(decision=NOT_FITTED, reason=reason)
            log.warning("retrain as of %s: %s", as_of, reason)
            return summary
        if entry is not None and candidate.model_version == entry.model_version:
            summary.update(decision="unchanged", reason="the candidate is the current model (same data and settings)")
            return summary
        decision = decide(candidate.metrics, entry.metrics if entry else None)
        candidate.metrics = {**candidate.metrics, "approval": {
            "current": summary["current"], "approved": decision.approved, "comparisons": decision.comparisons}}
        from ml.bundle import json_safe

        candidate.metrics = json_safe(candidate.metrics)
        registry.register(candidate, status=APPROVED if decision.approved else REJECTED, reason=decision.reason,
                          run_id=run_id, dag_id=dag_id)
    summary.update(decision=APPROVED if decision.approved else REJECTED, reason=decision.reason)
    (log.info if decision.approved else log.warning)("retrain as of %s: %s %s (%s)", as_of, summary["decision"],
                                                     candidate.model_version, decision.reason)
    return summary


# -- evaluation against the generator's truth ------------------------------------------------
def ground_truth_labels(truth_dir: Path, hash_key: str | None = None) -> pd.DataFrame:
    """customer_id (the keyed hash of the CRM id, namespace customer:crm) → behaviour_type, for CRM customers.

    `hash_key` is the key the warehouse was built with; by default the configured one (CUSTSEG_HASH_KEY).
    """
    from custseg.config import load_settings
    from custseg.identity import keyed_hash

    key = load_settings().hash_key if hash_key is None else hash_key
    truth = pd.read_parquet(Path(truth_dir) / "customers.parquet", columns=["crm_customer_id", "behaviour_type"])
    truth = truth[truth["crm_customer_id"].notna()]
    # the CRM id as staging normalises it (trimmed) before hashing
    ids = [keyed_hash(key, "customer:crm", str(c).strip()) for c in truth["crm_customer_id"]]
    return pd.DataFrame({"customer_id": ids, "behaviour_type": truth["behaviour_type"].astype(str).to_numpy()})


def cluster_agreement(labels: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Adjusted Rand index of cluster_id vs the latent behaviour_type, over labelled buyers in the truth."""
    from sklearn.metrics import adjusted_rand_score

    joined = labels.dropna(subset=["cluster_id"]).merge(truth, on="customer_id", how="inner")
    joined = joined[joined["behaviour_type"] != "prospect"]
    return {
        "customers": len(joined),
        "adjusted_rand_index": float(adjusted_rand_score(joined["behaviour_type"], joined["cluster_id"].astype(int)))
        if len(joined) else float("nan"),
        "crosstab": pd.crosstab(joined["behaviour_type"], joined["cluster_id"].astype(int)),
    }
