"""`python -m bench.run --scale 100k --warehouse duckdb` (make bench) and `--scaling` (make bench-scaling).

Every scenario runs in a fresh child process under ``nice``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import report
from bench.data import (
    CACHE_DIR,
    DATA_END,
    FULL_AS_OF,
    ORDER_SOURCES,
    PROJECT_ROOT,
    SCALES,
    ensure_data,
    generated_rows,
    landing_bytes,
)
from bench.measure import busy_warning, combine_loads, run_child
from bench.stages import run_audit_times, stage_summary, task_at, task_times, with_rss

BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _git_rev() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout

    # porcelain lines are "XY path": not stripped, or " M bench/..." would lose its first column
    dirty = [line for line in git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    if not dirty:
        return git("rev-parse", "--short", "HEAD").strip()
    # Others edit the tree while the benchmark runs: fingerprint the uncommitted diff outside bench/.
    diff = git("diff", "HEAD", "--", ".", ":(exclude)bench")
    return git("rev-parse", "--short", "HEAD").strip() + f"+dirty:{hashlib.sha1(diff.encode()).hexdigest()[:8]}"


def _airflow_env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", ""),
    }


def _airflow_template() -> Path:
    """A migrated Airflow metadata DB, made once (untimed) and copied into each run's AIRFLOW_HOME."""
    template = CACHE_DIR / "airflow-template"
    if not (template / "airflow.db").exists():
        template.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **_airflow_env(template)}
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    return template / "airflow.db"


