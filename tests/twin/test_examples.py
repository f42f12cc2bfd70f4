"""Every script in examples/ runs in the tests: record_* here, glucose_* in tests/physiology, drug_* in
tests/pharmaco. A new example with another prefix fails here until it gets a runner."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_ELSEWHERE = ("glucose_", "drug_", "imaging_")  # imaging_plan_*: tests/imaging/test_planning_example.py


def test_every_example_has_a_runner() -> None:
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert scripts
    orphans = [s.name for s in scripts if not s.name.startswith(("record_", *RUN_ELSEWHERE))]
    assert orphans == []


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("record_*.py")), ids=lambda p: p.name)
def test_record_examples_run(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "imported: {'created':" in out and "exported" in out and "twin v1" in out
