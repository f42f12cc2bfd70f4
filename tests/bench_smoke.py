"""Run a benchmark script's smoke mode in a fresh interpreter (as CI does) and return what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, timeout_s: float = 600) -> str:
    """``benchmarks/<script> --smoke <args>``; fails the test with its output unless it exits 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke", *args], env=env,
                            capture_output=True, text=True, timeout=timeout_s, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout
