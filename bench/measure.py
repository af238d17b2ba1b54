"""Run one scenario in a fresh child process and measure wall time, CPU time, peak RSS and the machine's load."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NICE = 5
SAMPLE_SECONDS = 0.5
#: how often the 1-minute load average is read while a child runs (it is itself a moving average,
#: updated by the kernel every 5 s, and it counts the child's own runnable threads too)
LOAD_SAMPLE_SECONDS = 2.0


@dataclass(frozen=True)
class Measurement:
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    returncode: int
    peak_seen_at: str = ""  # UTC time of the highest sampled RSS of the child process itself
    # (UTC "YYYY-MM-DD HH:MM:SS.ffffff", RSS MB) of the child itself, every SAMPLE_SECONDS: shows
    # which task raised the RSS and which left it high for the next ones.
    rss_samples: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    # the machine's 1-minute load average, every LOAD_SAMPLE_SECONDS while the child ran
    load_samples: tuple[float, ...] = field(default=(), repr=False)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("rss_samples")
        values.pop("load_samples")
        return {**values, "cpu_s": round(self.cpu_s, 2), "loadavg": load_summary(self.load_samples)}


def load_summary(samples: tuple[float, ...] | list[float]) -> dict[str, Any] | None:
    """min / mean / max of load-average samples, and how many there were (None without any)."""
    if not samples:
        return None
    return {"min": round(min(samples), 2), "mean": round(statistics.fmean(samples), 2),
            "max": round(max(samples), 2), "samples": len(samples)}


def combine_loads(summaries: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One load summary over several runs (e.g. every nightly attempt), the mean weighted by samples."""
    parts = [s for s in summaries if s and s.get("samples")]
    if not parts:
        return None
    n = sum(s["samples"] for s in parts)
    return {"min": min(s["min"] for s in parts), "mean": round(sum(s["mean"] * s["samples"] for s in parts) / n, 2),
            "max": max(s["max"] for s in parts), "samples": n}


def busy_warning(scenario: str, load: dict[str, Any] | None, cpus: int | None) -> str | None:
    """The warning to print when the load average went above the machine's cores during ``scenario``."""
    if not load or not cpus or load["max"] <= cpus:
        return None
    return (f"[bench] WARNING: load average {load['max']} exceeded the {cpus} cores during {scenario}: "
            "figures are not from a quiet machine")


def run_child(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Measurement:
    """Run ``cmd`` under ``nice``; rusage comes from ``wait4`` on that child alone.

    ``wait4`` reports the child plus every descendant it waited for; ``ru_maxrss`` is the peak
    RSS of the largest of them (Linux: KiB). Output goes to ``log``. The load average is read at the
    start and every LOAD_SAMPLE_SECONDS until the child exits.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(["nice", "-n", str(NICE), *cmd], env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT)
        sampled_peak, sampled_at = 0.0, ""
        samples: list[tuple[str, float]] = []
        loads: list[float] = []
        while True:
            if time.perf_counter() - started >= len(loads) * LOAD_SAMPLE_SECONDS:
                loads.append(os.getloadavg()[0])
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_mb(proc.pid)
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            samples.append((now, rss))
            if rss > sampled_peak:
                sampled_peak, sampled_at = rss, now[:19]
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        wall_s=round(wall, 2),
        user_s=round(usage.ru_utime, 2),
        sys_s=round(usage.ru_stime, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
        returncode=proc.returncode,
        peak_seen_at=sampled_at,
        rss_samples=tuple(samples),
        load_samples=tuple(loads),
    )


def _rss_mb(pid: int) -> float:
    """Current RSS of one process (sampled to find *when* the peak happens; the peak itself is ru_maxrss)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
