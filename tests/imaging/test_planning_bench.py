"""benchmarks/bench_planning.py --smoke: our scoring matches both baselines path for path, the banded maps score
every path as the full maps do, and every figure and the scaling table are printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_smoke import run_benchmark  # noqa: E402


@pytest.mark.slow
def test_bench_planning_smoke_matches_the_baselines_and_prints_every_figure() -> None:
    out = run_benchmark("bench_planning.py")
    diff = float(re.search(r"max \|difference\| of min margin excess and risk over all paths = (\S+)", out).group(1))  # type: ignore[union-attr]
    assert diff < 1e-4
    assert re.search(r"first calls of the compiled kernels .*: \d+\.\d{3} s", out)
    assert re.search(r"banded distance maps \(reach \d+\.\d mm .* in \d+\.\d{3} s; 3 structures \+ combined margin "
                     r"map\): \d+\.\d{3} s", out)
    assert re.search(r"full distance maps \(exact everywhere, for reference\): \d+\.\d{3} s", out)
    assert "banded scores identical to the full maps' for every path (risk, min margin excess, admissible): True" in out
    assert re.search(r"total, banded distance maps \+ scoring: \d+\.\d{3} s \(target <= 1 s\)", out)
    assert re.search(r"scoring 60 entries x 20 targets = 1,200 paths, [\d,]+ samples at <= 0.5 mm: \d+\.\d{3} s", out)
    assert re.search(r"baseline, per-path map_coordinates loop: \d+\.\d{3} s", out)
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+([\d,]+)\s+(\d+\.\d{3})\s+(\d+\.\d{2})\s+(\d+\.\d)$", out, re.M)
    assert [(int(r[0]), int(r[1])) for r in rows] == [(25, 8), (60, 20)]
    assert re.search(r"meshing a 64\^3 label map \(3 labels.*\d+\.\d{3} s \(target <= 2 s\); [\d,]+ triangles, all watertight: True", out)
