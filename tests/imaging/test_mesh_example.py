"""examples/imaging_models_phantom.py runs and prints figures within the acceptance (the runner for I2's imaging
example; tests/twin/test_examples.py sends the imaging_ prefix elsewhere)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest
import trimesh

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "imaging_models_phantom.py"


@pytest.mark.slow
def test_models_example_runs_within_acceptance(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), str(tmp_path)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    rows = re.findall(r"(\d\.\d) mm voxels: count volume +([-+]\d+\.\d+) %   raw-mask area +([-+]\d+\.\d+) %   "
                      r"smoothed area +([-+]\d+\.\d+) %", out)
    figures = {float(h): (float(v), float(raw), float(ours)) for h, v, raw, ours in rows}
    assert set(figures) == {0.5, 1.0, 2.0}
    for h in (0.5, 1.0):
        volume, raw, ours = figures[h]
        assert abs(volume) <= 0.5 and abs(ours) <= 2.0 and raw > 6.0
    assert "54 mm suits femoral head" in out and "25 mm suits aortic neck" in out and "not callable" in out
    dice = float(re.search(r"Dice (\d\.\d+)", out).group(1))  # type: ignore[union-attr]
    assert dice > 0.9 and "watertight True" in out
    for name in ("lesion.stl", "cranial_plate.stl"):
        assert trimesh.load(tmp_path / name).is_watertight
