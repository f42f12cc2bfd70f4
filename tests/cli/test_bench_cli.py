"""benchmarks/bench_cli.py --quick runs end to end: every command it times succeeds (it stops on a failing
one) and each figure is printed with its baseline and target. No timing is asserted here (the machine is
shared); the figures live in the benchmark."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cli.py"


@pytest.mark.slow
def test_bench_cli_quick(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(BENCH), "--quick"])
    runpy.run_path(str(BENCH), run_name="__main__")  # each timed command is its own process; a failing one exits
    out = capsys.readouterr().out
    number = r"[\d.]+ s median"
    assert re.search(rf"baseline: python -c pass +{number}", out), out
    assert re.search(rf"medtwin --help +{number} .*target <= 0.5 s: [\d.]+x the target", out), out
    assert re.search(rf"medtwin drug pgx small.vcf +{number} .*target <= 1.5 s: [\d.]+x the target", out), out
    for label in ("medtwin drug --help", "medtwin drug warfarin-dose", "medtwin glucose --help",
                  "import medtwin.api.app"):
        assert label in out, out
