"""`custseg rebuild` after rotating the hash key: the published tables are exactly those of a fresh
warehouse run over the same dates with the new key, no row keeps an id of the old key, and the
rebuild reads no landing file (raw holds every row).

Four real DAG runs, in two processes: the rebuild's two dates, and the fresh warehouse's two dates
(`custseg run --from --to`). The warehouse to rebuild is a copy of the session's published one (as
of D1), with D0 in the plan an interrupted rebuild leaves behind (``ops.rebuild_dates``: its history
rows already cleared), so no DAG run is needed to give the rebuild a second, earlier date."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest

from custseg.config import PUBLISHED_TABLES, load_settings
from custseg.rebuild import PLAN_DDL
from custseg.warehouse import connect
from tests.conftest import E2E_END, run_cli, warehouse_env

NEW_KEY = "rotated-key-for-the-rebuild-test"
D0, D1 = E2E_END - dt.timedelta(days=1), E2E_END
HEX_ID = re.compile(r"[0-9a-f]{32,64}")


def _hex_values(env: dict[str, str]) -> set[str]:
    """Every hex id or hash (customer ids, references) in any column of any analytics table."""
    found: set[str] = set()
    with connect(load_settings(env)) as wh:
        for table, column in wh.fetchall("select table_name, column_name from information_schema.columns "
                                         "where table_schema = 'analytics'"):
            for (value,) in wh.fetchall(f'select distinct cast("{column}" as varchar) from analytics."{table}" '
                                        f'where "{column}" is not null'):
                found |= set(HEX_ID.findall(value))
    return found


def _checksums(env: dict[str, str]) -> dict[str, str]:
    with connect(load_settings(env)) as wh:
        return {table: wh.table_checksum("analytics", table) for table in PUBLISHED_TABLES}


@pytest.mark.e2e
def test_rebuild_after_a_key_rotation_equals_a_fresh_warehouse(e2e_duckdb_env: dict[str, str], demo_data,
                                                               airflow_home: Path, session_dir: Path) -> None:
    # A: the session's warehouse (development key, published as of D1; raw holds every row up to
    # D1), copied, with D0 planned by an earlier rebuild that stopped after clearing D0's history rows
    a_dir = session_dir / "rebuild_a"
    a_dir.mkdir()
    source = Path(e2e_duckdb_env["CUSTSEG_DUCKDB_PATH"])
    for suffix in ("", ".wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy2(f"{source}{suffix}", a_dir / f"warehouse.duckdb{suffix}")
    env_a = warehouse_env("duckdb", a_dir, duckdb_path=a_dir / "warehouse.duckdb", landing_dir=demo_data.landing_dir)
    with connect(load_settings(env_a)) as wh:
        assert wh.fetchall("select distinct as_of_date from analytics.segment_history") == [(D1,)]
        wh.execute(PLAN_DDL)
        wh.execute("insert into ops.rebuild_dates (as_of_date, planned_at) values (%s, %s)",
                   (D0, dt.datetime(2026, 11, 1, 2, 0)))
    old_ids = _hex_values(env_a)
    assert len(old_ids) > 300

    # the key is rotated and the landing files are gone: the rebuild reads raw only
    rotated = {**env_a, "CUSTSEG_HASH_KEY": NEW_KEY, "CUSTSEG_LANDING_DIR": str(a_dir / "no-landing-files")}
    result = run_cli(["rebuild"], rotated, airflow_home)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    # one line per date, in order (Airflow's own log lines come in between), and the summary
    assert re.findall(r"^rebuilt as of (\S+): (\w+) \(\d+s\)$", result.stdout, re.M) == [
        (str(D0), "success"), (str(D1), "success")], out[-4000:]
    assert f"rebuilt 2 date(s) {D0}..{D1} from raw with the current hash key" in result.stdout

    # B: a fresh warehouse, the same dates, the new key
    b_dir = session_dir / "rebuild_b"
    env_b = {**warehouse_env("duckdb", b_dir, duckdb_path=b_dir / "warehouse.duckdb",
                             landing_dir=demo_data.landing_dir), "CUSTSEG_HASH_KEY": NEW_KEY}
    fresh = run_cli(["run", "--from", str(D0), "--to", str(D1)], env_b, airflow_home)  # one DAG run per date
    tail = (fresh.stdout + fresh.stderr)[-4000:]
    assert fresh.returncode == 0, tail
    assert re.findall(r"^customer_segmentation as of (\S+): (\w+) \(\d+s\)$", fresh.stdout, re.M) == [
        (str(D0), "success"), (str(D1), "success")], tail

    assert _checksums(rotated) == _checksums(env_b)
    assert not _hex_values(rotated) & old_ids, "a published row keeps an id or reference of the old key"
    with connect(load_settings(rotated)) as wh:
        history = wh.fetchall("select distinct as_of_date from analytics.segment_history order by 1")
        loads = wh.fetchall("select as_of_date, count(*) from ops.load_audit where status = 'from_raw' "
                            "group by 1 order by 1")
        models = dict(wh.fetchall("select status, count(*) from ml.model_runs group by 1"))
        leftover = wh.fetchall("select count(*) from ops.rebuild_dates")[0][0]
        map_ids = {c for (c,) in wh.fetchall("select distinct customer_id from raw.identity_map")}
    assert [d for (d,) in history] == [D0, D1]
    assert [d for d, _ in loads] == [D0, D1] and all(n >= 5 for _, n in loads)  # every source, no landing read
    assert models.get("retired", 0) >= 1 and models.get("approved") == 1  # refitted once, as a fresh warehouse
    assert leftover == 0 and not map_ids & old_ids
