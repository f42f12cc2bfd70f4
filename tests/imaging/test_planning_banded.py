"""Banded distance maps (``reach_mm``): exact inside the band, the band value beyond, and plans identical to the
ones made on exact maps (ranking, admissibility, risk, margin excess, nearest distance), with or without the
planner's re-plan on exact maps when a figure lies beyond the band."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.imaging import phantoms as ph
from medtwin.imaging.edt import clearance_mm, window
from medtwin.imaging.planning import (
    Critical,
    Electrode,
    Entries,
    Limits,
    PlanningError,
    distance_maps,
    entries_from_mask,
    plan_electrodes,
    plan_trajectories,
    planning_reach_mm,
    score_paths,
    targets_from_label,
)


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(st.integers(1, 14), st.integers(1, 14), st.integers(1, 14)),
       spacing=st.tuples(*[st.floats(0.3, 3.0)] * 3), blobs=st.integers(0, 4), density=st.floats(0.0, 0.3),
       band=st.floats(0.0, 12.0), offset=st.floats(0.0, 2.0), seed=st.integers(0, 2**16))
def test_banded_clearance_is_exact_inside_the_band_and_the_band_beyond(
        shape: tuple[int, int, int], spacing: tuple[float, float, float], blobs: int, density: float, band: float,
        offset: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for _ in range(blobs):  # a few clustered structures (boxes) plus scattered voxels
        lo = rng.integers(0, shape)
        hi = lo + rng.integers(1, 4, size=3)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    mask |= rng.random(shape) < density * rng.random()
    sp = np.asarray(spacing)
    exact = clearance_mm(mask, sp, offset)
    banded = clearance_mm(mask, sp, offset, band_mm=band)
    inside = exact < band
    # the same values to rounding (the float64 envelope's last bits depend on where the window's lines start)
    assert np.allclose(banded[inside], exact[inside], rtol=0, atol=1e-6)
    assert np.all(banded[~inside] == np.float32(band))
    assert np.all(exact[~inside] >= np.float32(band))


def test_window_holds_every_voxel_within_reach() -> None:
    mask = np.zeros((30, 20, 25), bool)
    mask[10, 8, 12] = True
    sp = np.array([0.5, 1.0, 2.0])
    box = window(mask, sp, 3.0)
    assert [(b.start, b.stop) for b in box] == [(4, 17), (5, 12), (10, 15)]
    assert window(np.zeros((3, 3, 3), bool), sp, 3.0) == (slice(0, 0),) * 3


# a small "brain": head sphere, a ventricle, a vessel tube, a target ellipsoid (labels 1..4)
BRAIN = ph.grid((46, 50, 44), (1.0, 1.1, 1.2), origin_mm=(-23.0, -27.5, -26.4))


@pytest.fixture(scope="module")
def brain():  # type: ignore[no-untyped-def]
    labels = ph.label_volume([
        (ph.Ellipsoid([0.0, 0.0, 0.0], [21.0, 25.0, 24.0]), 1),
        (ph.Ellipsoid([-3.0, 2.0, 6.0], [3.0, 8.0, 4.0]), 2),
        (ph.Tube(np.array([[-18.0, -5.0, 4.0], [-8.0, 0.0, 16.0], [0.0, 4.0, 21.0]]), 1.3), 3),
        (ph.Ellipsoid([-9.0, -8.0, -6.0], [3.0, 6.0, 3.0]), 4)], BRAIN)
    data = np.asarray(labels.data)
    criticals = [Critical("ventricle", data == 2, 3.0), Critical("vessel", data == 3, 2.0)]
    upper = np.zeros(BRAIN.shape, bool)
    upper[:, :, BRAIN.shape[2] // 3:] = True
    entries = entries_from_mask(BRAIN, data > 0, upper, max_points=160)
    targets = targets_from_label(labels, 4, max_points=40)
    return criticals, entries, targets


EVERY_PATH = Limits(max_length_mm=1e6, max_angle_deg=90.0)


@pytest.mark.parametrize("limits", [EVERY_PATH, Limits(max_angle_deg=40.0, risk_cutoff_mm=6.0)])
def test_banded_maps_score_every_path_as_the_exact_maps_do(brain, limits: Limits) -> None:  # type: ignore[no-untyped-def]
    criticals, entries, targets = brain
    exact = distance_maps(BRAIN, criticals)
    reach = planning_reach_mm(BRAIN, criticals, entries, targets, limits)
    banded = distance_maps(BRAIN, criticals, reach_mm=reach)
    band = np.array([c.margin_mm + reach for c in criticals])[:, None, None, None]
    assert np.any(exact.surface_mm >= band)  # the band does cut something off ...
    a, b = score_paths(exact, entries, targets, limits), score_paths(banded, entries, targets, limits)
    for name in ("length_mm", "angle_deg", "geometric_ok", "min_excess_mm", "risk"):  # ... and no score moves
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert np.nanmax(a.min_excess_mm) > limits.risk_cutoff_mm  # paths with zero risk: ranked by clearance
    for rank_by in ("risk", "clearance"):
        assert plan_trajectories(banded, entries, targets, limits, top=40, rank_by=rank_by) == \
            plan_trajectories(exact, entries, targets, limits, top=40, rank_by=rank_by)
    assert not banded._exact  # the banded maps alone made those plans: no re-plan on exact maps


def test_too_narrow_a_band_re_plans_on_exact_maps_with_the_same_result(brain) -> None:  # type: ignore[no-untyped-def]
    criticals, entries, targets = brain
    exact = distance_maps(BRAIN, criticals)
    reference = plan_trajectories(exact, entries, targets, EVERY_PATH, top=25)
    narrow = distance_maps(BRAIN, criticals, reach_mm=Limits().risk_cutoff_mm + 2.0)
    scores = score_paths(narrow, entries, targets, EVERY_PATH)
    exact_scores = score_paths(exact, entries, targets, EVERY_PATH)
    assert np.array_equal(scores.risk, exact_scores.risk, equal_nan=True)  # risk is inside this band ...
    assert not np.array_equal(scores.min_excess_mm, exact_scores.min_excess_mm, equal_nan=True)  # clearance not
    assert plan_trajectories(narrow, entries, targets, EVERY_PATH, top=25) == reference
    assert narrow._exact and narrow.exact() is narrow._exact[0]  # it noticed and planned on exact maps
    tiny = distance_maps(BRAIN, criticals, reach_mm=1.0)  # not even the risk ramp
    assert plan_trajectories(tiny, entries, targets, EVERY_PATH, top=25) == reference


def test_several_electrodes_on_banded_maps(brain) -> None:  # type: ignore[no-untyped-def]
    criticals, entries, targets = brain
    wanted = [Electrode("a", targets[:20]), Electrode("b", targets[20:])]
    limits = Limits(max_angle_deg=50.0, min_separation_mm=4.0)
    reach = planning_reach_mm(BRAIN, criticals, entries, targets, limits)
    banded = distance_maps(BRAIN, criticals, reach_mm=reach)
    assert plan_electrodes(banded, entries, wanted, limits) == plan_electrodes(
        distance_maps(BRAIN, criticals), entries, wanted, limits)


def test_two_vessel_phantom_plans_are_identical_and_keep_the_half_diagonal_rule() -> None:
    g = ph.grid((61, 21, 61), (1.0, 1.0, 1.0))
    masks = [ph.label_volume(ph.Tube(np.array([[x, -5, 38.0], [x, 25, 38.0]]), 2.0), g).data > 0 for x in (22, 36)]
    criticals = [Critical("A", masks[0], 2.0), Critical("B", masks[1], 2.0)]
    xs = np.arange(22.0, 40.0001, 0.25)
    strip = Entries(np.stack([xs, np.full_like(xs, 10.0), np.full_like(xs, 52.0)], 1), np.tile([0, 0, 1.0], (len(xs), 1)))
    targets = np.array([[x, 10.0, 8.0] for x in (24.0, 26.5, 29.0, 31.3)])
    limits = Limits(max_angle_deg=45.0)
    exact = distance_maps(g, criticals)
    banded = distance_maps(g, criticals, reach_mm=planning_reach_mm(g, criticals, strip, targets, limits))
    inside = exact.surface_mm < np.array([2.0 + banded.reach_mm] * 2)[:, None, None, None]  # type: ignore[operator]
    assert np.array_equal(banded.surface_mm[inside], exact.surface_mm[inside]) and not inside.all()
    # on vessel A's axis: 0 (not minus the half diagonal); 6 mm off it (4 mm from its last voxel centre at x=24):
    # 4 mm minus half the voxel diagonal, the conservative rule kept in the band
    assert banded.surface_mm[0][22, 10, 38] == 0.0
    assert banded.surface_mm[0][28, 10, 38] == pytest.approx(4.0 - math.sqrt(3) / 2, abs=1e-6)
    for rank_by in ("risk", "clearance"):
        for t in targets:
            assert plan_trajectories(banded, strip, t, limits, top=50, rank_by=rank_by) == \
                plan_trajectories(exact, strip, t, limits, top=50, rank_by=rank_by)


def test_a_bad_reach_names_the_field(brain) -> None:  # type: ignore[no-untyped-def]
    criticals, _, _ = brain
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(PlanningError) as info:
            distance_maps(BRAIN, criticals, reach_mm=bad)
        assert info.value.field == "reach_mm"


def test_distances_and_rehearsals_on_banded_maps_are_the_exact_ones(brain) -> None:  # type: ignore[no-untyped-def]
    from medtwin.imaging.planning import path_samples, structure_distances
    from medtwin.imaging.rehearsal import rehearse

    criticals, entries, targets = brain
    banded = distance_maps(BRAIN, criticals, reach_mm=planning_reach_mm(BRAIN, criticals, entries, targets))
    exact = distance_maps(BRAIN, criticals)
    best = plan_trajectories(banded, entries, targets).candidates[0]
    points = path_samples(np.asarray(best.entry_mm), np.asarray(best.target_mm), 0.5)
    got = structure_distances(banded, points)
    assert np.array_equal(got, structure_distances(exact, points))
    assert got.max() > min(banded.margins_mm) + banded.reach_mm  # type: ignore[operator]  # read beyond the band
    assert rehearse(banded, best.entry_mm, best.target_mm) == rehearse(exact, best.entry_mm, best.target_mm)


def test_planning_on_a_label_map_uses_banded_maps_and_plans_as_on_exact_ones() -> None:
    from medtwin.imaging.plan_labels import (
        ElectrodeTarget,
        criticals_from_labels,
        plan_implantation,
        plan_on_labels,
    )

    labels = ph.label_volume([
        (ph.Ellipsoid([0.0, 0.0, 0.0], [21.0, 25.0, 24.0]), 1),
        (ph.Ellipsoid([-3.0, 2.0, 6.0], [3.0, 8.0, 4.0]), 2),
        (ph.Tube(np.array([[-18.0, -5.0, 4.0], [-8.0, 0.0, 16.0], [0.0, 4.0, 21.0]]), 1.3), 3),
        (ph.Ellipsoid([-9.0, -8.0, -6.0], [3.0, 6.0, 3.0]), 4)], BRAIN,
        names={1: "head", 2: "ventricle", 3: "vessel", 4: "hippocampus"})
    margins = {"ventricle": 3.0, "vessel": 2.0}
    exact = distance_maps(labels, criticals_from_labels(labels, margins))
    limits = Limits(max_angle_deg=60.0)
    banded = plan_on_labels(labels, margins_mm=margins, target_label="hippocampus", limits=limits, max_entries=150,
                            max_targets=30, top=20)
    assert banded.maps.reach_mm is not None
    assert banded.plan == plan_on_labels(labels, margins_mm=margins, target_label="hippocampus", limits=limits,
                                         max_entries=150, max_targets=30, top=20, maps=exact).plan
    electrodes = [ElectrodeTarget("a", target_mm=[-9.0, -12.0, -6.0]), ElectrodeTarget("b", target_mm=[-9.0, -3.0, -6.0])]
    chosen, maps = plan_implantation(labels, electrodes, margins_mm=margins, limits=limits, max_entries=150)
    assert maps.reach_mm is not None
    assert chosen == plan_implantation(labels, electrodes, margins_mm=margins, limits=limits, max_entries=150,
                                       maps=exact)[0]
