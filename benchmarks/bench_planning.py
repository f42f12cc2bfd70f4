"""Trajectory planning benchmark (issue #19): distance maps plus scoring of 500 entries x 150 targets at 0.5 mm
sampling on a 1 mm brain-sized volume (197 x 233 x 189, MNI152 2009 at 1 mm), and meshing a 256^3 label map.

The distance maps are banded (exact up to each margin plus the reach these entries and targets need, computed
on each structure's window: ``planning_reach_mm``); the full exact maps are timed beside them in the same run,
and the scores of every path on both are checked identical.

The brain is an analytic phantom (``medtwin.imaging.phantoms``): a head ellipsoid, ventricles, a sagittal sinus
and cortical vessels as tubes, a deep target (hippocampus-like ellipsoid). Targets <= 1 s for the distance maps
plus the scoring (compiled kernels' first calls timed apart) and <= 2 s for the meshing.

Beside ours, in the same run and on the same paths, two baselines with matched results:
* a per-path loop: samples with ``np.linspace``, ``scipy.ndimage.map_coordinates(order=1)`` per path;
* vectorised numpy: all samples of a chunk of paths through one ``map_coordinates`` call.

    .venv/bin/python benchmarks/bench_planning.py [--smoke]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scaling import measure, one_blas_thread  # noqa: E402

BLAS_THREADS = one_blas_thread()

import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from scipy import ndimage  # noqa: E402

from medtwin.imaging import phantoms as ph  # noqa: E402
from medtwin.imaging.planning import (  # noqa: E402
    Critical,
    DistanceMaps,
    Entries,
    Limits,
    Scores,
    distance_maps,
    entries_from_mask,
    planning_reach_mm,
    sample_counts,
    score_paths,
    targets_from_label,
)

SMOKE = "--smoke" in sys.argv
SHAPE = (64, 72, 60) if SMOKE else (197, 233, 189)
ORIGIN = (-32.0, -40.0, -28.0) if SMOKE else (-98.0, -134.0, -72.0)
SCALE = 0.32 if SMOKE else 1.0
N_ENTRIES, N_TARGETS = (60, 20) if SMOKE else (500, 150)
ALL_PATHS = Limits(max_length_mm=1e6, max_angle_deg=90.0)  # every pair sampled: the 500 x 150
MESH_SIZE = 64 if SMOKE else 256


def brain() -> tuple[ph.Volume, NDArray[np.uint8]]:
    """A label map: 1 head, 2 ventricles, 3 sinus, 4 cortical vessels, 5 target."""
    s = SCALE
    g = ph.grid(SHAPE, (1.0, 1.0, 1.0), ORIGIN)
    shapes = [
        (ph.Ellipsoid([0.0, -18 * s, 0.0], [68 * s, 90 * s, 70 * s]), 1),
        (ph.Ellipsoid([-8 * s, -10 * s, 12 * s], [6 * s, 24 * s, 9 * s]), 2),
        (ph.Ellipsoid([8 * s, -10 * s, 12 * s], [6 * s, 24 * s, 9 * s]), 2),
        (ph.Tube(np.array([[0, 60, 30], [0, 10, 62], [0, -60, 60], [0, -100, 20]]) * s, 4.0 * s,
                 bend_radius_mm=30 * s), 3),
        (ph.Tube(np.array([[-60, 0, 10], [-35, 10, 48], [-10, 20, 64]]) * s, 1.5, bend_radius_mm=20 * s), 4),
        (ph.Tube(np.array([[60, -20, 10], [38, -30, 48], [12, -40, 64]]) * s, 1.5, bend_radius_mm=20 * s), 4),
        (ph.Ellipsoid([-26 * s, -22 * s, -12 * s], [6 * s, 16 * s, 6 * s]), 5),
    ]
    labels = ph.label_volume(shapes, g)
    return g, np.asarray(labels.data)


def setup() -> tuple[ph.Volume, NDArray[np.uint8], list[Critical]]:
    g, labels = brain()
    criticals = [Critical("ventricles", labels == 2, 3.0), Critical("sinus", labels == 3, 3.0),
                 Critical("vessels", labels == 4, 2.0)]
    return g, labels, criticals


def problem(g: ph.Volume, labels: NDArray[np.uint8], n_entries: int, n_targets: int) -> tuple[Entries, NDArray]:
    head = labels > 0
    upper = np.zeros(g.shape, bool)
    upper[:, :, g.shape[2] // 3:] = True
    entries = entries_from_mask(g, head, upper, max_points=n_entries)
    targets = targets_from_label(g.with_data(labels, units="label"), 5, max_points=n_targets)
    return entries, targets


def _pairs(maps: DistanceMaps, entries: Entries, targets: NDArray, scores: Scores,
           limits: Limits) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """What both baselines start from (outside their timing): ends in voxel indices, the pairs ours sampled,
    and the samples per path (the same counts as ours)."""
    pe, pt = np.nonzero(scores.geometric_ok)
    return (maps.grid.world_to_index(entries.points_mm), maps.grid.world_to_index(targets), pe, pt,
            sample_counts(scores.length_mm[pe, pt], limits.step_mm))


def baseline_loop(maps: DistanceMaps, entries: Entries, targets: NDArray, scores: Scores,
                  limits: Limits) -> tuple[NDArray, NDArray, float]:
    """Per path: samples, one map_coordinates call, min and trapezoid risk (what one writes without batching)."""
    e_idx, t_idx, pe, pt, counts = _pairs(maps, entries, targets, scores, limits)
    low, risk = np.empty(len(pe)), np.empty(len(pe))
    start = time.perf_counter()
    for p in range(len(pe)):
        f = np.linspace(0.0, 1.0, counts[p])
        pts = e_idx[pe[p]][:, None] + (t_idx[pt[p]] - e_idx[pe[p]])[:, None] * f
        v = ndimage.map_coordinates(maps.excess_mm, pts, order=1, mode="nearest").astype(np.float64)
        low[p] = v.min()
        r = np.clip(1.0 - v / limits.risk_cutoff_mm, 0.0, 1.0)
        risk[p] = (r.sum() - 0.5 * (r[0] + r[-1])) / (len(r) - 1)
    return low, risk, time.perf_counter() - start


def baseline_vectorised(maps: DistanceMaps, entries: Entries, targets: NDArray, scores: Scores,
                        limits: Limits, chunk_samples: int = 4_000_000) -> tuple[NDArray, NDArray, float]:
    """All samples of a chunk of paths through one map_coordinates call; reductions with np.minimum.reduceat."""
    e_idx, t_idx, pe, pt, counts = _pairs(maps, entries, targets, scores, limits)
    low, risk = np.empty(len(pe)), np.empty(len(pe))
    start = time.perf_counter()
    first = 0
    while first < len(pe):
        last = first + max(1, int(np.searchsorted(np.cumsum(counts[first:]), chunk_samples)))
        c = counts[first:last]
        offsets = np.concatenate([[0], np.cumsum(c)[:-1]])
        path = np.repeat(np.arange(len(c)), c)
        f = (np.arange(c.sum()) - offsets[path]) / (c[path] - 1)
        e, t = e_idx[pe[first:last]][path], t_idx[pt[first:last]][path]
        v = ndimage.map_coordinates(maps.excess_mm, (e + (t - e) * f[:, None]).T, order=1,
                                    mode="nearest").astype(np.float64)
        low[first:last] = np.minimum.reduceat(v, offsets)
        r = np.clip(1.0 - v / limits.risk_cutoff_mm, 0.0, 1.0)
        ends = 0.5 * (r[offsets] + r[offsets + c - 1])
        risk[first:last] = (np.add.reduceat(r, offsets) - ends) / (c - 1)
        first = last
    return low, risk, time.perf_counter() - start


def first_calls() -> float:
    """Every compiled kernel's first call (numba compiles it, or loads it from its cache) on a small problem:
    timed and reported on its own, never inside the figures below."""
    start = time.perf_counter()
    small = ph.grid((24, 24, 24), (1.0, 1.0, 1.0))
    cube = [Critical("cube", np.pad(np.ones((2, 2, 2), bool), 11), 1.0)]
    entries = Entries(np.array([[2.0, 2.0, 2.0], [20.0, 2.0, 2.0]]), np.array([[0.0, 0.0, -1.0]] * 2))
    for reach in (None, 5.0):
        maps = distance_maps(small, cube, reach_mm=reach)
        score_paths(maps, entries, np.array([[10.0, 20.0, 20.0]]), ALL_PATHS)
    return time.perf_counter() - start


def planning(g: ph.Volume, labels: NDArray[np.uint8], criticals: list[Critical]) -> None:
    entries, targets = problem(g, labels, N_ENTRIES, N_TARGETS)
    compile_time = first_calls()
    start = time.perf_counter()
    reach = planning_reach_mm(g, criticals, entries, targets, ALL_PATHS)
    reach_time = time.perf_counter() - start
    maps = distance_maps(g, criticals, reach_mm=reach)
    map_time = time.perf_counter() - start
    start = time.perf_counter()
    full = distance_maps(g, criticals)
    full_time = time.perf_counter() - start
    scores, ours, _ = measure(lambda: score_paths(maps, entries, targets, ALL_PATHS))
    exact_scores = score_paths(full, entries, targets, ALL_PATHS)
    same_scores = all(np.array_equal(getattr(scores, k), getattr(exact_scores, k), equal_nan=True)
                      for k in ("geometric_ok", "min_excess_mm", "risk"))
    assert same_scores
    ok = scores.geometric_ok
    samples = int(sample_counts(scores.length_mm[ok], ALL_PATHS.step_mm).sum())
    print(f"grid {g.shape} at 1 mm ({np.prod(g.shape) / 1e6:.1f} M voxels), {len(criticals)} critical structures")
    print(f"first calls of the compiled kernels (numba compile or cache load; not in any figure below): "
          f"{compile_time:.3f} s")
    print(f"banded distance maps (reach {reach:.1f} mm beyond each margin, from these entries and targets in "
          f"{reach_time:.3f} s; {len(criticals)} structures + combined margin map): {map_time:.3f} s")
    print(f"full distance maps (exact everywhere, for reference): {full_time:.3f} s")
    print(f"banded scores identical to the full maps' for every path (risk, min margin excess, admissible): "
          f"{same_scores}")
    start = time.perf_counter()
    reference = [ndimage.distance_transform_edt(~c.mask, sampling=g.spacing_mm) for c in criticals]
    scipy_time = time.perf_counter() - start
    half = 0.5 * float(np.linalg.norm(g.spacing_mm))
    same = max(float(np.abs(np.maximum(r - half, 0) - m).max()) for r, m in zip(reference, full.surface_mm, strict=True))
    del reference, full
    print(f"baseline, scipy.ndimage.distance_transform_edt for the same structures: {scipy_time:.3f} s "
          f"({scipy_time / full_time:.1f}x our full maps; max |difference| {same:.1e} mm, float32 maps)")
    print(f"scoring {len(entries.points_mm)} entries x {len(targets)} targets = {ok.sum():,} paths, "
          f"{samples:,} samples at <= 0.5 mm: {ours:.3f} s [{samples / ours / 1e6:.0f} M samples/s]")
    print(f"total, banded distance maps + scoring: {map_time + ours:.3f} s (target <= 1 s)")
    vec_low, vec_risk, vec_time = baseline_vectorised(maps, entries, targets, scores, ALL_PATHS)
    print(f"baseline, vectorised numpy map_coordinates (chunks of 4 M samples): {vec_time:.3f} s "
          f"({vec_time / ours:.1f}x ours)")
    loop_low, loop_risk, loop_time = baseline_loop(maps, entries, targets, scores, ALL_PATHS)
    print(f"baseline, per-path map_coordinates loop: {loop_time:.3f} s ({loop_time / ours:.1f}x ours)")
    ours_low, ours_risk = scores.min_excess_mm[ok], scores.risk[ok]
    diff = max(np.abs(ours_low - loop_low).max(), np.abs(ours_low - vec_low).max(),
               np.abs(ours_risk - loop_risk).max(), np.abs(ours_risk - vec_risk).max())
    print(f"matched results: max |difference| of min margin excess and risk over all paths = {diff:.2e}")
    assert diff < 1e-4, diff
    default = Limits()
    with_limits, limited, _ = measure(lambda: score_paths(maps, entries, targets, default))
    print(f"with the default limits (length <= {default.max_length_mm:g} mm, angle <= {default.max_angle_deg:g} "
          f"deg): {with_limits.geometric_ok.sum():,} paths sampled, {limited:.3f} s")
    scaling(g, labels, maps)


def scaling(g: ph.Volume, labels: NDArray[np.uint8], maps: DistanceMaps) -> None:
    sizes = [(25, 8), (60, 20)] if SMOKE else [(100, 30), (250, 75), (500, 150), (1000, 300)]
    print("scaling: scoring entries x targets, every pair sampled (peak: traced numpy memory, second call)")
    print(f"  {'entries':>8} {'targets':>8} {'paths':>9} {'s':>8} {'us/path':>9} {'peak MiB':>9}")
    for ne, nt in sizes:
        entries, targets = problem(g, labels, ne, nt)
        _, seconds, peak = measure(lambda e=entries, t=targets: score_paths(maps, e, t, ALL_PATHS),
                                   trace_memory=True)
        n = len(entries.points_mm) * len(targets)
        print(f"  {len(entries.points_mm):>8} {len(targets):>8} {n:>9,} {seconds:>8.3f} "
              f"{seconds / n * 1e6:>9.2f} {peak / 2**20:>9.1f}")


def meshing() -> None:
    """Every structure of a 256^3 label map (three labels), one ``mesh_label_map`` call each, timed together."""
    from medtwin.imaging.mesh import check_mesh, mesh_label_map  # I2's mesher

    n = MESH_SIZE
    g = ph.grid((n, n, n), (1.0, 1.0, 1.0), (-n / 2, -n / 2, -n / 2))
    r = n / 256
    shapes = [(ph.Ellipsoid([0, 0, 0], [100 * r, 110 * r, 90 * r]), 1),
              (ph.Sphere([-30 * r, 10 * r, 0], 25 * r), 2), (ph.Sphere([40 * r, -20 * r, 10 * r], 18 * r), 3)]
    labels = ph.label_volume(shapes, g)
    mesh_label_map(ph.label_volume(shapes[2:], g), 3)  # warm-up (imports, first calls)
    meshes, seconds, _ = measure(lambda: [mesh_label_map(labels, label) for _, label in shapes])
    faces = sum(m.n_faces for m in meshes)
    watertight = all(check_mesh(m).ok for m in meshes)
    print(f"meshing a {n}^3 label map ({len(shapes)} labels, medtwin.imaging.mesh.mesh_label_map each): "
          f"{seconds:.3f} s (target <= 2 s); {faces:,} triangles, all watertight: {watertight}")


def main() -> None:
    print(f"bench_planning{' (smoke)' if SMOKE else ''}: {machine()}, BLAS threads {BLAS_THREADS}")
    start = time.perf_counter()
    g, labels, criticals = setup()
    print(f"phantom brain built in {time.perf_counter() - start:.1f} s (not timed below)")
    planning(g, labels, criticals)
    meshing()


if __name__ == "__main__":
    main()
