"""Write-audit-publish on a real DuckDB file and a real PostgreSQL server: publish is all-or-nothing (an
exception or a killed process inside it changes nothing), BI grants and views survive it, readers never
see a mix, and concurrent publishers wait (PostgreSQL) or fail cleanly (DuckDB) without corrupting anything."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from custseg.config import PROJECT_DIR, PUBLISHED_BY_DATE, PUBLISHED_TABLES, Settings, load_settings
from custseg.ops.faults import (
    FAIL_IN_PUBLISH_ENV,
    KILL_EXIT_CODE,
    KILL_IN_PUBLISH_ENV,
    PUBLISH_PAUSE_ENV,
    InjectedFault,
)
from custseg.ops.locks import WarehouseBusyError, run_lock
from custseg.ops.run_audit import write_run_audit
from custseg.ops.status import status_report
from custseg.steps.prepare import prepare_warehouse
from custseg.steps.publish import publish
from custseg.warehouse import connect
from tests.conftest import warehouse_env

DAY1, DAY2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
BUILD_DDL = {
    "customer_segments": "customer_id text, as_of_date date, rfm_segment text, churn_probability double precision",
    "segment_history": "customer_id text, as_of_date date, rfm_segment text",
    "segment_summary": "as_of_date date, rfm_segment text, customers bigint",
    "cluster_profiles": "cluster_id integer, cluster_name text, customers bigint",
}
GENERIC_DDL = "key text, as_of_date date, value bigint"
SEGMENTS = ("Champions", "Loyal", "Lost")


def load_build(settings: Settings, day: dt.date, customers: int) -> None:
    """A build schema holding `customers` customers as of `day`: each day's content differs. The history
    tables keep their earlier dates' rows and replace `day`'s, as their incremental dbt models do."""
    b = settings.build_schema
    with connect(settings) as wh, wh.transaction():
        for table in PUBLISHED_TABLES:
            if table in PUBLISHED_BY_DATE and wh.table_exists(b, table):
                wh.execute(f"delete from {b}.{table} where as_of_date = %s", (day,))
            else:
                wh.execute(f"drop table if exists {b}.{table}")
                wh.execute(f"create table {b}.{table} ({BUILD_DDL.get(table, GENERIC_DDL)})")
            if table not in BUILD_DDL:  # published tables added later: same shape of change per day
                for i in range(day.day * 2):
                    wh.execute(f"insert into {b}.{table} values (%s, %s, %s)", (f"K-{i}", day, i * day.day))
        for i in range(customers):
            seg = SEGMENTS[(i + day.day) % 3]
            wh.execute(f"insert into {b}.customer_segments values (%s, %s, %s, %s)",
                       (f"C-{i:03d}", day, seg, (i % 10) / 10))
            wh.execute(f"insert into {b}.segment_history values (%s, %s, %s)", (f"C-{i:03d}", day, seg))
        for seg in SEGMENTS:
            wh.execute(f"insert into {b}.segment_summary values (%s, %s, %s)", (day, seg, customers // 3))
        for k in range(day.day + 1):
            wh.execute(f"insert into {b}.cluster_profiles values (%s, %s, %s)", (k, f"cluster {k}", 10 * k))


def checksums(settings: Settings, schema: str = "analytics") -> dict[str, str]:
    with connect(settings) as wh:
        return {t: wh.table_checksum(schema, t) for t in PUBLISHED_TABLES}


def publish_in_subprocess(env: dict[str, str], **fault: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSEG_")}
    full.update(env)
    full.update(fault)
    # the lightest import that runs the real publish (process start-up dominates these tests)
    code = ("from custseg.config import load_settings; from custseg.steps.publish import publish\n"
            "publish(load_settings())")
    return subprocess.Popen([sys.executable, "-c", code], env=full, cwd=PROJECT_DIR, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _published(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """DAY1 published and DAY2 waiting in the build schema; returns both days' checksums."""
    prepare_warehouse(settings)
    load_build(settings, DAY1, 30)
    publish(settings)
    day1 = checksums(settings)
    assert day1 == checksums(settings, settings.build_schema)
    load_build(settings, DAY2, 36)
    day2 = checksums(settings, settings.build_schema)
    assert all(day1[t] != day2[t] for t in PUBLISHED_TABLES)
    return day1, day2


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def published(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "postgres":
        env = warehouse_env("postgres", tmp_path, pg_url=request.getfixturevalue("pg_database"))
    else:
        env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb")
    settings = load_settings(env)
    return env, settings, *_published(settings)


@pytest.fixture
def published_pg(pg_database: str, tmp_path: Path):
    env = warehouse_env("postgres", tmp_path, pg_url=pg_database)
    settings = load_settings(env)
    return env, settings, *_published(settings)


def test_exception_inside_publish_changes_nothing(published, monkeypatch: pytest.MonkeyPatch) -> None:
    _env, settings, day1, day2 = published
    monkeypatch.setenv(FAIL_IN_PUBLISH_ENV, "1")
    with pytest.raises(InjectedFault, match="after replacing customer_segments"):
        publish(settings)
    assert checksums(settings) == day1
    monkeypatch.delenv(FAIL_IN_PUBLISH_ENV)
    counts = publish(settings)
    assert set(counts) == set(PUBLISHED_TABLES)
    assert (counts["customer_segments"], counts["segment_history"]) == (36, 30 + 36)
    assert checksums(settings) == day2


def test_history_tables_publish_the_runs_date_and_newer_ones_only(published) -> None:
    # A night copies its own date of segment_history and segment_migration, not the whole history.
    _env, settings, _day1, _day2 = published
    b, day3 = settings.build_schema, dt.date(2026, 3, 3)

    def published_history() -> dict[dt.date, tuple[int, int]]:
        with connect(settings) as wh:
            rows = wh.fetchall("select as_of_date, count(*), sum(case when rfm_segment = 'Changed' then 1 else 0 end) "
                               "from analytics.segment_history group by as_of_date")
        return {d: (int(n), int(changed)) for d, n, changed in rows}

    with connect(settings) as wh:  # an older date's rows that no run of that date wrote are not copied
        wh.execute(f"update {b}.segment_history set rfm_segment = 'Changed' where as_of_date = %s", (DAY1,))
    counts = publish(settings, DAY2)
    assert published_history() == {DAY1: (30, 0), DAY2: (36, 0)}
    assert (counts["customer_segments"], counts["segment_history"]) == (36, 36)  # the rows it wrote
    publish(settings, DAY1)  # a rerun or backfill of that date publishes it
    assert published_history() == {DAY1: (30, 30), DAY2: (36, 0)}
    # a night whose publish failed: the next night publishes its dates too
    load_build(settings, day3, 40)
    with connect(settings) as wh:
        wh.execute("delete from analytics.segment_history where as_of_date = %s", (DAY2,))
        wh.execute("delete from analytics.segment_migration where as_of_date = %s", (DAY2,))
    publish(settings, day3)
    assert published_history() == {DAY1: (30, 30), DAY2: (36, 0), day3: (40, 0)}
    assert checksums(settings) == checksums(settings, b)


def test_killed_process_inside_publish_changes_nothing(published) -> None:
    env, settings, day1, day2 = published
    proc = publish_in_subprocess(env, **{KILL_IN_PUBLISH_ENV: "1"})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == KILL_EXIT_CODE, out
    assert checksums(settings) == day1  # DuckDB replays only committed WAL; PostgreSQL aborts the session
    publish(settings)  # the rerun finishes the job
    assert checksums(settings) == day2


@pytest.mark.postgres
def test_postgres_grants_and_bi_views_survive_and_readers_never_see_a_mix(published_pg) -> None:
    import psycopg

    env, settings, _day1, day2 = published_pg
    url = settings.postgres.url
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("create view analytics.bi_champions as select customer_id, as_of_date "
                    "from analytics.customer_segments where rfm_segment = 'Champions'")
        con.execute("grant select on analytics.bi_champions to custseg_bi")
        before = con.execute("select count(*), max(as_of_date) from analytics.bi_champions").fetchone()
        assert before == (10, DAY1)

        # a publish paused inside its transaction, after replacing the first table
        proc = publish_in_subprocess(env, **{PUBLISH_PAUSE_ENV: "4"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = con.execute("select count(*) from pg_locks where locktype = 'advisory' and granted").fetchone()
            if waiting[0]:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        # a BI reader is not blocked, and sees yesterday's tables, all of them, never a mix
        t0 = time.monotonic()
        seen = con.execute("select (select max(as_of_date) from analytics.customer_segments), "
                           "(select max(as_of_date) from analytics.segment_history), "
                           "(select max(as_of_date) from analytics.segment_summary)").fetchone()
        assert time.monotonic() - t0 < 2 and seen == (DAY1, DAY1, DAY1)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out

        assert checksums(settings) == day2
        after = con.execute("select count(*), max(as_of_date) from analytics.bi_champions").fetchone()
        assert after == (12, DAY2), "the BI view must survive publish and show the new rows"
        for table in (*PUBLISHED_TABLES, "bi_champions"):
            ok = con.execute("select has_table_privilege('custseg_bi', %s, 'select')", (f"analytics.{table}",))
            assert ok.fetchone()[0], f"custseg_bi lost select on analytics.{table}"
        assert con.execute("select has_schema_privilege('custseg_bi', 'analytics', 'usage')").fetchone()[0]
        assert not con.execute("select has_table_privilege('custseg_bi', 'analytics.customer_segments', "
                               "'insert')").fetchone()[0], "custseg_bi is read-only"


@pytest.mark.postgres
def test_postgres_concurrent_publishers_wait_and_never_duplicate(published_pg) -> None:
    env, settings, _day1, day2 = published_pg
    first = publish_in_subprocess(env, **{PUBLISH_PAUSE_ENV: "3"})
    time.sleep(1.5)  # let the first one take the lock
    errors: list[BaseException] = []

    def second() -> None:
        try:
            publish(settings)
        except BaseException as exc:  # reported below
            errors.append(exc)

    t0 = time.monotonic()
    thread = threading.Thread(target=second)
    thread.start()
    out, _ = first.communicate(timeout=120)
    thread.join(timeout=120)
    assert first.returncode == 0, out
    assert not errors, errors
    assert time.monotonic() - t0 > 0.5, "the second publisher should have waited for the first"
    assert checksums(settings) == day2  # same build published twice: no duplicate rows, nothing mixed
    with connect(settings) as wh:
        counts = wh.fetchall("select count(*), count(distinct customer_id) from analytics.customer_segments")[0]
    assert counts == (36, 36)


def test_duckdb_second_writer_fails_cleanly(tmp_path: Path) -> None:
    env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb")
    settings = load_settings(env)
    prepare_warehouse(settings)
    load_build(settings, DAY1, 30)
    publish(settings)
    day1 = checksums(settings)
    load_build(settings, DAY2, 36)
    day2 = checksums(settings, settings.build_schema)

    holder = publish_in_subprocess(env, **{PUBLISH_PAUSE_ENV: "8"})
    # wait for the holder to say it is paused inside its publish transaction (probing the file with a
    # connection of our own could itself take the lock first and make the holder fail)
    seen = []
    for line in holder.stdout:
        seen.append(line)
        if "publish paused" in line:
            break
    assert any("publish paused" in line for line in seen), "".join(seen)[-3000:]
    with pytest.raises(WarehouseBusyError) as caught:
        publish(settings)
    message = str(caught.value)
    assert str(settings.duckdb_path) in message and "another process" in message and "one writer" in message
    out, _ = holder.communicate(timeout=120)
    assert holder.returncode == 0, "".join(seen) + out
    assert checksums(settings) == day2 != day1


@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_run_lock_rejects_a_second_run(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "postgres":
        env = warehouse_env("postgres", tmp_path, pg_url=request.getfixturevalue("pg_database"))
    else:
        env = warehouse_env("duckdb", tmp_path, duckdb_path=tmp_path / "wh.duckdb")
    settings = load_settings(env)
    # a second holder (its own PostgreSQL session / its own open file) is rejected at once, with a clear error
    with run_lock(settings), pytest.raises(WarehouseBusyError, match="not starting a second one"), \
            run_lock(settings):
        pass
    with run_lock(settings):  # released: the next run may start
        pass


@pytest.mark.postgres
def test_postgres_run_audit_and_status(pg_database: str, tmp_path: Path) -> None:
    settings = load_settings(warehouse_env("postgres", tmp_path, pg_url=pg_database))
    prepare_warehouse(settings)
    now = dt.datetime(2026, 11, 1, 1, 0)
    row = {"run_id": "scheduled__2026-10-31", "dag_id": "customer_segmentation", "task_id": "audit",
           "as_of_date": dt.date(2026, 10, 31), "try_number": 1, "status": "failed", "started_at": now,
           "ended_at": now + dt.timedelta(seconds=3), "duration_seconds": 3.0, "rows_in": 400, "rows_out": None,
           "error": "QualityGateError: Quality gate failed for suite 'analytics.segment_shares'", "recorded_at": now}
    with connect(settings) as wh:
        write_run_audit(wh, row)
        write_run_audit(wh, row)  # the same try again replaces, never duplicates
        assert wh.fetchall("select count(*), max(rows_in) from ops.run_audit")[0] == (1, 400)
    report = status_report(settings)
    assert "2026-10-31  FAILED" in report and "failed: audit: QualityGateError" in report
