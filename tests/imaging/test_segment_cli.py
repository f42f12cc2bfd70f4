"""``medtwin imaging segment`` and ``medtwin imaging mesh`` on phantom files: figures match the library, files are
right, bad input exits 2 naming the file and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.imaging import mesh as M
from medtwin.imaging import phantoms as ph
from medtwin.imaging.nifti import read_nifti, write_nifti

runner = CliRunner()
SPHERE = ph.Sphere([2.0, -3.0, 4.0], 9.0)
ENV = {"COLUMNS": "200"}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    g = ph.grid_around([SPHERE], (0.8, 0.8, 0.8), margin_mm=4.0)
    img = ph.intensity_volume(SPHERE, g, inside=300.0, outside=20.0, noise_sd=5.0, rng=np.random.default_rng(2))
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(write_nifti(img))
    return path


def test_segment_by_threshold_then_mesh(image: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.nii.gz"
    result = runner.invoke(app, ["imaging", "segment", str(image), "--lower", "160", "--largest", "--name", "lesion",
                                 "--out", str(labels), "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)["statistics"]
    assert len(stats) == 1 and stats[0]["name"] == "lesion"
    assert stats[0]["volume_ml"] == pytest.approx(SPHERE.volume_ml, rel=0.01)
    assert stats[0]["surface_area_mm2"] == pytest.approx(SPHERE.area_mm2, rel=0.02)
    written = read_nifti(labels.read_bytes())
    assert int(np.count_nonzero(written.data)) == stats[0]["voxel_count"] and written.units == "label"
    stl = tmp_path / "lesion.stl"
    result = runner.invoke(app, ["imaging", "mesh", str(labels), "--out", str(stl), "--faces", "2000", "--json"],
                           env=ENV)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["watertight"] and summary["units"] == "mm" and summary["frame"] == "RAS"
    assert summary["faces"] <= 2200
    back = trimesh.load(stl)
    assert back.is_watertight and back.area == pytest.approx(SPHERE.area_mm2, rel=0.03)
    assert M.read_mesh_frame(stl) == "RAS"
    assert np.allclose(back.centroid, SPHERE.centre_mm, atol=0.2)


def test_region_growing_seed_in_lps(image: Path) -> None:
    # the sphere's centre (2, -3, 4) RAS is (-2, 3, 4) LPS
    result = runner.invoke(app, ["imaging", "segment", str(image), "--seed", "-2,3,4", "--seed-frame", "LPS",
                                 "--tolerance", "60", "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    stat = json.loads(result.output)["statistics"][0]
    assert np.allclose(stat["centroid_mm"], SPHERE.centre_mm, atol=0.2)
    assert stat["volume_ml"] == pytest.approx(4 / 3 * math.pi * 9.0**3 / 1000, rel=0.1)


def test_statistics_of_a_label_map_as_text(tmp_path: Path) -> None:
    g = ph.grid_around([SPHERE], (1.0, 1.0, 1.0))
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(write_nifti(ph.label_volume([(SPHERE, 4)], g)))
    result = runner.invoke(app, ["imaging", "segment", str(path)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "label 4" in result.output and "mL" in result.output


def test_bad_input_exits_2_naming_file_and_field(image: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["imaging", "segment", str(image), "--seed", "900,0,0", "--tolerance", "5"], env=ENV)
    assert out.exit_code == 2 and "seed_mm" in out.output and "ct.nii.gz" in out.output
    out = runner.invoke(app, ["imaging", "segment", str(image), "--lower", "10", "--upper", "5"], env=ENV)
    assert out.exit_code == 2 and "upper" in out.output
    out = runner.invoke(app, ["imaging", "segment", str(image)], env=ENV)  # an image is not a label map
    assert out.exit_code == 2 and "data" in out.output
    labels = tmp_path / "l.nii.gz"
    labels.write_bytes(write_nifti(ph.label_volume(SPHERE, ph.grid_around([SPHERE], (1.0, 1.0, 1.0)))))
    out = runner.invoke(app, ["imaging", "mesh", str(labels), "--label", "7", "--out", str(tmp_path / "x.stl")],
                        env=ENV)
    assert out.exit_code == 2 and "label" in out.output
    out = runner.invoke(app, ["imaging", "mesh", str(labels), "--out", str(tmp_path / "x.vtk")], env=ENV)
    assert out.exit_code == 2 and "format" in out.output
    out = runner.invoke(app, ["imaging", "mesh", str(labels), "--out", str(tmp_path / "x.stl"), "--faces", "20"],
                        env=ENV)
    assert out.exit_code == 2 and "target_faces" in out.output and not (tmp_path / "x.stl").exists()


def test_dicom_seg_statistics_and_mesh_by_segment_name(tmp_path: Path) -> None:
    from tests.imaging.test_segment import _ct_series, _seg_blob

    labels = np.zeros((6, 8, 10), np.uint8)
    labels[1:5, 2:7, 2:9] = 1  # a 4 x 5 x 7 voxel block (2 x 0.8 x 0.7 mm voxels)
    labels[5, 0, 0] = 2
    path = tmp_path / "seg.dcm"
    path.write_bytes(_seg_blob(_ct_series(), labels))
    result = runner.invoke(app, ["imaging", "segment", str(path), "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    stats = {s["name"]: s for s in json.loads(result.output)["statistics"]}
    assert set(stats) == {"tumour", "vessel"} and stats["tumour"]["frame"] == "LPS"
    assert stats["tumour"]["voxel_count"] == 140
    assert stats["tumour"]["volume_ml"] == pytest.approx(140 * 2.0 * 0.8 * 0.7 / 1000)
    stl = tmp_path / "tumour.obj"
    result = runner.invoke(app, ["imaging", "mesh", str(path), "--label", "tumour", "--out", str(stl)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "frame LPS" in result.output and M.read_mesh_frame(stl) == "LPS"
    assert trimesh.load(stl).is_watertight
