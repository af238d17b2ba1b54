"""What the read-only commands print, on the session's published DuckDB night (tests/conftest.py e2e_duckdb_env),
through the real CLI: `custseg query` and `custseg models`."""

from __future__ import annotations

import json

from custseg.config import load_settings
from custseg.warehouse import connect
from tests.conftest import AIRFLOW_HOME, run_cli


def test_query_prints_null_and_keeps_the_querys_order(e2e_duckdb_env) -> None:
    sql = ("select rfm_segment, count(*) as customers from analytics.customer_segments "
           "group by 1 order by rfm_segment desc nulls first")
    result = run_cli(["query", sql], e2e_duckdb_env, AIRFLOW_HOME)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    with connect(load_settings(e2e_duckdb_env), read_only=True) as wh:
        expected = wh.fetchall(sql)
    assert lines[0].split() == ["rfm_segment", "customers"] and len(lines) == 1 + len(expected)
    # prospects have no segment: SQL's NULL reads "null", first as the query asked
    assert expected[0][0] is None and lines[1].split() == ["null", str(expected[0][1])]
    assert [line.rsplit(None, 1)[0].strip() for line in lines[2:]] == [segment for segment, _ in expected[1:]]
    assert "NaN" not in result.stdout and "None" not in result.stdout


def test_models_prints_the_registry_as_a_table(e2e_duckdb_env) -> None:
    result = run_cli(["models"], e2e_duckdb_env, AIRFLOW_HOME)
    assert result.returncode == 0, result.stderr[-2000:]
    with connect(load_settings(e2e_duckdb_env), read_only=True) as wh:
        [(version, status, metrics)] = wh.fetchall("select model_version, status, metrics from ml.model_runs "
                                                   "order by recorded_at desc limit 1")
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:4] == ["model_version", "trained_as_of", "status", "by"] and "silhouette" in header
    assert row.split()[0] == version and status in row.split()
    silhouette = json.loads(metrics)["silhouette"]
    assert f"{silhouette:.3f}" in row
