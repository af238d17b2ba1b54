"""`custseg export`: audience files for CRM and ad tools, from the session's published DuckDB night
(tests/conftest.py e2e_duckdb_env), through the real CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from custseg.config import load_settings
from custseg.warehouse import connect
from tests.conftest import AIRFLOW_HOME, run_cli


def _export(env: dict[str, str], out: Path, *args: str) -> tuple[pd.DataFrame, dict]:
    result = run_cli(["export", "--to", str(out), *args], env, AIRFLOW_HOME)
    assert result.returncode == 0, result.stderr[-2000:]
    [manifest_path] = out.glob("*.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    path = out / manifest["file"]
    frame = pd.read_csv(path, dtype=str) if manifest["format"] == "csv" else pd.read_parquet(path)
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["rows"] == len(frame) and manifest["columns"] == list(frame.columns)
    return frame, manifest


def _query(env: dict[str, str], sql: str, params: tuple = ()) -> pd.DataFrame:
    with connect(load_settings(env), read_only=True) as wh:
        return wh.query_df(sql, params)


def test_a_campaign_audience_is_its_treated_customers_with_the_crm_reference(e2e_duckdb_env, tmp_path: Path) -> None:
    frame, manifest = _export(e2e_duckdb_env, tmp_path, "--audience", "campaign:demo-newsletter-no-effect",
                              "--channel", "email")
    audience = _query(e2e_duckdb_env, "select a.customer_id, a.is_control, s.has_email_consent "
                                      "from analytics.campaign_audience as a inner join analytics.customer_segments "
                                      "as s on s.customer_id = a.customer_id "
                                      "where a.campaign_id = 'demo-newsletter-no-effect'")
    treated = audience[~audience["is_control"].astype(bool)]
    consenting = set(treated.loc[treated["has_email_consent"].astype(bool), "customer_id"])
    assert set(frame["customer_id"]) == consenting and len(consenting) > 30
    # customers who withheld or withdrew e-mail consent are left out, and counted
    assert manifest["channel"] == "email"
    assert manifest["without_consent_left_out"] == len(treated) - len(consenting) > 0
    assert manifest["campaign_controls_left_out"] == int(audience["is_control"].sum()) > 0
    # the CRM's own id, mapped from raw: each one hashes to the published customer_id (CRM customers)
    mapped = _query(e2e_duckdb_env, "select customer_id, key_value from raw.identity_map where key_type = 'crm_id'")
    crm_of = mapped.groupby("customer_id")["key_value"].min()
    with_crm = frame[frame["crm_customer_id"].notna()]
    assert len(with_crm) > 0.5 * len(frame)
    assert (with_crm["crm_customer_id"] == with_crm["customer_id"].map(crm_of)).all()
    # no contact details unless asked for
    assert not {"email", "phone"} & set(frame.columns) and manifest["contact_columns"] == []


def test_a_playbook_audience_leaves_out_running_campaigns_controls(e2e_duckdb_env, tmp_path: Path) -> None:
    # the rule holding the most campaign controls (the largest rule, prospects', holds none: no campaign targets
    # customers without an RFM segment)
    counts = _query(e2e_duckdb_env, "select s.playbook_id, count(*) as n from analytics.customer_segments as s "
                                    "inner join analytics.campaign_audience as a on s.customer_id = a.customer_id "
                                    "where a.is_control group by 1 order by 2 desc, 1")
    rule = counts["playbook_id"].iloc[0]
    frame, manifest = _export(e2e_duckdb_env, tmp_path, "--audience", rule, "--format", "parquet",
                              "--include", "email", "--channel", "sms")
    members = _query(e2e_duckdb_env, "select customer_id from analytics.customer_segments where playbook_id = %s "
                     "and has_sms_consent", (rule,))
    controls = set(_query(e2e_duckdb_env, "select customer_id from analytics.campaign_audience where is_control")
                   ["customer_id"])
    expected = set(members["customer_id"]) - controls
    assert set(frame["customer_id"]) == expected
    assert manifest["campaign_controls_left_out"] >= len(set(members["customer_id"]) & controls) > 0
    # e-mail only because it was asked for: the CRM's latest address of the customer's CRM record
    assert manifest["contact_columns"] == ["email"] and "phone" not in frame.columns
    crm = _query(e2e_duckdb_env, "select crm_customer_id, email, _partition_date, updated_at, _source_line "
                                 "from raw.crm_customers")
    latest = crm.sort_values(["_partition_date", "updated_at", "_source_line"]).groupby("crm_customer_id").last()
    with_crm = frame[frame["crm_customer_id"].notna()]
    assert (with_crm["email"].fillna("") == with_crm["crm_customer_id"].map(latest["email"]).fillna("")).all()
    assert with_crm["email"].notna().sum() > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--audience", "Champs"], "--audience 'Champs': give a playbook rule ("),
    (["--audience", "x' or '1'='1"], "--audience \"x' or '1'='1\": give a playbook rule ("),
    (["--audience", "campaign:nope"], "--audience 'campaign:nope': no campaign of that id has an audience; one of: "
                                      "campaign:demo-"),
    (["--audience", "Champions", "--include", "name"], "--include 'name': one of email, phone"),
])
def test_a_wrong_audience_is_one_line(e2e_duckdb_env, tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(["export", "--to", str(tmp_path), "--channel", "email", *args], e2e_duckdb_env, AIRFLOW_HOME)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr[-1000:]
    assert not list(tmp_path.iterdir())


def test_every_written_file_is_on_record(e2e_duckdb_env, tmp_path: Path) -> None:
    """ops.audience_exports lists each file handed over (custseg erase rewrites them); a rewrite replaces its row."""
    for _ in range(2):
        _, manifest = _export(e2e_duckdb_env, tmp_path, "--audience", "Champions", "--channel", "ads")
    recorded = _query(e2e_duckdb_env, "select audience, channel, as_of_date, row_count, sha256 "
                                      "from ops.audience_exports where file_path = %s",
                      (str((tmp_path / manifest["file"]).resolve()),))
    recorded["as_of_date"] = pd.to_datetime(recorded["as_of_date"]).dt.date.astype(str)
    assert recorded.to_dict("records") == [{
        "audience": "Champions", "channel": "ads", "as_of_date": manifest["as_of_date"],
        "row_count": manifest["rows"], "sha256": manifest["sha256"]}]
