"""benchmarks/bench_hospital.py --smoke runs end to end and prints every figure (engine beside SimPy, the
grid's time and its projection to 1,000 x 20, a paired check)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_hospital_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_hospital.py"), "--smoke"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert re.search(r"medtwin engine: [\d,]+ customers/s, [\d,]+ events/s", out)
    assert re.search(r"SimPy\s+: [\d,]+ customers/s", out)
    assert re.search(r"projection for 1,000 x 20: [\d,]+ s .*(met|NOT met)", out)
    low = float(re.search(r"95 % CI (-?\d+\.\d+)\.\.", out).group(1))  # type: ignore[union-attr]
    assert low > 0  # +5 % arrivals lengthen ED waits, pair by pair