def _reset_postgres(dbname: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'drop database if exists "{dbname}" with (force)')
        con.execute(f'create database "{dbname}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def _pipeline_env(scale: str, warehouse: str, landing: Path, work: Path) -> dict[str, str]:
    """A fresh, empty warehouse and Airflow home for this scale and warehouse."""
    shutil.rmtree(work, ignore_errors=True)
    home = work / "airflow_home"
    home.mkdir(parents=True)
    shutil.copy2(_airflow_template(), home / "airflow.db")
    (home / ".custseg-db-ready").touch()  # the CLI's marker: `airflow db migrate` was done
    env = {
        **os.environ,
        **_airflow_env(home),
        "CUSTSEG_WAREHOUSE": warehouse,
        "CUSTSEG_DATA_DIR": str(work),
        "CUSTSEG_LANDING_DIR": str(landing),
        "CUSTSEG_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "CUSTSEG_DOCS_DIR": str(work / "docs"),
    }
    if warehouse == "postgres":
        env["CUSTSEG_POSTGRES_URL"] = _reset_postgres(f"custseg_bench_{scale}")
    return env


def _run_pipeline(name: str, as_of_date: dt.date, env: dict[str, str], work: Path, log_name: str | None = None
                  ) -> dict[str, Any]:
    cmd = [str(BIN / "custseg"), "run", "--as-of", as_of_date.isoformat()]
    m = run_child(cmd, env, work / "logs" / f"{log_name or name}.log")
    tasks = run_audit_times(env["CUSTSEG_WAREHOUSE"], Path(env["CUSTSEG_DUCKDB_PATH"]),
                            env.get("CUSTSEG_POSTGRES_URL"), as_of_date)
    source = "ops.run_audit"
    if not tasks:
        tasks, source = task_times(Path(env["AIRFLOW_HOME"]) / "airflow.db", as_of_date), "airflow task_instance"
    return {**m.as_dict(), "as_of_date": as_of_date.isoformat(), "stages": stage_summary(tasks, m.wall_s),
            "stage_source": source, "peak_rss_task": task_at(tasks, m.peak_seen_at),
            "tasks": with_rss(tasks, m.rss_samples)}


def _snapshot(work: Path, env: dict[str, str]) -> Path:
    """Keep the state `full` left (warehouse, Airflow DB, model artifacts) so `nightly` can be repeated."""
    snap = work.with_name(work.name + "-snapshot")
    shutil.rmtree(snap, ignore_errors=True)
    shutil.copytree(work, snap, ignore=shutil.ignore_patterns("logs"))
    if env["CUSTSEG_WAREHOUSE"] == "postgres":
        _copy_postgres(env["CUSTSEG_POSTGRES_URL"].rsplit("/", 1)[1], _snapshot_db(env))
    return snap


def _snapshot_db(env: dict[str, str]) -> str:
    return env["CUSTSEG_POSTGRES_URL"].rsplit("/", 1)[1] + "_snapshot"


def _copy_postgres(source: str, target: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'drop database if exists "{target}" with (force)')
        con.execute(f'create database "{target}" template "{source}"')


def _restore(snap: Path, work: Path, env: dict[str, str]) -> None:
    for entry in work.iterdir():
        if entry.name != "logs":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.copytree(snap, work, dirs_exist_ok=True)
    if env["CUSTSEG_WAREHOUSE"] == "postgres":
        _copy_postgres(_snapshot_db(env), env["CUSTSEG_POSTGRES_URL"].rsplit("/", 1)[1])


def _run_nightly(as_of_date: dt.date, env: dict[str, str], work: Path, repeats: int) -> dict[str, Any]:
    """`nightly` on the warehouse `full` left, `repeats` times from that same state; attempt 1 is the figure.

    Attempt 1 is what a real night pays, so its wall, CPU and peak RSS (and its stages and tasks) are
    the scenario's, and the ratios use it. Every attempt is kept under ``attempts``; beside attempt 1
    the median and the best (lowest, column by column) of the successful attempts, ``<key>_median``
    and ``<key>_best``, show how much of a slow attempt 1 was the machine rather than the pipeline.
    The scenario's ``loadavg`` spans all attempts; each attempt has its own. The state is restored
    before attempts 2..N; attempt 1 failing fails the scenario, whatever the others did.
    """
    if repeats <= 1:
        return _run_pipeline("nightly", as_of_date, env, work)
    snap = _snapshot(work, env)
    attempts = []
    try:
        for attempt in range(repeats):
            if attempt:
                _restore(snap, work, env)
            attempts.append(_run_pipeline("nightly", as_of_date, env, work, log_name=f"nightly-{attempt + 1}"))
            load = attempts[-1]["loadavg"] or {}
            print(f"[bench]   nightly attempt {attempt + 1}: wall {attempts[-1]['wall_s']} s, "
                  f"CPU {attempts[-1]['cpu_s']} s, rc {attempts[-1]['returncode']}, "
                  f"load avg max {load.get('max', '?')}", flush=True)
    finally:
        shutil.rmtree(snap, ignore_errors=True)
        if env["CUSTSEG_WAREHOUSE"] == "postgres":
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
                con.execute(f'drop database if exists "{_snapshot_db(env)}" with (force)')
    ok = [a for a in attempts if a["returncode"] == 0]
    spread: dict[str, float | None] = {}
    for key in report.MEASURES:
        values = [a[key] for a in ok]
        spread[f"{key}_median"] = round(statistics.median(values), 2) if values else None
        spread[f"{key}_best"] = min(values) if values else None
    # every attempt's stage seconds and load too: a slow attempt is only explained by where its time went
    kept = ("wall_s", "cpu_s", "peak_rss_mb", "returncode", "stages", "loadavg")
    return {**attempts[0], **spread, "loadavg": combine_loads([a["loadavg"] for a in attempts]),
            "attempts": [{k: a[k] for k in kept} for a in attempts]}


def _run_script(module: str, landing: Path, work: Path, out_name: str, as_of_date: dt.date) -> dict[str, Any]:
    cmd = [str(BIN / "python"), "-m", module, "--landing", str(landing), "--as-of", as_of_date.isoformat(),
           "--out", str(work / out_name)]
    log = work / "logs" / f"{module.rsplit('.', 1)[-1]}.log"
    m = run_child(cmd, {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, log, cwd=PROJECT_ROOT)
    info: dict[str, Any] = {}
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            info = json.loads(line)
            break
    return {**m.as_dict(), "output": info}


def bench_one(scale: str, warehouse: str, seed: int, scenarios: list[str], full_as_of: dt.date,
              nightly_repeats: int = 1) -> report.Record:
    nightly_as_of = full_as_of + dt.timedelta(days=1)
    if nightly_as_of > DATA_END:
        raise SystemExit(f"--as-of must be before {DATA_END}: nightly needs one more landed day")
    data = ensure_data(scale, seed)
    landing = data / "landing"
    work = CACHE_DIR / f"work-{scale}-{warehouse}"
    rows = generated_rows(data)
    record: report.Record = {
        "date": dt.date.today().isoformat(),  # when the benchmark ran: a record, not a computation
        "scale": scale, "warehouse": warehouse, "seed": seed, "git": _git_rev(),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
        "as_of_date": {"full": full_as_of.isoformat(), "nightly": nightly_as_of.isoformat()},
        "nightly_repeats": nightly_repeats,
        "data": {"customers": SCALES[scale], "generated_rows": rows,
                 "order_rows_generated": sum(rows.get(s, 0) for s in ORDER_SOURCES),
                 "landing_gb": round(landing_bytes(data) / 1e9, 3)},
        "scenarios": {},
    }
    env = _pipeline_env(scale, warehouse, landing, work)
    for name in scenarios:
        print(f"[bench] {scale} {warehouse}: {name} ...", flush=True)
        if name in ("full", "nightly"):
            as_of_date = full_as_of if name == "full" else nightly_as_of
            if name == "nightly" and record["scenarios"].get("full", {}).get("returncode") != 0:
                print("[bench] nightly skipped: full did not succeed", flush=True)
                continue
            result = (_run_pipeline(name, as_of_date, env, work) if name == "full"
                      else _run_nightly(as_of_date, env, work, nightly_repeats))
        elif name in report.BASELINES:
            module = "bench." + name.replace("-", "_")  # bench.baseline_pandas, bench.baseline_polars
            result = _run_script(module, landing, work, module.rsplit(".", 1)[1] + ".csv", full_as_of)
        else:
            result = _run_script("bench.floor", landing, work, "floor.parquet", full_as_of)
        record["scenarios"][name] = result
        load = result.get("loadavg") or {}
        print(f"[bench]   wall {result['wall_s']} s, CPU {result['cpu_s']} s, peak RSS {result['peak_rss_mb']} MB, "
              f"rc {result['returncode']}, load avg min/mean/max {load.get('min', '?')}/{load.get('mean', '?')}/"
              f"{load.get('max', '?')} ({load.get('samples', 0)} samples, {os.cpu_count()} cores)", flush=True)
        if nightly_repeats > 1 and name == "nightly":
            print(f"[bench]   nightly median of the attempts: wall {result['wall_s_median']} s, "
                  f"CPU {result['cpu_s_median']} s; best: wall {result['wall_s_best']} s, "
                  f"CPU {result['cpu_s_best']} s", flush=True)
        warning = busy_warning(name, result.get("loadavg"), os.cpu_count())
        if warning:
            print(warning, flush=True)
        if name == "floor" and result.get("output", {}).get("order_rows"):
            record["data"]["order_rows"] = result["output"]["order_rows"]
    outputs = {b: record["scenarios"][b].get("output") for b in report.BASELINES if b in record["scenarios"]}
    if len(outputs) == 2 and all(outputs.values()) and len({json.dumps(o) for o in outputs.values()}) > 1:
        print(f"[bench] WARNING: the two baselines read different data: {outputs}", flush=True)
    other = report.latest(scale, "duckdb" if warehouse == "postgres" else "postgres")
    same = other is not None and other["date"] == record["date"] and report.as_of(other) == report.as_of(record)
    record["ratios"] = report.ratios(record, other if same else None)
    path = report.save(record)
    path.with_suffix(".md").write_text(report.markdown(record))
    print(f"\n{report.markdown(record)}\nresults: {path}", flush=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="100k")
    parser.add_argument("--warehouse", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=FULL_AS_OF,
                        help=f"logical date of `full` (nightly = the day after; default {FULL_AS_OF})")
    parser.add_argument("--scenarios", default=",".join(report.SCENARIOS),
                        help="comma-separated subset of " + ",".join(report.SCENARIOS) + " (default: all; "
                        "baseline-pandas and baseline-polars are the same notebook in pandas and in polars)")
    parser.add_argument("--nightly-repeats", type=int, default=1,
                        help="run `nightly` N times from the state `full` left: attempt 1 is the figure, "
                        "the median and best of the N are reported beside it (default 1)")
    parser.add_argument("--scaling", action="store_true", help="run 10k, 100k and 1m on DuckDB and compare")
    parser.add_argument("--table-only", action="store_true",
                        help="with --scaling: print the scaling table from the latest DuckDB results, run nothing")
    parser.add_argument("--render", type=Path, help="recompute ratios of a saved results JSON and rewrite its .md")
    args = parser.parse_args()
    if args.render:
        print(report.rerender(args.render))
        return 0
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(report.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    if not args.scaling:
        record = bench_one(args.scale, args.warehouse, args.seed, scenarios, args.as_of, args.nightly_repeats)
        return 0 if all(r["returncode"] == 0 for r in record["scenarios"].values()) else 1
    records = []
    for scale in ("10k", "100k", "1m"):
        if args.table_only:
            rec = report.latest(scale, "duckdb")
        else:
            rec = bench_one(scale, "duckdb", args.seed, scenarios, args.as_of, args.nightly_repeats)
        if rec is not None:
            records.append(rec)
    table = report.scaling_markdown(records)
    (report.RESULTS_DIR / f"{dt.date.today().isoformat()}-scaling-duckdb.md").write_text(table)
    print("\nScaling on DuckDB (time should grow ~linearly with orders; memory far slower):\n\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
