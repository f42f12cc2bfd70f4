"""benchmarks/bench_imaging_import.py --smoke runs and prints its figures (a small series)."""

from __future__ import annotations

from tests.bench_smoke import run_benchmark


def test_import_benchmark_smoke() -> None:
    out = run_benchmark("bench_imaging_import.py")
    stored = float(out.split("% of raw)")[0].rsplit("(", 1)[1])
    error = float(out.split("largest position error ")[1].split(" mm")[0])
    assert 0 < stored < 100 and error < 1e-3
