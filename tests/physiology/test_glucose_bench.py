"""benchmarks/bench_glucose.py --smoke: simglucose with plain-float parameters reproduces simglucose as shipped
exactly (same BG, CGM, insulin and carbohydrate histories), is faster, and every figure and the scaling table
are printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_smoke import run_benchmark  # noqa: E402


def test_bench_glucose_smoke_fair_baseline_is_identical_and_faster() -> None:
    out = run_benchmark("bench_glucose.py")
    assert "histories identical: True (21 BG samples)" in out
    stock = float(re.search(r"as shipped \(pandas parameters\): (\d+\.\d+) s", out).group(1))  # type: ignore[union-attr]
    plain = float(re.search(r"plain-float parameters \(fair baseline\): (\d+\.\d+) s", out).group(1))  # type: ignore[union-attr]
    assert plain < stock
    rows = re.findall(r"^\s+(\d+)\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+)\s+(\d+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 10]
    assert all(float(r[2]) > 0 and int(r[4]) > 0 for r in rows)  # time per patient-day, lockstep steps
    assert re.search(r"per patient-day at N = 10: medtwin \d+\.\d{3} ms; simglucose as shipped .* -> [\d,]+x .* "
                     r"plain-float \d+\.\d ms -> [\d,]+x", out)
