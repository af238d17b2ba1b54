"""Profile one Python stage of the pipeline (score, audit, validate_raw) with cProfile.

Runs the stage's own function from ``custseg.steps`` on a *copy* of a benchmark warehouse
(DuckDB), so the benchmark's warehouse is left as it was::

    python -m bench.profile_stage --scale 1m --stage score --as-of 2026-11-01

Writes the top functions by cumulative time to ``bench/results/<date>-<scale>-duckdb-<stage>-profile.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import shutil
import time

from bench.data import CACHE_DIR, RESULTS_DIR, data_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--stage", choices=("score", "audit", "validate_raw"), default="score")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--refit", action="store_true",
                        help="score: empty the copy's model registry first, so score fits as `full` does")
    args = parser.parse_args()
    work = CACHE_DIR / f"work-{args.scale}-duckdb"
    copy = CACHE_DIR / f"profile-{args.scale}"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    shutil.copy2(work / "warehouse.duckdb", copy / "warehouse.duckdb")
    os.environ.update(CUSTSEG_WAREHOUSE="duckdb", CUSTSEG_DUCKDB_PATH=str(copy / "warehouse.duckdb"),
                      CUSTSEG_DATA_DIR=str(copy), CUSTSEG_DOCS_DIR=str(copy / "docs"),
                      CUSTSEG_LANDING_DIR=str(data_dir(args.scale, args.seed) / "landing"))

    from custseg.config import load_settings
    from custseg.steps.quality import audit, validate_raw
    from custseg.steps.score import score

    settings = load_settings()
    if args.refit:
        import duckdb

        with duckdb.connect(str(copy / "warehouse.duckdb")) as con:
            con.execute("delete from ml.model_runs")
    stage = {"score": score, "audit": audit, "validate_raw": validate_raw}[args.stage]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(stage, settings, args.as_of, f"profile__{args.as_of}")
    wall = time.perf_counter() - started
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("cumulative")
    stats.print_stats(args.top)
    out = RESULTS_DIR / f"{dt.date.today().isoformat()}-{args.scale}-duckdb-{args.stage}-profile.txt"
    out.write_text(f"{args.stage} as of {args.as_of} on {args.scale}: {wall:.1f} s under cProfile\n\n{text.getvalue()}")
    print(out.read_text()[:6000])
    shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    main()
