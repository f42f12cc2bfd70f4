"""Analytic phantoms: the formulas against independent computations, the rasterisation against the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import measure

from medtwin.imaging import phantoms as ph
from medtwin.imaging.volume import VolumeError

SHAPES = {
    "sphere": ph.Sphere([1.0, -2.0, 3.0], 10.0),
    "ellipsoid": ph.Ellipsoid([1.0, 2.0, 3.0], [12.0, 8.0, 5.0], ph.rotation_about([1, 1, 0], 30)),
    "cylinder": ph.Cylinder([0.0, 0.0, 0.0], [0.0, 1.0, 1.0], 5.0, 30.0),
    "box": ph.Box([0.0, 0.0, 0.0], [10.0, 20.0, 30.0], ph.rotation_about([0, 0, 1], 20)),
    "tube": ph.Tube([[0, 0, 0], [30, 0, 0], [30, 30, 0], [30, 30, 30]], 3.0),
}


def test_closed_forms() -> None:
    assert SHAPES["sphere"].volume_ml == pytest.approx(4 / 3 * math.pi * 1000 / 1000)
    assert SHAPES["sphere"].area_mm2 == pytest.approx(400 * math.pi)
    # prolate spheroid a=2, b=c=1: A = 2 pi b^2 (1 + a/(b e) asin e), e = sqrt(1 - b^2/a^2)
    e = math.sqrt(1 - 1 / 4)
    assert ph.Ellipsoid([0, 0, 0], [2, 1, 1]).area_mm2 == pytest.approx(2 * math.pi * (1 + 2 / e * math.asin(e)))
    # oblate a=b=2, c=1: A = 2 pi a^2 + pi c^2/e log((1+e)/(1-e)), e = sqrt(1 - c^2/a^2)
    e = math.sqrt(1 - 1 / 4)
    oblate = 2 * math.pi * 4 + math.pi / e * math.log((1 + e) / (1 - e))
    assert ph.Ellipsoid([0, 0, 0], [2, 2, 1]).area_mm2 == pytest.approx(oblate)
    assert ph.Ellipsoid([0, 0, 0], [3, 3, 3]).area_mm2 == pytest.approx(36 * math.pi)
    tube = ph.Tube([[0, 0, 0], [10, 0, 0], [10, 10, 0]], 1.0, bend_radius_mm=2.0)
    # two straight runs shortened by the fillet's tangent (2 mm each) plus a quarter circle of radius 2
    assert tube.length_mm == pytest.approx(8 + 8 + math.pi)
    assert tube.volume_ml * 1000 == pytest.approx(math.pi * (8 + 8 + math.pi) + 4 / 3 * math.pi)


@pytest.mark.parametrize("name", list(SHAPES))
def test_partial_volume_sums_to_the_analytic_volume(name: str) -> None:
    shape = SHAPES[name]
    g = ph.grid_around([shape], (0.5, 0.5, 0.5), margin_mm=2.0)
    pv = ph.partial_volume(shape, g, samples_per_axis=4)
    assert pv.data.sum() * g.voxel_volume_ml == pytest.approx(shape.volume_ml, rel=3e-3)


@pytest.mark.parametrize("name", list(SHAPES))
def test_zero_level_surface_area_matches_the_formula(name: str) -> None:
    """Marching cubes on the fine distance field is an independent estimate of the area formula."""
    shape = SHAPES[name]
    g = ph.grid_around([shape], (0.4, 0.4, 0.4), margin_mm=2.0)
    sdf = ph.sdf_volume(shape, g).data
    verts, faces, _n, _v = measure.marching_cubes(sdf, 0.0, spacing=tuple(g.spacing_mm))
    area = measure.mesh_surface_area(verts, faces)
    # marching cubes cuts sharp edges (a chamfer ~ a voxel wide along each edge): looser for the box and cylinder
    rel = 3e-2 if name in ("box", "cylinder") else 5e-3
    assert area == pytest.approx(shape.area_mm2, rel=rel)


@pytest.mark.parametrize("name", list(SHAPES))
def test_label_map_centroid_and_bounds(name: str) -> None:
    shape = SHAPES[name]
    g = ph.grid_around([shape], (0.5, 0.5, 0.5), margin_mm=2.0, frame="LPS")
    lab = ph.label_volume(shape, g)
    assert lab.frame == "LPS" and lab.units == "label"
    pts = g.index_to_world(np.argwhere(lab.data == 1))
    assert np.allclose(pts.mean(axis=0), shape.centroid_mm, atol=0.1)
    lo, hi = shape.bounds_mm
    assert np.all(pts.min(axis=0) >= lo - 1e-9) and np.all(pts.max(axis=0) <= hi + 1e-9)
    assert np.all(pts.min(axis=0) <= lo + 0.5) and np.all(pts.max(axis=0) >= hi - 0.5)


ELL = ph.Ellipsoid([0.0, 0.0, 0.0], [9.0, 6.0, 4.0], ph.rotation_about([0, 1, 1], 40))
_U, _V = np.meshgrid(np.linspace(0, np.pi, 400), np.linspace(0, 2 * np.pi, 800), indexing="ij")
#: a dense sample of ELL's surface (u, v parametrisation), points at most ~0.07 mm apart
ELL_SURFACE = np.stack([9 * np.sin(_U) * np.cos(_V), 6 * np.sin(_U) * np.sin(_V), 4 * np.cos(_U)],
                       axis=-1).reshape(-1, 3) @ ELL.rotation.T


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=3, max_size=3))
def test_ellipsoid_sdf_is_the_distance_to_its_surface(point: list[float]) -> None:
    ell, surf = ELL, ELL_SURFACE
    p = np.asarray(point)
    brute = float(np.min(np.linalg.norm(surf - p, axis=1)))
    d = float(ell.sdf(p[None])[0])
    inside = float(np.sum((p @ ell.rotation / [9, 6, 4]) ** 2)) <= 1
    assert (d <= 0) == inside
    assert abs(d) == pytest.approx(brute, abs=0.08)  # the sampling is ~0.07 mm apart at most


def test_tube_distance_to_the_centreline_and_its_samples() -> None:
    tube = SHAPES["tube"]
    assert isinstance(tube, ph.Tube)
    line = tube.centreline_mm(0.2)
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    assert steps.max() <= 0.2 + 1e-9 and steps.sum() == pytest.approx(tube.length_mm, rel=1e-3)
    assert np.allclose(tube.centreline_distance(line), 0.0, atol=1e-9)
    rng = np.random.default_rng(3)
    pts = rng.uniform(-5, 35, size=(200, 3))
    dense = tube.centreline_mm(0.01)
    brute = np.min(np.linalg.norm(pts[:, None, :] - dense[None, ::1], axis=2), axis=1)
    assert np.allclose(tube.centreline_distance(pts), brute, atol=0.01)


def test_bad_shapes_name_the_field() -> None:
    with pytest.raises(VolumeError) as err:
        ph.Sphere([0, 0, 0], -1.0)
    assert err.value.field == "radius_mm"
    with pytest.raises(VolumeError) as err:
        ph.Tube([[0, 0, 0], [10, 0, 0], [10, 10, 0]], 2.0, bend_radius_mm=1.0)
    assert err.value.field == "bend_radius_mm"
    with pytest.raises(VolumeError) as err:
        ph.Tube([[0, 0, 0], [3, 0, 0], [3, 3, 0]], 1.0, bend_radius_mm=5.0)
    assert err.value.field == "bend_radius_mm"
    with pytest.raises(VolumeError) as err:
        ph.Box([0, 0, 0], [1, 1, 1], [[1, 0, 0], [0, 1, 0], [0, 0, -1]])
    assert err.value.field == "rotation"
    with pytest.raises(VolumeError) as err:
        ph.intensity_volume(SHAPES["sphere"], ph.grid((4, 4, 4), (1, 1, 1)), noise_sd=1.0)
    assert err.value.field == "rng"


def test_intensity_has_partial_volume_edges_and_noise() -> None:
    s = ph.Sphere([8.0, 8.0, 8.0], 5.0)
    g = ph.grid((17, 17, 17), (1.0, 1.0, 1.0))
    img = ph.intensity_volume(s, g, inside=200.0, outside=50.0).data
    assert img[8, 8, 8] == 200.0 and img[0, 0, 0] == 50.0
    assert np.any((img > 50.0) & (img < 200.0))
    noisy = ph.intensity_volume(s, g, 200.0, 50.0, noise_sd=10.0, rng=np.random.default_rng(0)).data
    assert np.std(noisy - img) == pytest.approx(10.0, rel=0.1)
