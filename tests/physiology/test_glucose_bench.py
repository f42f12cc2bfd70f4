"""benchmarks/bench_glucose.py --smoke: simglucose with plain-float parameters reproduces simglucose as shipped
exactly (same BG, CGM, insulin and carbohydrate histories), is faster, and every figure and the scaling table
are printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_smoke import run_benchmark  # noqa: E402


@pytest.mark.slow  # ~15 s: it compiles the engine once from an empty cache to report the cold compile time
def test_bench_glucose_smoke_fair_baseline_is_identical_and_faster() -> None:
    out = run_benchmark("bench_glucose.py")
    assert "histories identical: True (21 BG samples)" in out
    stock = float(re.search(r"as shipped \(pandas parameters\): (\d+\.\d+) s", out).group(1))  # type: ignore[union-attr]
    plain = float(re.search(r"plain-float parameters \(fair baseline\): (\d+\.\d+) s", out).group(1))  # type: ignore[union-attr]
    assert plain < stock
    cold = re.search(r"cold \(empty numba cache, compiles\) (\d+\.\d) s; warm \(cache loaded\) (\d+\.\d+) s", out)
    assert cold and float(cold.group(1)) > float(cold.group(2))  # the cache saves the compile
    rows = re.findall(r"^\s+(\d+)\s+(\d+\.\d{3})\s+(\d+\.\d{4})\s+([\d,]+)\s+(\d+\.\d{4})\s+([\d,]+)\s+(\d+)"
                      r"\s+(\d+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 10]
    # time and core time per patient-day, steps of a patient
    assert all(float(r[2]) > 0 and float(r[4]) > 0 and int(r[7]) > 0 for r in rows)
    threads = re.search(r"5-min CGM output only, (\d+) thread\(s\)", out)
    assert threads and int(threads.group(1)) >= 1  # the table says how many cores it used
    assert re.search(rf"per patient-day at N = 10: medtwin \d+\.\d{{4}} ms on {threads.group(1)} thread\(s\) "
                     r"\(of \d+ cores.*\); simglucose as shipped .* -> [\d,]+x; plain-float \d+\.\d ms -> [\d,]+x", out)
    assert re.search(r"per core: one thread \d+\.\d{4} ms -> [\d,]+x plain-float \(wall\); CPU \d+\.\d{4} core-ms "
                     r"vs simglucose \d+\.\d ms CPU -> [\d,]+x", out)
    ratio = re.search(r"N = 10 batch vs the same 10 patients at N = 1: .* -> (\d+\.\d\d) \(aim <= 1\)", out)
    assert ratio and float(ratio.group(1)) > 0
    assert re.search(r"memory run: 20 patient-days .* \(13, 20\): .* peak \d+\.\d\d GiB", out)
    assert re.search(r"public path \(run_scenario, every state every minute\): best \d+\.\d\d ms", out)
