"""examples/imaging_import_ct.py runs (tests/twin/test_examples.py leaves imaging_* examples to their areas)."""

from __future__ import annotations

import runpy
import warnings
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imaging_import_ct.py"


def test_import_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's notes on value lengths
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "re-import: created=False (same volume id: True)" in out
    error = float(out.split("largest position error ")[1].split(" mm")[0])
    assert error < 1e-3
    millilitres = float(out.split("sphere: ")[1].split(" mL")[0])
    assert millilitres == pytest.approx(4.18879, rel=0.05)  # 4/3 pi (10 mm)^3, voxelised
    assert "de-identified DICOM export: 40 files" in out
