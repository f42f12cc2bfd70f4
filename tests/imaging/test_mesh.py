"""Meshes against analytic phantoms: area, volume, position, orientation, decimation, watertight export."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.imaging import mesh as M
from medtwin.imaging import phantoms as ph
from medtwin.imaging.volume import Volume

SPHERE = ph.Sphere([3.0, -2.0, 5.0], 10.0)  # the 20 mm sphere
ELLIPSOID = ph.Ellipsoid([0.0, 0.0, 0.0], [12.0, 8.0, 6.0], ph.rotation_about([1, 0, 1], 25))


def _labels(shape: ph.Shape, h: float, offset: float = 0.0, frame: str = "RAS") -> Volume:
    g = ph.grid_around([shape], (h, h, h), margin_mm=3.0)
    g = ph.grid(g.shape, (h, h, h), tuple(float(x) + offset for x in g.affine[:3, 3]), frame)  # type: ignore[arg-type]
    return ph.label_volume(shape, g)


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("offset", [0.0, 0.37])
def test_sphere_area_and_volume_within_acceptance(h: float, offset: float) -> None:
    lab = _labels(SPHERE, h, offset * h)
    mesh = M.mesh_label_map(lab, 1)
    # at 2 mm the sphere is 5 voxels in radius: measured +4.1 % area, +5.4 % volume when centred on a voxel
    # (the documented limit; the acceptance's 2 % holds from 10 voxels in radius)
    area_tol, vol_tol = (0.02, 0.015) if h <= 1.0 else (0.05, 0.06)
    assert mesh.area_mm2 == pytest.approx(SPHERE.area_mm2, rel=area_tol)
    assert mesh.volume_ml == pytest.approx(SPHERE.volume_ml, rel=vol_tol)
    # the raw staircase overstates the area by several per cent: smoothing is what makes the difference
    raw = M.mesh_label_map(lab, 1, smoothing_iterations=0)
    assert raw.area_mm2 / SPHERE.area_mm2 - 1 > 0.06
    assert M.check_mesh(mesh).ok


@pytest.mark.parametrize("h", [0.5, 1.0])
def test_ellipsoid_and_tube_area(h: float) -> None:
    tube = ph.Tube([[0, 0, 0], [30, 0, 0], [30, 30, 0]], 3.0)
    for shape in (ELLIPSOID, tube):
        mesh = M.mesh_label_map(_labels(shape, h), 1)
        assert mesh.area_mm2 == pytest.approx(shape.area_mm2, rel=0.025 if isinstance(shape, ph.Tube) else 0.02)


def test_vertices_lie_on_the_true_surface_in_world_mm() -> None:
    lab = _labels(ELLIPSOID, 1.0, 0.2, frame="LPS")
    mesh = M.mesh_label_map(lab, 1)
    assert mesh.frame == "LPS" and mesh.meta["units"] == "mm"
    dist = ELLIPSOID.sdf(mesh.vertices_mm)
    assert np.abs(dist).max() < 0.5  # within half a voxel everywhere
    assert abs(float(np.mean(dist))) < 0.1


def test_mirrored_affine_keeps_positions_and_outward_normals() -> None:
    lab = _labels(SPHERE, 1.0)
    a = lab.affine.copy()
    a[:3, 0] *= -1.0  # i runs the other way: a left-handed voxel grid
    mirrored = Volume(lab.data, a, "RAS", "label", {1: "sphere"})
    mesh = M.mesh_label_map(mirrored, 1)
    check = M.check_mesh(mesh)
    assert check.ok and mesh.volume_ml > 0
    centre = mirrored.index_to_world(np.argwhere(lab.data == 1)).mean(axis=0)
    assert np.allclose(mesh.vertices_mm.mean(axis=0), centre, atol=0.05)
    tm = mesh.to_trimesh()
    outward = np.einsum("ij,ij->i", tm.face_normals, tm.triangles_center - centre)
    assert np.all(outward > 0)


def test_decimation_keeps_area_volume_and_watertightness() -> None:
    mesh = M.mesh_label_map(_labels(SPHERE, 0.5), 1)
    small = M.decimate(mesh, mesh.n_faces // 10)
    assert small.n_faces <= mesh.n_faces // 10 * 1.1
    assert M.check_mesh(small).ok
    assert small.area_mm2 == pytest.approx(mesh.area_mm2, rel=0.005)
    assert small.volume_ml == pytest.approx(mesh.volume_ml, rel=0.005)
    assert abs(float(small.meta["volume_change_pct"])) < 0.5
    with pytest.raises(M.MeshError) as err:  # 24 triangles cannot hold a sphere's volume within 1 %
        M.decimate(mesh, 24, max_change_pct=1.0)
    assert err.value.field == "target_faces" and "volume" in err.value.message
    assert M.decimate(mesh, 24).n_faces <= 30  # without a bound it goes ahead and says what it cost


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply"])
def test_export_round_trips_watertight_in_mm_with_the_frame(fmt: str, tmp_path: object) -> None:
    mesh = M.mesh_label_map(_labels(SPHERE, 1.0, frame="LPS"), 1)
    path = M.export_mesh(mesh, f"{tmp_path}/sphere.{fmt}")
    back = trimesh.load(path, process=True)  # a peer reader
    assert back.is_watertight and back.is_winding_consistent and back.volume > 0
    assert back.area == pytest.approx(mesh.area_mm2, rel=1e-5)
    assert np.allclose(back.bounds, [mesh.vertices_mm.min(0), mesh.vertices_mm.max(0)], atol=1e-4)
    assert M.read_mesh_frame(path) == "LPS"
    assert b"units mm" in path.read_bytes()[:2000]


def test_open_mesh_is_detected_refused_and_repaired(tmp_path: object) -> None:
    mesh = M.mesh_label_map(_labels(SPHERE, 1.0), 1)
    holed = M.SurfaceMesh(mesh.vertices_mm, mesh.faces[1:], mesh.frame, mesh.meta)
    check = M.check_mesh(holed)
    assert not check.watertight and check.boundary_edges == 3
    with pytest.raises(M.MeshError) as err:
        M.export_mesh(holed, f"{tmp_path}/open.stl")
    assert err.value.field == "mesh"
    fixed = M.repair_mesh(holed)
    assert M.check_mesh(fixed).ok and fixed.area_mm2 == pytest.approx(mesh.area_mm2, rel=1e-3)
    flipped = M.SurfaceMesh(mesh.vertices_mm, mesh.faces[:, ::-1], mesh.frame, mesh.meta)
    assert not M.check_mesh(flipped).outward and M.check_mesh(M.repair_mesh(flipped)).outward


def test_mesh_field_on_a_distance_field_is_exact_to_a_fraction_of_a_percent() -> None:
    g = ph.grid_around([ELLIPSOID], (1.0, 1.0, 1.0))
    mesh = M.mesh_field(ph.sdf_volume(ELLIPSOID, g), 0.0)
    assert M.check_mesh(mesh).ok
    assert mesh.area_mm2 == pytest.approx(ELLIPSOID.area_mm2, rel=0.01)
    assert mesh.volume_ml == pytest.approx(ELLIPSOID.volume_ml, rel=0.01)
    frac = ph.partial_volume(SPHERE, ph.grid_around([SPHERE], (1.0, 1.0, 1.0)))
    fm = M.mesh_field(frac, 0.5, inside="above")
    assert fm.volume_ml == pytest.approx(SPHERE.volume_ml, rel=0.01) and M.check_mesh(fm).ok


def test_structure_at_the_image_edge_still_closes() -> None:
    g = ph.grid((20, 20, 20), (1.0, 1.0, 1.0))
    lab = ph.label_volume(ph.Sphere([0.0, 10.0, 10.0], 8.0), g)  # cut by the i = 0 face
    assert M.check_mesh(M.mesh_label_map(lab, 1)).ok


def test_bad_input_names_the_field() -> None:
    lab = _labels(SPHERE, 2.0)
    with pytest.raises(M.MeshError) as err:
        M.mesh_label_map(lab, 7)
    assert err.value.field == "label" and "[1]" in err.value.message
    with pytest.raises(M.MeshError) as err:
        M.decimate(M.mesh_label_map(lab, 1), 2)
    assert err.value.field == "target_faces"
    with pytest.raises(M.MeshError) as err:
        M.export_mesh(M.mesh_label_map(lab, 1), "/tmp/x.vtk")
    assert err.value.field == "format"
    with pytest.raises(M.MeshError) as err:
        M.mesh_field(ph.sdf_volume(SPHERE, lab), 1000.0)
    assert err.value.field == "level"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3), st.floats(0.0, 180.0),
       st.lists(st.sampled_from([1.0, -1.0]), min_size=3, max_size=3),
       st.lists(st.floats(0.6, 1.4), min_size=3, max_size=3), st.sampled_from(["RAS", "LPS"]))
def test_any_affine_gives_outward_normals_and_true_positions(axis: list[float], angle: float, flips: list[float],
                                                           spacing: list[float], frame: str) -> None:
    """Rotated, mirrored, anisotropic voxel grids: the surface lands on the true sphere, normals point out."""
    if np.linalg.norm(axis) < 1e-3:
        axis = [0.0, 0.0, 1.0]
    a3 = ph.rotation_about(axis, angle) @ np.diag(np.asarray(flips) * np.asarray(spacing))
    sphere = ph.Sphere([5.0, -7.0, 3.0], 6.0)
    n = 24
    affine = np.eye(4)
    affine[:3, :3] = a3
    affine[:3, 3] = sphere.centre_mm - a3 @ np.full(3, (n - 1) / 2 + 0.3)
    lab = ph.label_volume(sphere, Volume(np.zeros((n, n, n), np.uint8), affine, frame))  # type: ignore[arg-type]
    mesh = M.mesh_label_map(lab, 1)
    assert M.check_mesh(mesh).ok and mesh.frame == frame
    error = sphere.sdf(mesh.vertices_mm)
    assert np.abs(error).max() < 0.5 * max(spacing) + 0.15 and abs(float(error.mean())) < 0.1
    tm = mesh.to_trimesh()
    outward = np.einsum("ij,ij->i", tm.face_normals, tm.triangles_center - sphere.centre_mm)
    assert np.mean(outward > 0) > 0.999


def test_taubin_is_trimesh_filter_taubin() -> None:
    """Our CSR Taubin filter against the peer implementation (trimesh.smoothing.filter_taubin)."""
    raw = M.mesh_label_map(_labels(ELLIPSOID, 1.0), 1, smoothing_iterations=0)
    peer = trimesh.Trimesh(raw.vertices_mm, raw.faces, process=False)
    trimesh.smoothing.filter_taubin(peer, lamb=M.TAUBIN_LAMBDA, nu=M.TAUBIN_NU, iterations=M.TAUBIN_ITERATIONS)
    ours = M.taubin(raw.vertices_mm, raw.faces)
    assert np.allclose(ours, peer.vertices, atol=1e-9)
    assert not np.allclose(ours, raw.vertices_mm, atol=1e-3)  # it did smooth
