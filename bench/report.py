"""Results: one JSON record per scale and warehouse, and Markdown tables with the ratios."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.data import RESULTS_DIR
from bench.measure import LOAD_SAMPLE_SECONDS
from bench.stages import STAGES

SCENARIOS: tuple[str, ...] = ("full", "nightly", "baseline-pandas", "baseline-polars", "floor")
BASELINES: tuple[str, ...] = ("baseline-pandas", "baseline-polars")
#: what a repeated scenario reports as attempt 1, median and best (lowest) of its attempts
MEASURES: tuple[str, ...] = ("wall_s", "cpu_s", "peak_rss_mb")
Record = dict[str, Any]


def _value(record: Record, scenario: str, key: str = "wall_s") -> float | None:
    result = record.get("scenarios", {}).get(scenario)
    if not result or result.get("returncode") != 0:
        return None
    return float(result[key])


def spread(result: Record) -> dict[str, Any] | None:
    """Median and best (lowest, column by column) of wall, CPU and peak RSS over a repeated scenario's
    successful attempts: the saved ``<key>_median`` / ``<key>_best`` fields, or, in records made before
    they were saved, computed from ``attempts``. None when the scenario ran once."""
    attempts = result.get("attempts") or []
    if len(attempts) < 2:
        return None
    ok = [a for a in attempts if a.get("returncode") == 0]
    out: dict[str, Any] = {"n": len(attempts), "ok": len(ok), "median": {}, "best": {}}
    for key in MEASURES:
        values = [a[key] for a in ok if a.get(key) is not None]
        out["median"][key] = result.get(f"{key}_median", round(statistics.median(values), 2) if values else None)
        out["best"][key] = result.get(f"{key}_best", min(values) if values else None)
    return out


def legacy_fastest(result: Record) -> bool:
    """A record from before attempt 1 was the figure: its repeated `nightly` is the fastest attempt."""
    return bool(result.get("attempts")) and "wall_s_median" not in result


def _median(record: Record, scenario: str, key: str = "wall_s") -> float | None:
    result = record.get("scenarios", {}).get(scenario)
    if not result or result.get("returncode") != 0:
        return None
    s = spread(result)
    return None if s is None or s["median"][key] is None else float(s["median"][key])


def as_of(record: Record) -> dict[str, str] | None:
    """The as-of dates of `full` and `nightly` (records before 2026-12 called the field ``as_of``)."""
    return record.get("as_of_date") or record.get("as_of")


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(record: Record, other_warehouse: Record | None = None) -> dict[str, float | None]:
    """Wall-time ratios (the issue's headline) and the same on CPU seconds of the child process,
    which a busy shared machine distorts less (on PostgreSQL the server's CPU is not included).

    `nightly` is its attempt 1, what a real night pays; when it was repeated (--nightly-repeats) the
    `nightly median` ratios beside it use the median of the attempts."""
    out: dict[str, float | None] = {}
    for unit, key in (("wall", "wall_s"), ("CPU", "cpu_s")):
        full, nightly = _value(record, "full", key), _value(record, "nightly", key)
        median = _median(record, "nightly", key)
        out[f"full/floor ({unit})"] = _ratio(full, _value(record, "floor", key))
        out[f"nightly/full ({unit})"] = _ratio(nightly, full)
        if median is not None:
            out[f"nightly median/full ({unit})"] = _ratio(median, full)
        for base in BASELINES:
            out[f"full/{base} ({unit})"] = _ratio(full, _value(record, base, key))
        for base in BASELINES:
            out[f"nightly/{base} ({unit})"] = _ratio(nightly, _value(record, base, key))
            if median is not None:
                out[f"nightly median/{base} ({unit})"] = _ratio(median, _value(record, base, key))
    if other_warehouse is not None:
        pg, duck = (record, other_warehouse) if record["warehouse"] == "postgres" else (other_warehouse, record)
        for scenario in ("full", "nightly"):
            out[f"postgres/duckdb {scenario} (wall)"] = _ratio(_value(pg, scenario), _value(duck, scenario))
        pg_median, duck_median = _median(pg, "nightly"), _median(duck, "nightly")
        if pg_median is not None and duck_median is not None:
            out["postgres/duckdb nightly median (wall)"] = _ratio(pg_median, duck_median)
    return out


def rerender(path: Path) -> str:
    """Recompute the ratios of a saved record (e.g. after the other warehouse ran) and rewrite its .md."""
    record = json.loads(path.read_text())
    other = latest(record["scale"], "duckdb" if record["warehouse"] == "postgres" else "postgres")
    same = other is not None and other["date"] == record["date"] and as_of(other) == as_of(record)
    record["ratios"] = ratios(record, other if same else None)  # as bench_one: same day, same as-of dates
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    text = markdown(record)
    path.with_suffix(".md").write_text(text)
    return text


def latest(scale: str, warehouse: str) -> Record | None:
    files = sorted(RESULTS_DIR.glob(f"*-{scale}-{warehouse}.json"))
    return json.loads(files[-1].read_text()) if files else None


def save(record: Record) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{record['date']}-{record['scale']}-{record['warehouse']}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _load(result: Record) -> str:
    load = result.get("loadavg")  # absent in records made before it was sampled
    return "–" if not load else f"{load['min']:.1f} / {load['mean']:.1f} / {load['max']:.1f}"


def _ratio_lines(values: dict[str, float | None]) -> list[str]:
    """The ratios as one row per ratio, wall and CPU side by side."""
    rows: dict[str, dict[str, float | None]] = {}
    for key, value in values.items():
        name, _, unit = key.rpartition(" (")
        unit = unit.rstrip(")")
        if not name or unit not in ("wall", "CPU"):
            name, unit = key, "wall"
        rows.setdefault(name, {})[unit] = value
    return ["", "| ratio | wall | CPU |", "|---|---:|---:|",
            *(f"| {name} | {_fmt(v.get('wall'), 2)} | {_fmt(v.get('CPU'), 2)} |" for name, v in rows.items())]


def markdown(record: Record) -> str:
    order_rows = record["data"].get("order_rows")  # counted by the floor scenario, when it ran
    full_as_of = (as_of(record) or {}).get("full", "?")
    lines = [
        f"### {record['scale']} customers on {record['warehouse']} ({record['date']}, commit {record['git']})",
        "",
        f"Order rows read (as of {full_as_of}): {f'{order_rows:,}' if order_rows else '?'}; "
        f"landing files {record['data']['landing_gb']:.2f} GB.",
        "",
        "| scenario | wall s | CPU s | CPU/wall | peak RSS MB | load avg min / mean / max | ok |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in SCENARIOS:
        r = record["scenarios"].get(name)
        if r is None:
            continue
        s = spread(r)
        label = name if s is None else f"{name} ({'fastest' if legacy_fastest(r) else 'attempt 1'} of {s['n']})"
        lines.append(f"| {label} | {_fmt(r['wall_s'])} | {_fmt(r['cpu_s'])} | {_fmt(r['cpu_s'] / r['wall_s'], 2)} "
                     f"| {_fmt(r['peak_rss_mb'], 0)} | {_load(r)} | {'yes' if r['returncode'] == 0 else 'FAILED'} |")
        for stat in ("median", "best") if s else ():
            v = s[stat]
            per_wall = v["cpu_s"] / v["wall_s"] if v["cpu_s"] is not None and v["wall_s"] else None
            lines.append(f"| {name} ({stat} of {s['ok']} ok attempts) | {_fmt(v['wall_s'])} | {_fmt(v['cpu_s'])} "
                         f"| {_fmt(per_wall, 2)} | {_fmt(v['peak_rss_mb'], 0)} | | |")
    lines += _load_lines(record)
    peaks = [f"{n}: `{record['scenarios'][n]['peak_rss_task']}`" for n in ("full", "nightly")
             if record["scenarios"].get(n, {}).get("peak_rss_task")]
    if peaks:
        lines += ["", "Task running when the sampled RSS peaked: " + "; ".join(peaks) + "."]
    lines += _memory_lines(record)
    nightly = record["scenarios"].get("nightly", {})
    attempts = nightly.get("attempts")
    if attempts:
        walls = ", ".join(_fmt(a["wall_s"]) for a in attempts)
        if legacy_fastest(nightly):
            lines += ["", f"`nightly` is the fastest of {len(attempts)} attempts from the state `full` left "
                          f"(wall s: {walls}); this record predates attempt 1 as the figure, so its `nightly` "
                          "ratios are on the fastest attempt."]
        else:
            loads = ", ".join(_fmt((a.get("loadavg") or {}).get("max")) for a in attempts)
            lines += ["", f"`nightly` is attempt 1 of {len(attempts)} from the state `full` left: what a night "
                          "pays. The median and the best (the lowest of each column) of the successful attempts "
                          f"are beside it. Wall s of each attempt: {walls}; highest load average of each: {loads}."]
    lines += _ratio_lines(record["ratios"])
    stage_runs = [n for n in ("full", "nightly") if record["scenarios"].get(n, {}).get("stages")]
    if stage_runs:
        extra = ("outside_tasks", "task_span", "dbt_tasks")
        seen = [k for n in stage_runs for k in record["scenarios"][n]["stages"]]
        others = [k for k in dict.fromkeys(seen) if k not in STAGES and k not in extra]
        lines += ["", "| stage (s) | " + " | ".join(stage_runs) + " |", "|---|" + "---:|" * len(stage_runs)]
        for stage in (*STAGES, *others, *extra):
            vals = [record["scenarios"][n]["stages"].get(stage) for n in stage_runs]
            lines.append(f"| {stage} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def busy_scenarios(record: Record) -> list[str]:
    """The scenarios during which the load average went above the machine's cores."""
    cpus = record.get("machine", {}).get("cpus")
    return [name for name, r in record["scenarios"].items()
            if cpus and (r.get("loadavg") or {}).get("max", 0) > cpus]


def _load_lines(record: Record) -> list[str]:
    machine = record.get("machine", {})
    before = machine.get("loadavg_before")
    lines = ["", f"Machine: {machine.get('cpus', '?')} cores; 1-minute load average before the run "
                 f"{_fmt(before[0] if before else None, 2)}, and during each scenario (sampled every "
                 f"{LOAD_SAMPLE_SECONDS:g} s; "
                 "it counts the scenario's own busy threads too) in the table."]
    busy = busy_scenarios(record)
    if busy:
        lines += ["", f"**Warning:** the load average exceeded the {machine['cpus']} cores during "
                      f"{', '.join(busy)}: those figures are not from a quiet machine."]
    return lines


def _memory_lines(record: Record, top: int = 6) -> list[str]:
    """The tasks that raised the sampled RSS most in `full`: start, peak and end MB of each."""
    tasks = [t for t in record["scenarios"].get("full", {}).get("tasks", []) if "rss_peak_mb" in t]
    if not tasks:
        return []
    tasks = sorted(tasks, key=lambda t: t["rss_peak_mb"] - t["rss_start_mb"], reverse=True)[:top]
    lines = ["", "| `full` task (largest RSS rise) | RSS at start MB | peak MB | at end MB |", "|---|---:|---:|---:|"]
    lines += [f"| {t['task_id']} | {t['rss_start_mb']:,} | {t['rss_peak_mb']:,} | {t['rss_end_mb']:,} |" for t in tasks]
    return lines


def _per_million(value: float | None, rows: int) -> float | None:
    return value / rows * 1e6 if value and rows else None


def scaling_markdown(records: list[Record]) -> str:
    lines = [
        "| scale | order rows | full s | full CPU s | full peak MB | nightly s | nightly CPU s | nightly peak MB "
        "| floor s | baseline-pandas s | baseline-polars s | full CPU s per 1M orders | full MB per 1M orders |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in records:
        s = rec["scenarios"]
        rows = rec["data"].get("order_rows") or 0

        def get(name: str, key: str, sc: dict[str, Record] = s) -> float | None:
            return sc.get(name, {}).get(key)

        full, rss = get("full", "wall_s"), get("full", "peak_rss_mb")
        lines.append(
            f"| {rec['scale']} | {rows:,} | {_fmt(full)} | {_fmt(get('full', 'cpu_s'))} | {_fmt(rss, 0)} "
            f"| {_fmt(get('nightly', 'wall_s'))} | {_fmt(get('nightly', 'cpu_s'))} "
            f"| {_fmt(get('nightly', 'peak_rss_mb'), 0)} | {_fmt(get('floor', 'wall_s'))} "
            f"| {_fmt(get('baseline-pandas', 'wall_s'))} | {_fmt(get('baseline-polars', 'wall_s'))} "
            f"| {_fmt(_per_million(get('full', 'cpu_s'), rows))} "
            f"| {_fmt(_per_million(rss, rows), 0)} |"
        )
    return "\n".join(lines) + "\n"
