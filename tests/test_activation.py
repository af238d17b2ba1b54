"""Activation after publish: the Asset events the nightly publish emits (Airflow's own database), and the
`activate_audiences` DAG run with `dag.test()` for a published date.

One module warehouse, a copy of the session's published DuckDB night (E2E_END), then two real DAG runs:
the night before with its publish task failing, and E2E_END again, which now has the night before in its
history and so raises alerts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from custseg.config import PUBLISHED_TABLES, load_settings
from custseg.ops.faults import FAIL_TASK_ENV
from custseg.steps import activate as activation
from custseg.steps.publish import asset_uri
from custseg.warehouse import connect
from tests.conftest import E2E_END, run_cli, run_nightly
from tests.test_retrain_dag import run_dag_test

NIGHT_BEFORE = E2E_END - dt.timedelta(days=1)
CAMPAIGN = "demo-newsletter-no-effect"
ACTIVATION_FILE = """
audiences:
  - {{audience: {rule}, channel: email, include: [email]}}
  - {{audience: "campaign:{campaign}", channel: ads, format: parquet}}
alerts:
  channels: [email, sms]
"""


def _query(env: dict[str, str], sql: str, params: tuple = ()) -> pd.DataFrame:
    with connect(load_settings(env), read_only=True) as wh:
        return wh.query_df(sql, params)


def _run_ids(env: dict[str, str]) -> dict[tuple[dt.date, str], list[str]]:
    """(as-of date, status of the publish task) -> the nightly runs that ended so (ops.run_audit)."""
    rows = _query(env, "select as_of_date, status, run_id from ops.run_audit where task_id = 'publish' "
                       "and dag_id = 'customer_segmentation' order by recorded_at")
    runs: dict[tuple[dt.date, str], list[str]] = {}
    for as_of_date, status, run_id in rows.itertuples(index=False):
        runs.setdefault((pd.Timestamp(as_of_date).date(), status), []).append(run_id)
    return runs


def _asset_events(run_id: str) -> dict[str, dict]:
    """The Asset events a DAG run's tasks emitted, from Airflow's database: asset URI -> extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(AssetModel.uri, AssetEvent.extra).join(
            AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetEvent.source_run_id == run_id)).all()
    return {uri: dict(extra or {}) for uri, extra in rows}


