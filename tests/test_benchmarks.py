"""Every benchmark runs in the suite in its smoke mode (tiny sizes, one repeat), so that
none can rot unnoticed; `just bench` runs each of them for real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BENCHMARKS = sorted(p.name for p in (ROOT / "scripts").glob("bench_*.py"))


def test_just_bench_runs_every_benchmark():
    recipe = (ROOT / "justfile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert sorted(re.findall(r"scripts/(bench_\w+\.py)", recipe)) == BENCHMARKS


@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_runs_in_smoke_mode(script):
    result = subprocess.run(
        [sys.executable, f"scripts/{script}", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"\d", result.stdout), "it printed its figures"
