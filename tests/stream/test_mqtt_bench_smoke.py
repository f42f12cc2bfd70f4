"""benchmarks/bench_ingest.py with small sizes (--smoke): it runs end to end and prints every figure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_ingest_smoke() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTWIN_")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_ingest.py"), "--smoke"], env=env,
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"stored 2000 of 2000 \(count checked\); target >= 20,000/s: [\d.]+x the target", out), out
    if "skipped, no /usr/sbin/mosquitto" in out:
        return
    assert re.search(r"zero loss: stored 500 of 500 \(\+ 100 of 100\), 600 rows = 600 distinct keys: yes; "
                     r"acknowledged \d+ \+ \d+, of which already stored \d+ \+ \d+; quarantined 0 \+ 0", out), out
    assert re.search(r"under load .*: 10 alerts, p50 +[\d.]+ ms, p99 +[\d.]+ ms", out), out
    assert re.search(r"target p99 <= 250 ms: p99 is [\d.]+x the target", out), out
    assert "MISSING" not in out
