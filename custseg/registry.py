"""Model registry and artifact I/O: the plumbing around the pure `ml` package.

(The nightly scoring and the weekly retrain that use it are the steps ``custseg.steps.score`` and
``custseg.steps.retrain``.)

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
* **Nightly** (``custseg.steps.score``): scores with the latest approved model trained on or before
  the run's date, or fits and approves one when there is none yet (first run on an empty
  warehouse), writes PSI drift to ``ml.feature_drift`` and a row to ``ml.scoring_runs``. Below
  the minimum (:class:`FitMinimum`) nothing is fitted: the labels are null and
  ``ml.scoring_runs.metrics`` has ``not_fitted`` with the reason.
* **Weekly** (``custseg.steps.retrain``): fits a candidate and approves it only if ``ml.approval.decide``
  says it is not worse than the current approved model; otherwise records why.

Every computed value is as of the run's ``as_of_date``; ``recorded_at`` is the only wall-clock value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from custseg.clock import utc_now
from custseg.config import DEFAULT_DATA_DIR
from custseg.warehouse import Warehouse

if TYPE_CHECKING:
    from ml.bundle import ModelBundle

log = logging.getLogger(__name__)


APPROVED = "approved"


REJECTED = "rejected"


#: a fit refused below the minimum (FitMinimum): recorded, never loaded
NOT_FITTED = "not_fitted"


ARTIFACT_NAME = "bundle.joblib"


def model_dir(env: dict[str, str] | None = None) -> Path:
    """``CUSTSEG_MODEL_DIR``, else ``<CUSTSEG_DATA_DIR>/models`` (custseg.config.DEFAULT_DATA_DIR unless set)."""
    env = dict(os.environ if env is None else env)
    if env.get("CUSTSEG_MODEL_DIR"):
        return Path(env["CUSTSEG_MODEL_DIR"])
    return Path(env.get("CUSTSEG_DATA_DIR") or DEFAULT_DATA_DIR) / "models"


# -- artifacts -------------------------------------------------------------------------------
def dump_bundle(bundle: ModelBundle) -> bytes:
    # imported here: loaded with scikit-learn, for artifacts only (tests/test_architecture.py LAZY)
    import joblib

    buf = io.BytesIO()
    joblib.dump(bundle, buf, compress=3)
    return buf.getvalue()


def load_bundle_bytes(content: bytes) -> ModelBundle:
    # imported here: loaded with scikit-learn, for artifacts only (tests/test_architecture.py LAZY)
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
            "recorded_at": utc_now(),
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
                (bundle.model_version, sha, content, utc_now()),
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
            "recorded_at": utc_now(),
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

    def latest_approved(self, as_of_date: dt.date) -> RegistryEntry | None:
        """The approved model with the latest training date on or before ``as_of_date`` (never a future one)."""
        rows = self.wh.fetchall(
            "select model_version, as_of_date, status, artifact_path, artifact_sha256, metrics from ml.model_runs "
            "where status = %s and as_of_date <= %s and artifact_sha256 is not null "
            "order by as_of_date desc, recorded_at desc limit 1",
            (APPROVED, as_of_date),
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
        # imported here: imports scikit-learn (tests/test_architecture.py LAZY)
        from ml.bundle import ML_SCHEMA_VERSION

        if bundle.schema_version != ML_SCHEMA_VERSION:
            raise ValueError(f"model {entry.model_version} has schema {bundle.schema_version}, "
                             f"the code expects {ML_SCHEMA_VERSION}")
        return bundle


#: what `custseg models` shows of each registry row: column -> path into its metrics JSON
SUMMARY_METRICS: dict[str, tuple[str, ...]] = {
    "churn_roc_auc": ("churn", "roc_auc"),
    "baseline_roc_auc": ("churn_baseline", "roc_auc"),
    "churn_pr_auc": ("churn", "pr_auc"),
    "churn_brier": ("churn", "brier"),
    "clusters": ("k",),
    "silhouette": ("silhouette",),
    "clv_holdout_purchases_error_pct": ("clv_holdout", "cumulative", "error_pct"),
    "clv_holdout_revenue_error_pct": ("clv_holdout", "revenue", "error_pct"),
}


def registry_summary(wh: Warehouse, limit: int = 20) -> pd.DataFrame:
    """The latest `limit` registry rows, newest first, with their main metrics as columns (`custseg models`):
    churn ROC AUC against the best baseline's, PR AUC and Brier score on the holdout, the number of clusters and
    their silhouette, and the CLV holdout's error on purchases and revenue (%). A metric the fit did not produce
    (too few buyers, a fallback model) is null."""
    rows = wh.fetchall(
        "select model_version, as_of_date, status, dag_id, decision_reason, metrics from ml.model_runs "
        "order by recorded_at desc limit %s", (limit,))
    records = []
    for version, trained, status, dag_id, reason, metrics in rows:
        values = json.loads(metrics) if metrics else {}
        record = {"model_version": version, "trained_as_of": pd.Timestamp(trained).date(), "status": status,
                  "by": dag_id}
        for column, path in SUMMARY_METRICS.items():
            value: Any = values
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            record[column] = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        record["decision"] = reason
        records.append(record)
    return pd.DataFrame.from_records(records, columns=["model_version", "trained_as_of", "status", "by",
                                                      *SUMMARY_METRICS, "decision"])

