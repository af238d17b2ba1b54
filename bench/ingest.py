"""Measure ingestion alone: `python -m bench.ingest` loads generated landing files into a scratch
warehouse and prints rows per second and peak memory.
"""

from __future__ import annotations

import datetime as dt
import logging

from custseg.sources import load_sources
from custseg.steps.ingest import ingest_source
from custseg.warehouse import connect


def main(argv: list[str] | None = None) -> int:
    """Measure load throughput: `python -m bench.ingest --as-of D [--identity [--truth P]]`.

    Loads every source's pending partitions up to the date (a catch-up on an empty warehouse loads
    the whole history), then prints rows read per second and the process's peak memory. With
    `--truth`, the generator's `ground_truth/identities.parquet`, it also scores the identity map's
    pairwise precision and recall. Settings come from the usual environment.
    """
    import argparse
    import resource
    import time

    from custseg.config import load_settings

    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=main.__doc__)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--identity", action="store_true", help="also time identity resolution")
    parser.add_argument("--truth", help="with --identity: score the map against this identities.parquet")
    args = parser.parse_args(argv)
    if args.truth and not args.identity:
        parser.error("--truth needs --identity")
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    day = dt.date.fromisoformat(args.as_of)
    from custseg.steps.prepare import prepare_warehouse

    prepare_warehouse(settings)
    total_rows, total_s = 0, 0.0
    for name in load_sources(settings.sources_file):
        t0 = time.perf_counter()
        results = ingest_source(settings, name, day, "bench")
        took = time.perf_counter() - t0
        rows = sum(r.rows_read for r in results)
        total_rows, total_s = total_rows + rows, total_s + took
        print(f"{name:<16} {rows:>11,} rows {took:7.1f} s {rows / took:>11,.0f} rows/s")
    print(f"{'all sources':<16} {total_rows:>11,} rows {total_s:7.1f} s {total_rows / total_s:>11,.0f} rows/s "
          f"({settings.warehouse})")

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"peak memory (max RSS) after the load: {peak_mb():,.0f} MB")
    if args.identity:
        from custseg.steps.identity import resolve_identities

        t0 = time.perf_counter()
        summary = resolve_identities(settings, day)
        print(f"identity resolution: {time.perf_counter() - t0:.1f} s {summary}")
        print(f"peak memory (max RSS) after identity resolution: {peak_mb():,.0f} MB")
    if args.truth:
        from custseg.demo.truth import score_against_truth

        with connect(settings) as wh:
            key_map = wh.query_df("select key_type, key_value, customer_id from raw.identity_map")
        scores = score_against_truth(key_map, args.truth, settings.pii_salt, settings.phone_country_code)
        print(f"identity precision {scores['precision']:.4f} recall {scores['recall']:.4f} "
              f"({scores['keys']:,} keys, {scores['persons']:,} persons, {scores['customers']:,} customers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
