"""benchmarks/bench_pgx.py --smoke runs end to end: the call on a generated genome-like gzip VCF equals the
call on the pharmacogene lines alone (the script exits non-zero otherwise) and every figure is printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_pgx_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_pgx.py"), "--smoke"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.search(r"call_pgx .*: \d+\.\d+ s for 50,000 records", result.stdout)
    assert re.search(r"baseline .*: \d+\.\d+ s \(5\d\d pharmacogene records kept\)", result.stdout)
    assert "CYP2D6 *3/*4" in result.stdout and "SLCO1B1 *5/*15" in result.stdout
