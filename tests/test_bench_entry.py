"""`make bench`'s entry points import and parse their command lines (the scale runs themselves are not in the suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["bench.run", "bench.uplift_coverage", "bench.profile_stage"])
def test_the_bench_commands_start(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage:" in result.stdout
