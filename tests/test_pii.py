"""PII stays in `raw`: after a real DAG run no text column of any `analytics` table holds an email
address or a phone number, and production refuses to run without a PII salt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from custseg.config import ConfigError, load_settings
from custseg.warehouse import connect
from tests.conftest import E2E_END, run_cli, warehouse_env

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# a run of 8+ digits with phone separators, not part of a longer alphanumeric token (e.g. a hash)
PHONE = re.compile(r"(?<![0-9A-Za-z])\+?\(?\d[\d ().-]{6,}\d(?![0-9A-Za-z])")


def test_production_without_salt_fails_clearly() -> None:
    with pytest.raises(ConfigError, match="CUSTSEG_PII_SALT must be set when CUSTSEG_ENV=production"):
        load_settings({"CUSTSEG_ENV": "production"})
    assert load_settings({"CUSTSEG_ENV": "production", "CUSTSEG_PII_SALT": "s3cret"}).pii_salt == "s3cret"


@pytest.mark.e2e
def test_production_run_without_salt_stops_before_anything(airflow_home, tmp_path: Path) -> None:
    env = {**warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb"), "CUSTSEG_ENV": "production"}
    result = run_cli(["run", "--as-of", E2E_END.isoformat()], env, airflow_home, timeout=300)
    assert result.returncode != 0
    assert "CUSTSEG_PII_SALT must be set when CUSTSEG_ENV=production" in result.stdout + result.stderr
    assert not (tmp_path / "wh.duckdb").exists()


def _known_phones(wh) -> set[str]:
    """Digits (last 9) of every phone number in raw: what a leaked phone would contain."""
    phones = set()
    for table, col in (("crm_customers", "phone"), ("shop_orders", "customer_phone"),
                       ("support_tickets", "customer_phone")):
        for (value,) in wh.fetchall(f"select distinct {col} from raw.{table} where {col} is not null"):
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 9:
                phones.add(digits[-9:])
    return phones


@pytest.mark.e2e
def test_no_email_or_phone_in_any_analytics_table(e2e_duckdb_env: dict[str, str]) -> None:
    """Every text column of every `analytics` table after the session's real DAG run."""
    env = e2e_duckdb_env
    with connect(load_settings(env)) as wh:
        phones = _known_phones(wh)
        assert len(phones) > 100, "the demo data must carry phones for this test to mean anything"
        columns = wh.fetchall(
            "select table_name, column_name from information_schema.columns where table_schema = 'analytics' "
            "and lower(data_type) in ('text', 'varchar', 'character varying') order by 1, 2")
        tables = {t for t, _ in columns}
        assert {"customer_segments", "customer_identity"} <= tables
        leaks = []
        for table, column in columns:
            values = [r[0] for r in wh.fetchall(
                f'select distinct "{column}" from analytics."{table}" where "{column}" is not null')]
            for value in values:
                if EMAIL.search(value):
                    leaks.append((table, column, "email"))
                    break
                if any(re.sub(r"\D", "", m.group())[-9:] in phones for m in PHONE.finditer(value)):
                    leaks.append((table, column, "phone"))
                    break
    assert leaks == [], f"PII found in analytics: {leaks}"
    assert len(columns) > 20
