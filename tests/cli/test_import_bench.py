"""benchmarks/bench_import.py --smoke: the whole-process ``medtwin import`` of one shared Synthea patient (its
files plus the shared organisation/practitioner files) stores exactly what the in-process import of the same
files stores, and its rate is printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_smoke import run_benchmark  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "synthea-r4"


@pytest.mark.skipif(not DATA.is_dir(), reason="the shared Synthea sample is not on this machine")
def test_bench_import_smoke_whole_process_matches_in_process() -> None:
    out = run_benchmark("bench_import.py")
    in_process = re.search(r"in-process import of the same files: (\d+) resources", out)
    whole = re.search(r"1 patient\(s\),\s+3 files:\s+(\d+) resources in\s+(\d+\.\d\d) s =\s+(\d+) resources/s",
                      out)
    assert in_process and whole
    assert int(whole.group(1)) == int(in_process.group(1)) > 100
    count, seconds, rate = int(whole.group(1)), float(whole.group(2)), int(whole.group(3))
    assert seconds > 0.1  # a new interpreter, imports and migrations cannot take less
    assert abs(rate - count / seconds) <= 0.02 * rate  # seconds are printed to 2 decimals
