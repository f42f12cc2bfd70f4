"""Trajectory planning against analytic phantoms (I2's ``imaging.phantoms``): closed-form optimum, margins
measured on the exact vessel surfaces (not on our distance maps), bad input, several electrodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from medtwin.imaging import phantoms as ph
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
    segment_distance,
    targets_from_label,
)
from medtwin.imaging.volume import Volume

# Two straight vessels along y at depth z0, radius 2 mm, axes on voxel centres; a planar entry strip above them.
Z_TARGET, Z0, Z_ENTRY, XA, XB, RADIUS, MARGIN = 8.0, 38.0, 52.0, 22.0, 36.0, 2.0, 2.0
GRID = ph.grid((61, 21, 61), (1.0, 1.0, 1.0))
VESSEL_A = ph.Tube(np.array([[XA, -5, Z0], [XA, 25, Z0]]), RADIUS)
VESSEL_B = ph.Tube(np.array([[XB, -5, Z0], [XB, 25, Z0]]), RADIUS)
X_ENTRY = np.arange(22.0, 40.0001, 0.05)
STRIP = Entries(np.stack([X_ENTRY, np.full_like(X_ENTRY, 10.0), np.full_like(X_ENTRY, Z_ENTRY)], axis=1),
                np.tile([0.0, 0.0, 1.0], (len(X_ENTRY), 1)))


@pytest.fixture(scope="module")
def maps():  # type: ignore[no-untyped-def]
    masks = [ph.label_volume(v, GRID).data > 0 for v in (VESSEL_A, VESSEL_B)]
    return distance_maps(GRID, [Critical("A", masks[0], MARGIN), Critical("B", masks[1], MARGIN)])


def true_clearance(entry: tuple[float, ...], target: tuple[float, ...], vessels: list[ph.Tube]) -> float:
    """Smallest distance (mm) from the segment to the exact vessel surfaces, sampled every 0.01 mm."""
    e, t = np.asarray(entry), np.asarray(target)
    n = int(np.linalg.norm(t - e) / 0.01) + 2
    pts = e + (t - e) * np.linspace(0, 1, n)[:, None]
    return float(min(v.sdf(pts).min() for v in vessels))


def analytic_entry_x(x_target: float) -> float:
    """The max-min safest straight path from the target passes through the midpoint between the two vessel
    axes (the lines through T equidistant from both axes are parallel to AB, never reaching the entry plane,
    or pass through the midpoint); it meets the entry plane at this x."""
    xm = 0.5 * (XA + XB)
    return x_target + (xm - x_target) * (Z_ENTRY - Z_TARGET) / (Z0 - Z_TARGET)


@pytest.mark.parametrize("x_target", [24.0, 26.5, 29.0, 31.3])
def test_best_path_is_the_analytic_safest_within_half_a_millimetre(maps, x_target: float) -> None:  # type: ignore[no-untyped-def]
    plan = plan_trajectories(maps, STRIP, [x_target, 10.0, Z_TARGET], Limits(max_angle_deg=45.0),
                             rank_by="clearance")
    best = plan.candidates[0]
    expected = np.array([analytic_entry_x(x_target), 10.0, Z_ENTRY])
    assert np.linalg.norm(np.asarray(best.entry_mm) - expected) <= 0.5
    # its true clearance is the analytic max-min: distance from a vessel axis to the line T-M, minus the radius
    d = np.array([analytic_entry_x(x_target) - x_target, Z_ENTRY - Z_TARGET])
    a = np.array([XA - x_target, Z0 - Z_TARGET])
    analytic = abs(a[0] * d[1] - a[1] * d[0]) / np.linalg.norm(d) - RADIUS
    assert true_clearance(best.entry_mm, best.target_mm, [VESSEL_A, VESSEL_B]) == pytest.approx(analytic, abs=0.05)
    # the planner's figure is conservative (never above the truth) and within a voxel diagonal of it
    assert analytic - math.sqrt(3) <= best.min_distance_mm <= analytic + 1e-6


def test_every_proposed_path_keeps_the_margin_on_the_exact_surfaces(maps) -> None:  # type: ignore[no-untyped-def]
    plan = plan_trajectories(maps, STRIP, [24.0, 10.0, Z_TARGET], Limits(max_angle_deg=45.0), top=1000)
    assert plan.rejected["margin"] > 100  # paths near either vessel were refused for the margin ...
    assert len(plan.candidates) == plan.evaluated - sum(plan.rejected.values()) > 100  # ... the rest all listed
    for c in plan.candidates:
        assert true_clearance(c.entry_mm, c.target_mm, [VESSEL_A, VESSEL_B]) >= MARGIN
    risks = [c.risk for c in plan.candidates]
    assert risks == sorted(risks) and all(0.0 <= r <= 1.0 for r in risks)


def test_risk_is_the_length_normalised_integral_of_the_ramp(maps) -> None:  # type: ignore[no-untyped-def]
    """Vertical path at x=29 (7 mm from each axis): the planner's risk against the same ramp integrated on our
    own conservative distance evaluated densely with numpy (a different sampling and interpolator)."""
    limits = Limits(max_angle_deg=45.0)
    entries = Entries(np.array([[29.0, 10.0, Z_ENTRY]]), np.array([[0.0, 0.0, 1.0]]))
    c = plan_trajectories(maps, entries, [29.0, 10.0, Z_TARGET], limits).candidates[0]
    z = np.linspace(Z_ENTRY, Z_TARGET, 4401)
    from scipy import ndimage
    ijk = np.stack([np.full_like(z, 29.0), np.full_like(z, 10.0), z])
    excess = ndimage.map_coordinates(maps.excess_mm, ijk, order=1)
    ramp = np.clip(1 - excess / limits.risk_cutoff_mm, 0, 1)
    assert c.risk == pytest.approx(np.trapezoid(ramp, z[::-1]) / (Z_ENTRY - Z_TARGET), abs=2e-3)
    assert c.length_mm == pytest.approx(44.0) and c.angle_deg == pytest.approx(0.0, abs=1e-6)


def test_anisotropic_spacing_distance_maps_are_in_millimetres() -> None:
    g = ph.grid((41, 27, 17), (0.5, 0.8, 2.0), origin_mm=(-10.0, -10.0, -16.0))
    ball = ph.Sphere([0.0, 0.0, 0.0], 3.0)
    maps = distance_maps(g, [Critical("ball", ph.label_volume(ball, g).data > 0, 1.0)])
    centres = ph.voxel_centres(g)
    truth = np.maximum(ball.sdf(centres), 0.0)
    err = truth - maps.surface_mm[0]
    far = truth > 3.0
    assert err[far].min() >= -1e-4  # never farther than the truth
    assert err[far].max() <= np.linalg.norm([0.5, 0.8, 2.0])  # within a voxel diagonal
    # the same grid read as isotropic would be wrong by far more: z spacing matters
    assert maps.surface_mm[0][20, 13, 16] == pytest.approx(truth[20, 13, 16], abs=1.2)


def test_length_and_angle_limits_hold_for_every_candidate(maps) -> None:  # type: ignore[no-untyped-def]
    limits = Limits(max_length_mm=45.0, max_angle_deg=8.0)
    plan = plan_trajectories(maps, STRIP, [29.0, 10.0, Z_TARGET], limits, top=1000)
    assert plan.rejected["max_length_mm"] > 0 and plan.rejected["max_angle_deg"] > 0
    for c in plan.candidates:
        assert c.length_mm <= 45.0 and c.angle_deg <= 8.0
        geometric = math.degrees(math.atan2(abs(c.entry_mm[0] - 29.0), Z_ENTRY - Z_TARGET))
        assert c.angle_deg == pytest.approx(geometric, abs=1e-9)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ax=st.floats(8, 32), az=st.floats(14, 30), bx=st.floats(8, 32), by=st.floats(4, 28),
       radius=st.floats(0.8, 3.0), margin=st.floats(0.0, 4.0), tx=st.floats(6, 34), tz=st.floats(3, 12),
       max_angle=st.floats(10, 60), max_length=st.floats(15, 45))
def test_no_proposed_trajectory_violates_a_hard_constraint(ax: float, az: float, bx: float, by: float,
                                                           radius: float, margin: float, tx: float, tz: float,
                                                           max_angle: float, max_length: float) -> None:
    g = ph.grid((41, 33, 41), (1.0, 1.0, 1.0))
    vessels = [ph.Tube(np.array([[ax, -3.0, az], [ax + 5.0, 36.0, az + 3.0]]), radius),
               ph.Tube(np.array([[bx, by, 10.0], [bx - 4.0, by + 2.0, 36.0]]), radius)]
    masks = [ph.label_volume(v, g).data > 0 for v in vessels]
    assume(all(m.any() for m in masks))
    maps = distance_maps(g, [Critical(f"v{i}", m, margin) for i, m in enumerate(masks)])
    xs, ys = np.meshgrid(np.arange(2.0, 39.0, 2.5), np.arange(2.0, 31.0, 2.5))
    entries = Entries(np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 38.0)], axis=1),
                      np.tile([0.0, 0.3, 1.0], (xs.size, 1)) / math.hypot(0.3, 1.0))
    limits = Limits(max_angle_deg=max_angle, max_length_mm=max_length)
    try:
        plan = plan_trajectories(maps, entries, [tx, 16.0, tz], limits, top=50)
    except PlanningError as exc:
        assert exc.field == "trajectory"
        return
    for c in plan.candidates:
        assert true_clearance(c.entry_mm, c.target_mm, vessels) >= margin
        assert c.length_mm <= max_length and c.angle_deg <= max_angle


def test_a_target_outside_the_image_names_the_field(maps) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanningError) as info:
        plan_trajectories(maps, STRIP, [[29.0, 10.0, 8.0], [29.0, 10.0, 90.0]])
    assert info.value.field == "targets[1]" and "outside the image" in info.value.message


def test_no_admissible_trajectory_is_an_error_not_a_best_bad_path(maps) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanningError) as info:  # the target sits inside vessel A
        plan_trajectories(maps, STRIP, [XA, 10.0, Z0], Limits(max_angle_deg=45.0))
    assert info.value.field == "trajectory" and "margin" in info.value.message
    with pytest.raises(PlanningError) as info:  # every path too long
        plan_trajectories(maps, STRIP, [29.0, 10.0, Z_TARGET], Limits(max_length_mm=10.0))
    assert info.value.field == "trajectory"


@pytest.mark.parametrize(("limits", "field"), [
    (Limits(step_mm=1.0), "step_mm"), (Limits(max_angle_deg=0.0), "max_angle_deg"),
    (Limits(max_length_mm=float("nan")), "max_length_mm")])
def test_bad_limits_name_the_field(maps, limits: Limits, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanningError) as info:
        plan_trajectories(maps, STRIP, [29.0, 10.0, 8.0], limits)
    assert info.value.field == field


def test_bad_structures_and_grids_name_the_field() -> None:
    empty = np.zeros(GRID.shape, bool)
    with pytest.raises(PlanningError) as info:
        distance_maps(GRID, [Critical("vein", empty, 2.0)])
    assert info.value.field == "criticals.vein.mask"
    with pytest.raises(PlanningError) as info:
        distance_maps(GRID, [Critical("vein", np.ones((3, 3, 3), bool), 2.0)])
    assert info.value.field == "criticals.vein.mask"
    with pytest.raises(PlanningError, match="positive number of mm, got -1.0") as info:
        distance_maps(GRID, [Critical("vein", np.ones(GRID.shape, bool), 2.0)], reach_mm=-1.0)
    assert info.value.field == "reach_mm"
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    g = Volume(np.zeros((5, 5, 5)), sheared)
    with pytest.raises(PlanningError) as info:
        distance_maps(g, [Critical("vein", np.ones((5, 5, 5), bool), 2.0)])
    assert info.value.field == "affine"


def test_entries_from_a_head_mask_have_outward_normals() -> None:
    g = ph.grid((41, 41, 41), (1.0, 1.0, 1.0), origin_mm=(-20.0, -20.0, -20.0))
    head = ph.label_volume(ph.Sphere([0, 0, 0], 15.0), g).data > 0
    top = np.zeros(g.shape, bool)
    top[:, :, 28:] = True  # z >= 8 mm
    entries = entries_from_mask(g, head, top, max_points=200)
    radial = entries.points_mm / np.linalg.norm(entries.points_mm, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(np.sum(radial * entries.normals, axis=1), -1, 1)))
    assert len(entries.points_mm) <= 200 and entries.points_mm[:, 2].min() >= 8.0
    assert angles.max() < 12.0  # the voxelised sphere's normals are radial within a few degrees


def test_targets_from_a_label() -> None:
    labels = ph.label_volume([(ph.Sphere([20, 10, 30], 3.0), 7)], GRID, names={7: "amygdala"})
    pts = targets_from_label(labels, 7, max_points=10)
    assert len(pts) == 10 and np.all(np.linalg.norm(pts - [20, 10, 30], axis=1) <= 3.0)
    with pytest.raises(PlanningError) as info:
        targets_from_label(labels, 3)
    assert info.value.field == "target_label"


def test_segment_distance_against_brute_force() -> None:
    rng = np.random.default_rng(4)
    p = rng.normal(size=(120, 4, 3)) * 10
    p[:20, 3] = p[:20, 2] + (p[:20, 1] - p[:20, 0])  # parallel pairs
    got = segment_distance(p[:, 0], p[:, 1], p[:, 2], p[:, 3])
    s = np.linspace(0, 1, 201)
    a = p[:, None, 0] + s[None, :, None] * (p[:, 1] - p[:, 0])[:, None]
    b = p[:, None, 2] + s[None, :, None] * (p[:, 3] - p[:, 2])[:, None]
    brute = np.linalg.norm(a[:, :, None] - b[:, None, :], axis=-1).min(axis=(1, 2))
    assert np.all(got <= brute + 1e-9) and np.all(brute - got < 0.15)  # samples ~0.2 mm apart


def test_several_electrodes_keep_their_separation(maps) -> None:  # type: ignore[no-untyped-def]
    """Alone, both electrodes' safest paths squeeze through the gap between the vessels at the same point;
    together the second gives way (a riskier path of its own) so that the two stay 3.5 mm apart (here the mirror image in y, as safe by symmetry)."""
    xs, ys = np.meshgrid(np.arange(22.0, 40.0, 0.5), np.arange(0.0, 20.5, 1.0))
    entries = Entries(np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, Z_ENTRY)], 1),
                      np.tile([0.0, 0.0, 1.0], (xs.size, 1)))
    limits = Limits(max_angle_deg=45.0, min_separation_mm=3.5)
    targets = {"e1": [27.0, 10.0, 8.0], "e2": [31.0, 10.0, 8.0]}
    alone = {k: plan_trajectories(maps, entries, t, limits).candidates[0] for k, t in targets.items()}
    ends = [np.asarray(x) for x in (alone["e1"].entry_mm, alone["e1"].target_mm,
                                    alone["e2"].entry_mm, alone["e2"].target_mm)]
    assert segment_distance(*ends) < 3.5  # they would collide
    chosen = plan_electrodes(maps, entries, [Electrode(k, t) for k, t in targets.items()], limits)
    assert [c.electrode for c in chosen] == ["e1", "e2"]
    assert chosen[0].entry_mm == alone["e1"].entry_mm  # the first keeps its best path
    assert chosen[1].entry_mm != alone["e2"].entry_mm and chosen[1].risk >= alone["e2"].risk  # the second moved
    ends = [np.asarray(x) for x in (chosen[0].entry_mm, chosen[0].target_mm, chosen[1].entry_mm, chosen[1].target_mm)]
    assert segment_distance(*ends) >= 3.5
    for c in chosen:
        assert true_clearance(c.entry_mm, c.target_mm, [VESSEL_A, VESSEL_B]) >= MARGIN
    with pytest.raises(PlanningError) as info:  # targets 1.4 mm apart cannot be 3.5 mm apart
        plan_electrodes(maps, entries, [Electrode("a", [29, 10, 8]), Electrode("b", [30, 11, 8])], limits)
    assert info.value.field == "electrodes"


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12)),
       spacing=st.tuples(*[st.floats(0.2, 3.0)] * 3), density=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_our_distance_transform_equals_scipys(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                                              density: float, seed: int) -> None:
    from scipy import ndimage

    from medtwin.imaging.edt import distance_mm

    mask = np.random.default_rng(seed).random(shape) < density
    ours = distance_mm(mask, np.asarray(spacing))
    if not mask.any():
        assert np.all(np.isinf(ours))
        return
    assert np.allclose(ours, ndimage.distance_transform_edt(~mask, sampling=spacing), rtol=0, atol=1e-9)
