"""benchmarks/bench_pk.py --smoke runs every part at toy sizes: the fair baseline (one vectorised solve_ivp),
medtwin's batched ODE, the LSODA loop, each within matched accuracy of the closed form, and the scaling tables."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_smoke import run_benchmark  # noqa: E402


def test_bench_pk_smoke_prints_fair_baseline_errors_and_scaling() -> None:
    out = run_benchmark("bench_pk.py")
    errors = [float(e) for e in re.findall(r"max rel\. error vs closed\s+form (\d\.\d+e[-+]\d+)", out)]
    assert len(errors) == 3  # vectorised solve_ivp (all), medtwin ODE, vectorised solve_ivp (ODE subset)
    assert all(e < 1e-5 for e in errors)  # matched accuracy: rtol 1e-6 solvers against the exact solution
    loop = re.search(r"agreement with baseline: max relative difference (\S+)", out)
    assert loop and float(loop.group(1)) < 1e-6
    assert re.search(r"closed form vs vectorised solve_ivp: \d+\.\dx", out)
    assert re.search(r"medtwin batched ODE vs vectorised solve_ivp \(200 subjects\): \d+\.\d\dx", out)
    for title in ("medtwin closed form", "medtwin batched ODE", "scipy solve_ivp vectorised"):
        table = out.split(f"scaling: {title}")[1]
        rows = re.findall(r"^\s+(\d+)\s+\d+\.\d{3}\s+\d+\.\d{4}\s+(\d+\.\d)$", table, re.M)[:3]
        assert [int(n) for n, _ in rows] == [1, 10, 100]
        assert float(rows[2][1]) > 0.0  # 100 subjects x 2 days of state: a traced peak of a few hundred KiB
