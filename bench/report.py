"""Results: one JSON record per scale and warehouse, and Markdown tables with the ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.data import RESULTS_DIR
from bench.stages import STAGES

SCENARIOS: tuple[str, ...] = ("full", "nightly", "baseline-pandas", "floor")
Record = dict[str, Any]


def _wall(record: Record, scenario: str, key: str = "wall_s") -> float | None:
    result = record.get("scenarios", {}).get(scenario)
    if not result or result.get("returncode") != 0:
        return None
    return float(result[key])


def _cpu(record: Record, scenario: str) -> float | None:
    return _wall(record, scenario, "cpu_s")


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(record: Record, other_warehouse: Record | None = None) -> dict[str, float | None]:
    """Wall-time ratios (the issue's headline) and the same on CPU seconds of the child process,
    which a busy shared machine distorts less (on PostgreSQL the server's CPU is not included)."""
    out: dict[str, float | None] = {}
    for unit, get in (("wall", _wall), ("CPU", _cpu)):
        full = get(record, "full")
        out[f"full/floor ({unit})"] = _ratio(full, get(record, "floor"))
        out[f"nightly/full ({unit})"] = _ratio(get(record, "nightly"), full)
        out[f"full/baseline-pandas ({unit})"] = _ratio(full, get(record, "baseline-pandas"))
    if other_warehouse is not None:
        pg, duck = (record, other_warehouse) if record["warehouse"] == "postgres" else (other_warehouse, record)
        for scenario in ("full", "nightly"):
            out[f"postgres/duckdb {scenario} (wall)"] = _ratio(_wall(pg, scenario), _wall(duck, scenario))
    return out


def rerender(path: Path) -> str:
    """Recompute the ratios of a saved record (e.g. after the other warehouse ran) and rewrite its .md."""
    record = json.loads(path.read_text())
    other = latest(record["scale"], "duckdb" if record["warehouse"] == "postgres" else "postgres")
    record["ratios"] = ratios(record, other if other and other["as_of_date"] == record["as_of_date"] else None)
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


def markdown(record: Record) -> str:
    order_rows = record["data"].get("order_rows")  # counted by the floor scenario, when it ran
    lines = [
        f"### {record['scale']} customers on {record['warehouse']} ({record['date']}, commit {record['git']})",
        "",
        f"Order rows read (as of {record['as_of_date']['full']}): {f'{order_rows:,}' if order_rows else '?'}; "
        f"landing files {record['data']['landing_gb']:.2f} GB.",
        "",
        "| scenario | wall s | CPU s | CPU/wall | peak RSS MB | ok |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in SCENARIOS:
        r = record["scenarios"].get(name)
        if r is None:
            continue
        lines.append(f"| {name} | {_fmt(r['wall_s'])} | {_fmt(r['cpu_s'])} | {_fmt(r['cpu_s'] / r['wall_s'], 2)} "
                     f"| {_fmt(r['peak_rss_mb'], 0)} | {'yes' if r['returncode'] == 0 else 'FAILED'} |")
    peaks = [f"{n}: `{record['scenarios'][n]['peak_rss_task']}`" for n in ("full", "nightly")
             if record["scenarios"].get(n, {}).get("peak_rss_task")]
    if peaks:
        lines += ["", "Task running when the sampled RSS peaked: " + "; ".join(peaks) + "."]
    lines += _memory_lines(record)
    attempts = record["scenarios"].get("nightly", {}).get("attempts")
    if attempts:
        walls = ", ".join(_fmt(a["wall_s"]) for a in attempts)
        lines += ["", f"`nightly` is the fastest of {len(attempts)} attempts from the state `full` left "
                      f"(wall s: {walls})."]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {_fmt(v, 2)} |" for k, v in record["ratios"].items()]
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
        "| floor s | baseline s | full CPU s per 1M orders | full MB per 1M orders |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"| {_fmt(get('baseline-pandas', 'wall_s'))} | {_fmt(_per_million(get('full', 'cpu_s'), rows))} "
            f"| {_fmt(_per_million(rss, rows), 0)} |"
        )
    return "\n".join(lines) + "\n"
