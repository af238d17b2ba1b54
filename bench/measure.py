"""Run one scenario in a fresh child process and measure wall time, CPU time and peak RSS."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NICE = 5
SAMPLE_SECONDS = 0.5


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

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def as_dict(self) -> dict[str, float | int]:
        values = asdict(self)
        values.pop("rss_samples")
        return {**values, "cpu_s": round(self.cpu_s, 2)}


def run_child(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Measurement:
    """Run ``cmd`` under ``nice``; rusage comes from ``wait4`` on that child alone.

    ``wait4`` reports the child plus every descendant it waited for; ``ru_maxrss`` is the peak
    RSS of the largest of them (Linux: KiB). Output goes to ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(["nice", "-n", str(NICE), *cmd], env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT)
        sampled_peak, sampled_at = 0.0, ""
        samples: list[tuple[str, float]] = []
        while True:
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
