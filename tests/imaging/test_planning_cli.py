"""``medtwin imaging plan``: a NIfTI label map in, ranked trajectories and exports out; bad input names the file
and the field with a non-zero exit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.imaging import phantoms as ph
from medtwin.imaging.nifti import write_nifti
from medtwin.imaging.plan_labels import plan_on_labels
from medtwin.imaging.planning import Limits


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    g = ph.grid((40, 36, 40), (1.0, 1.0, 1.0), origin_mm=(-20.0, -18.0, -20.0))
    labels = ph.label_volume([(ph.Ellipsoid([0, 0, 0], [18, 16, 18]), 1),
                              (ph.Tube(np.array([[-3.0, -20.0, 6.0], [-3.0, 20.0, 6.0]]), 1.5), 2),
                              (ph.Sphere([0.0, 0.0, -7.0], 2.5), 3)], g, names={1: "head", 2: "vessel", 3: "target"})
    path = tmp_path_factory.mktemp("plan-cli") / "labels.nii.gz"
    path.write_bytes(write_nifti(labels))
    return path


def test_plan_prints_the_ranking_and_writes_the_exports(labels_file: Path, tmp_path: Path) -> None:
    out_csv, out_mrk = tmp_path / "plan.csv", tmp_path / "plan.mrk.json"
    r = CliRunner().invoke(app, ["imaging", "plan", str(labels_file), "--target", "3", "--critical", "2:2",
                                 "--top", "3", "--csv", str(out_csv), "--markups", str(out_mrk), "--frame", "LPS",
                                 "--json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.output)
    from medtwin.twin.imaging import read_path
    direct = plan_on_labels(read_path(labels_file), margins_mm={2: 2.0}, target_label=3, limits=Limits(), top=3)
    assert [c["risk"] for c in printed["candidates"]] == pytest.approx([t.risk for t in direct.plan.candidates])
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 6 and {row["frame"] for row in rows} == {"LPS"}
    ras = direct.plan.candidates[0].entry_mm
    assert [float(rows[0][k]) for k in ("x_mm", "y_mm", "z_mm")] == pytest.approx([-ras[0], -ras[1], ras[2]], abs=1e-3)
    markups = json.loads(out_mrk.read_text())
    assert markups["markups"][0]["coordinateSystem"] == "LPS" and len(markups["markups"]) == 3


@pytest.mark.parametrize(("args", "field"), [
    (["--target", "hippocampus", "--critical", "2:2"], "target_label"),  # NIfTI keeps no label names
    (["--target", "3", "--critical", "2"], "critical[0]"),
    (["--target", "3", "--critical", "7:2"], "criticals.7"),
    (["--target", "3", "--critical", "2:2", "--max-length-mm", "3"], "trajectory")])
def test_bad_input_names_the_file_and_field(labels_file: Path, args: list[str], field: str) -> None:
    r = CliRunner().invoke(app, ["imaging", "plan", str(labels_file), *args])
    assert r.exit_code == 2
    assert str(labels_file) in r.output.replace("\n", "") and f"{field}:" in r.output
