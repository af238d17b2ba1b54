"""The pipeline's own tables (`ops`, `ml`, identity state), created by `Warehouse.bootstrap`, and
the name of the read-only BI role.
"""

from __future__ import annotations

BI_ROLE = "custseg_bi"

#: Columns of the pipeline's own tables renamed since an earlier release (CHANGELOG "Upgrade notes"):
#: ``Warehouse.bootstrap`` renames them in place, so an upgraded warehouse keeps its history.
RENAMED_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    # 2.0.0: one name for the run's date, as_of_date, everywhere after the DAG boundary
    ("ops", "load_audit", "logical_date", "as_of_date"),
    ("ops", "quality_results", "logical_date", "as_of_date"),
    ("ops", "run_audit", "logical_date", "as_of_date"),
)


OPS_DDL = (
    """create table if not exists ops.load_audit (
        run_id text not null,
        as_of_date date not null,
        source text not null,
        partition_date date,
        source_file text,
        rows_read bigint not null,
        rows_loaded bigint not null,
        rows_quarantined bigint not null,
        extra_columns text,
        status text not null,
        error text,
        recorded_at timestamp not null
    )""",
    # Warehouses created before these counts: add them (idempotent on both engines). Exact duplicates
    # of an earlier row of the same partition are loaded (staging keeps one) and counted here; rows of
    # an order export dated after the run's date are not read that night, and counted here.
    "alter table ops.load_audit add column if not exists rows_duplicate bigint",
    "alter table ops.load_audit add column if not exists rows_after_as_of bigint",
    # Rows of an erased person (custseg/erasure.py): not loaded and not quarantined at ingestion, because their
    # keys hash into raw.erasure_suppression; rows erased after loading move here from rows_loaded or
    # rows_quarantined. rows_read = rows_loaded + rows_quarantined + rows_suppressed.
    "alter table ops.load_audit add column if not exists rows_suppressed bigint",
    # GDPR Art. 17 erasure (custseg/erasure.py): the keyed hashes of every identity key of an erased person,
    # which ingestion refuses to load again; and a log of each erasure without any key or hash.
    """create table if not exists raw.erasure_suppression (
        key_type text not null,
        key_hash text not null,
        erasure_id text not null,
        added_at timestamp not null
    )""",
    """create table if not exists ops.erasure_log (
        erasure_id text not null,
        requested_at timestamp not null,
        key_type text not null,
        customers bigint not null,
        rows_deleted text not null,
        files_rewritten bigint not null,
        rows_redacted bigint not null
    )""",
    # One row per audience file written (custseg export, the activation DAG); erasure rewrites them.
    "create table if not exists ops.audience_exports (file_path text not null, manifest_path text not null, "
    "audience text not null, channel text, as_of_date date not null, row_count bigint not null, "
    "sha256 text not null, written_at timestamp not null)",
    # The campaigns file as of the run (custseg/campaigns.py), replaced by the prepare task each run; a
    # target list is 'a|b' and control_threshold the holdout cut as 8 lower-case hex digits.
    """create table if not exists raw.campaigns (
        campaign_id text not null,
        description text,
        target_playbook_ids text,
        target_rfm_segments text,
        start_date date not null,
        end_date date not null,
        conversion_window_days integer not null,
        control_share double precision not null,
        control_threshold text not null
    )""",
    """create table if not exists raw.quarantine (
        source text not null,
        source_file text not null,
        source_line bigint,
        partition_date date,
        run_id text not null,
        raw_record text,
        reason text not null
    )""",
    # The model registry: one row per fit (as_of_date = the training date); see custseg/registry.py.
    """create table if not exists ml.model_runs (
        model_version text not null,
        as_of_date date not null,
        run_id text not null,
        metrics text,
        params text,
        recorded_at timestamp not null,
        dag_id text,
        status text,
        decision_reason text,
        training_window_start date,
        training_window_end date,
        training_data_hash text,
        library_versions text,
        artifact_path text,
        artifact_sha256 text
    )""",
    # Warehouses created before the registry: add its columns (idempotent on both engines).
    "alter table ml.model_runs add column if not exists dag_id text",
    "alter table ml.model_runs add column if not exists status text",
    "alter table ml.model_runs add column if not exists decision_reason text",
    "alter table ml.model_runs add column if not exists training_window_start date",
    "alter table ml.model_runs add column if not exists training_window_end date",
    "alter table ml.model_runs add column if not exists training_data_hash text",
    "alter table ml.model_runs add column if not exists library_versions text",
    "alter table ml.model_runs add column if not exists artifact_path text",
    "alter table ml.model_runs add column if not exists artifact_sha256 text",
    # A copy of every artifact, so a worker without the model directory can still load a model.
    """create table if not exists ml.model_artifacts (
        model_version text not null,
        artifact_sha256 text not null,
        content bytea not null,
        recorded_at timestamp not null
    )""",
    # One row per nightly scoring run: which model scored which date.
    """create table if not exists ml.scoring_runs (
        run_id text not null,
        as_of_date date not null,
        model_version text not null,
        model_trained_as_of date,
        n_customers bigint,
        n_buyers bigint,
        drift_max_psi double precision,
        metrics text,
        recorded_at timestamp not null
    )""",
    # PSI of the main features between the scoring model's training data and the run's date.
    """create table if not exists ml.feature_drift (
        run_id text not null,
        as_of_date date not null,
        model_version text not null,
        model_trained_as_of date,
        feature text not null,
        psi double precision,
        bins integer,
        status text not null,
        warn_threshold double precision not null,
        recorded_at timestamp not null
    )""",
    """create table if not exists ops.quality_results (
        run_id text not null,
        as_of_date date not null,
        suite_name text not null,
        expectation text not null,
        column_name text,
        severity text not null,
        success boolean not null,
        observed_value text,
        unexpected_sample text,
        recorded_at timestamp not null
    )""",
    # the check with its band, as quality.html shows it (expect_x(column='c', min_value=..., max_value=...))
    "alter table ops.quality_results add column if not exists check_description text",
    # one row per dbt node (model, seed, test) and try of the transform and assemble tasks
    # (custseg/steps/transform.py): what one Airflow task per model used to show
    """create table if not exists ops.dbt_node_results (
        run_id text not null,
        task_id text not null,
        try_number integer not null,
        as_of_date date not null,
        unique_id text not null,
        resource_type text not null,
        node_name text not null,
        status text not null,
        execution_seconds double precision not null,
        rows_affected bigint,
        failures bigint,
        message text,
        recorded_at timestamp not null
    )""",
    # one row per task try of the nightly DAG, written by its callbacks (custseg.ops.run_audit)
    """create table if not exists ops.run_audit (
        run_id text not null,
        dag_id text not null,
        task_id text not null,
        as_of_date date,
        try_number integer,
        status text not null,
        started_at timestamp,
        ended_at timestamp,
        duration_seconds double precision,
        rows_in bigint,
        rows_out bigint,
        error text,
        recorded_at timestamp not null
    )""",
)
