"""benchmarks/bench_cli.py --quick runs end to end: every command it times succeeds (it stops on a failing
one) and each figure is printed with its baseline and target. No timing is asserted here (the machine is
shared); the figures live in the benchmark."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_cli_quick() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTWIN_")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_cli.py"), "--quick"], env=env,
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    number = r"[\d.]+ s median"
    assert re.search(rf"baseline: python -c pass +{number}", out), out
    assert re.search(rf"medtwin --help +{number} .*target <= 0.5 s: [\d.]+x the target", out), out
    assert re.search(rf"medtwin drug pgx small.vcf +{number} .*target <= 1.5 s: [\d.]+x the target", out), out
    for label in ("medtwin drug --help", "medtwin drug warfarin-dose", "medtwin glucose --help",
                  "import medtwin.api.app"):
        assert label in out, out
