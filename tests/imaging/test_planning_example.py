"""examples/imaging_plan_* run (the runner for the imaging planning examples; tests/twin/test_examples.py
sends the imaging_ prefix elsewhere)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("imaging_plan_*.py")), ids=lambda p: p.name)
def test_planning_examples_run(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    ranks = re.findall(r"#(\d+): risk (\d\.\d{3}), nearest \w+ (\d+\.\d) mm", out)
    assert [int(r[0]) for r in ranks] == [1, 2, 3, 4, 5] and all(float(r[2]) >= 2.0 for r in ranks)
    assert "in hippocampus" in out and "FHIR Procedure (preparation)" in out