@pytest.fixture(scope="module")
def nights(e2e_duckdb_env, airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("activation")
    shutil.copy2(e2e_duckdb_env["CUSTSEG_DUCKDB_PATH"], root / "warehouse.duckdb")
    env = {**e2e_duckdb_env, "CUSTSEG_DATA_DIR": str(root), "CUSTSEG_DUCKDB_PATH": str(root / "warehouse.duckdb"),
           "CUSTSEG_DOCS_DIR": str(root / "docs"), "CUSTSEG_EXPORT_DIR": str(root / "exports"),
           "CUSTSEG_ACTIVATION_FILE": str(root / "activation.yml")}
    settings = load_settings(env)
    with connect(settings, read_only=True) as wh:
        before = {table: wh.table_checksum(settings.publish_schema, table) for table in PUBLISHED_TABLES}
    failed = run_cli(["run", "--as-of", NIGHT_BEFORE.isoformat()], {**env, FAIL_TASK_ENV: "publish"}, airflow_home)
    assert failed.returncode == 1 and f"as of {NIGHT_BEFORE}: failed" in failed.stdout, failed.stdout[-3000:]
    with connect(settings, read_only=True) as wh:
        after_failure = {table: wh.table_checksum(settings.publish_schema, table) for table in PUBLISHED_TABLES}
    run_nightly(env, airflow_home, E2E_END)
    # the playbook rule with the most customers an e-mail may reach (no campaign's control)
    [(rule,)] = _query(env, "select playbook_id from analytics.customer_segments as s where has_email_consent "
                            "and customer_id not in (select customer_id from analytics.campaign_audience "
                            "where is_control) group by playbook_id order by count(*) desc, playbook_id "
                            "limit 1").itertuples(index=False)
    (root / "activation.yml").write_text(ACTIVATION_FILE.format(rule=rule, campaign=CAMPAIGN), encoding="utf-8")
    return {"env": env, "root": root, "settings": settings, "before": before, "after_failure": after_failure,
            "rule": rule}


def test_publish_emits_its_assets_only_when_it_succeeds(nights: dict) -> None:
    env, settings = nights["env"], nights["settings"]
    runs = _run_ids(env)
    expected_uris = {asset_uri(settings, table) for table in PUBLISHED_TABLES}
    # the session's night and this module's rerun: one event per published table, carrying the published date
    successes = runs[(E2E_END, "success")]
    assert len(successes) >= 2
    for run_id in successes:
        assert _asset_events(run_id) == {uri: {"as_of_date": E2E_END.isoformat()} for uri in expected_uris}
    # the night whose publish failed: no event, so nothing downstream was triggered, and analytics is unchanged
    [failed] = runs[(NIGHT_BEFORE, "failed")]
    assert _asset_events(failed) == {}
    assert nights["after_failure"] == nights["before"]


def test_the_activation_dag_writes_the_configured_files_for_the_published_date(nights: dict,
                                                                                airflow_home: Path) -> None:
    env, root, rule = nights["env"], nights["root"], nights["rule"]
    assert run_dag_test("activate_audiences", E2E_END, env, airflow_home) == "success"
    folder = root / "exports" / E2E_END.isoformat()
    manifests = {path.name: json.loads(path.read_text()) for path in folder.glob("*.manifest.json")}
    assert sorted(manifests) == sorted([
        f"{rule.replace('_', '-')}-email-{E2E_END}.csv.manifest.json",
        f"campaign-{CAMPAIGN}-ads-{E2E_END}.parquet.manifest.json",
        f"alerts-email-{E2E_END}.csv.manifest.json",
        f"alerts-sms-{E2E_END}.csv.manifest.json",
    ])
    files = {}
    for manifest in manifests.values():
        path = folder / manifest["file"]
        assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert manifest["as_of_date"] == E2E_END.isoformat()
        files[manifest["file"]] = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        assert manifest["rows"] == len(files[manifest["file"]])

    segments = _query(env, "select customer_id, playbook_id, has_email_consent, has_sms_consent, has_ads_consent "
                           "from analytics.customer_segments")
    controls = set(_query(env, "select customer_id from analytics.campaign_audience where is_control "
                               "and conversion_window_ends_on >= %s", (E2E_END,))["customer_id"])
    # the playbook rule for e-mail: its members with e-mail consent, running campaigns' controls left out
    members = segments[(segments["playbook_id"] == rule) & segments["has_email_consent"].astype(bool)]
    rule_file = files[f"{rule.replace('_', '-')}-email-{E2E_END}.csv"]
    assert set(rule_file["customer_id"]) == set(members["customer_id"]) - controls
    assert len(rule_file) > 5 and "email" in rule_file.columns and "phone" not in rule_file.columns
    # the campaign for ads: its treated side with ads consent
    audience = _query(env, "select customer_id from analytics.campaign_audience where campaign_id = %s "
                           "and not is_control", (CAMPAIGN,))
    with_ads = set(segments.loc[segments["has_ads_consent"].astype(bool), "customer_id"])
    assert set(files[f"campaign-{CAMPAIGN}-ads-{E2E_END}.parquet"]["customer_id"]) == (
        set(audience["customer_id"]) & with_ads)
    # the run's alerts, per channel: those with the channel's consent, controls left out
    alerts = _query(env, "select customer_id, alert_type, has_email_consent, has_sms_consent "
                         "from analytics.customer_alerts where as_of_date = %s", (E2E_END,))
    assert len(alerts) > 5, "the rerun compares with the night before: it must raise alerts"
    for channel in ("email", "sms"):
        expected = alerts[alerts[f"has_{channel}_consent"].astype(bool) & ~alerts["customer_id"].isin(controls)]
        written = files[f"alerts-{channel}-{E2E_END}.csv"]
        assert sorted(zip(written["customer_id"], written["alert_type"], strict=True)) == sorted(
            zip(expected["customer_id"], expected["alert_type"], strict=True))
        assert manifests[f"alerts-{channel}-{E2E_END}.csv.manifest.json"]["without_consent_left_out"] == int(
            (~alerts[f"has_{channel}_consent"].astype(bool)).sum())
    # every file is on record for erasure
    recorded = _query(env, "select file_path, sha256 from ops.audience_exports where as_of_date = %s", (E2E_END,))
    assert dict(zip(recorded["file_path"], recorded["sha256"], strict=True)) == {
        str((folder / m["file"]).resolve()): m["sha256"] for m in manifests.values()}

    # a rerun of the activation writes the same bytes
    digests = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert run_dag_test("activate_audiences", E2E_END, env, airflow_home) == "success"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == digests


def test_an_activation_for_a_date_no_longer_published_writes_nothing(nights: dict) -> None:
    """The events of a publish that has been superseded (a later publish) name an older date: skip."""
    settings = nights["settings"]
    before = sorted(p.relative_to(nights["root"]) for p in (nights["root"] / "exports").rglob("*"))
    with pytest.raises(activation.Superseded, match=f"as of {E2E_END}, not {NIGHT_BEFORE}"):
        activation.activate(settings, NIGHT_BEFORE)
    assert sorted(p.relative_to(nights["root"]) for p in (nights["root"] / "exports").rglob("*")) == before


def test_the_triggering_events_name_the_published_date(nights: dict) -> None:
    """published_date_of reads the real events of Airflow's database: the latest one's date wins."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = asset_uri(nights["settings"], "customer_segments")
    with create_session() as session:
        events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                                 .where(AssetModel.uri == uri).order_by(AssetEvent.timestamp)).all()
        assert events and activation.published_date_of({uri: events}) == dt.date.fromisoformat(
            events[-1].extra["as_of_date"])
    assert activation.published_date_of(None) is None and activation.published_date_of({}) is None


@pytest.mark.parametrize(("text", "message"), [
    ("audiences: [{audience: Champions, channel: fax}]", "audiences[1].channel: one of email, sms, ads"),
    ("audiences: [{audience: Champions, channel: email, include: [name]}]",
     "audiences[1].include: a list of email, phone"),
    ("audiences: [{audience: Champions, channel: email, colour: red}]", "audiences[1]: a mapping of"),
    ("alerts: {channels: [pigeon]}", "alerts.channels: a list of email, sms, ads"),
    ("audience: Champions", "top level: a mapping with the keys audiences and alerts"),
])
def test_a_wrong_activation_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    from custseg.config import ConfigError

    path = tmp_path / "activation.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        activation.load_activation_plan(path)
    assert str(error.value).startswith(f"{path}: {message}")
    assert "\n" not in str(error.value)


def test_the_shipped_activation_file_names_published_rules() -> None:
    from custseg.campaigns import PLAYBOOK_SEED

    plan = activation.load_activation_plan(load_settings({}).activation_file)
    rules = set(pd.read_csv(PLAYBOOK_SEED)["playbook_id"])
    assert plan.audiences and all(entry.audience in rules for entry in plan.audiences)
    assert plan.alert_channels
