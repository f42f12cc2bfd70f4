"""Trajectory planning for straight instruments (stereo-EEG electrodes, biopsy needles) on a volume's grid.

Given target points (or a target label), entry points on the skin or cortex with their outward surface normals,
and critical structures (vessels, ventricles, sulci) as masks each with a safety margin in millimetres:

* a Euclidean distance map per structure in mm on the (possibly anisotropic) grid (:mod:`medtwin.imaging.edt`:
  the same values as ``scipy.ndimage.distance_transform_edt`` with ``sampling`` = voxel spacing, faster), or
  banded (``reach_mm``, :func:`planning_reach_mm`): exact up to margin + reach around each structure, computed on
  the structure's window only; the planner re-plans on exact maps if a figure it needs lies beyond the band;
* every entry x target straight path sampled at <= 0.5 mm, the distance maps trilinearly interpolated;
* hard constraints: no structure within its margin anywhere along the path, length <= ``max_length_mm``,
  angle between the path and the entry surface's inward normal <= ``max_angle_deg``, both ends inside the image;
* a risk score in the form EpiNav uses (Zombori et al., IPCAI 2014; Sparks et al., IJCARS 12:123-136, 2017):
  a per-point risk ``R = 1`` at the margin falling linearly to ``0`` at ``margin + risk_cutoff_mm``, integrated
  along the path and divided by its length (so 0 <= risk <= 1; lower is safer). The shape follows theirs; the
  constants (10 mm cut-off) are ours, not taken from the papers.

Conservative by construction: a structure is the union of its voxels' cubes, so the distance to it is taken as
the distance to the nearest structure voxel centre minus half the voxel diagonal; and because the true distance
is 1-Lipschitz, a path whose samples (``step_mm`` apart) all clear the margin by ``step_mm / 2`` clears it
everywhere in between. Nothing that fails a hard constraint is ever returned: when no path is admissible the
planner raises :class:`PlanningError` naming the field, never a "least bad" path.

Several electrodes (:func:`plan_electrodes`): each electrode's admissible candidates ranked by risk, then a
depth-first search (as Sparks et al. 2017 do) for the first combination whose trajectories keep
``min_separation_mm`` between every pair (closest distance between segments).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from medtwin.arrays import Array
from medtwin.imaging.edt import clearance_mm, window
from medtwin.imaging.volume import Frame, Triple, Volume, VolumeError, triple

RANK_BY = ("risk", "clearance")
BAND_SLACK_MM = 1e-3  # float32 rounding of the band values (ulp ~1e-5 mm at 100 mm), with room to spare


class PlanningError(VolumeError):
    """A planning input that cannot be used, or no admissible trajectory; ``field`` names the input."""


def check_positive_mm(name: str, value: float) -> None:
    """Raise :class:`PlanningError` naming ``name`` unless ``value`` is a finite positive length in mm."""
    if not (math.isfinite(value) and value > 0):
        raise PlanningError(name, f"must be a positive number of mm, got {value!r}")


@dataclass(frozen=True, eq=False)
class Critical:
    """A structure the path must avoid: a boolean ``mask`` on the planning grid and its safety margin."""

    name: str
    mask: NDArray[np.bool_]
    margin_mm: float


@dataclass(frozen=True, eq=False)
class Entries:
    """Candidate entry points (n, 3) in mm in the grid's frame, with unit outward surface normals (n, 3)."""

    points_mm: Array
    normals: Array


@dataclass(frozen=True)
class Limits:
    """The hard limits and the sampling. ``risk_cutoff_mm``: beyond margin + cut-off a point carries no risk."""

    max_length_mm: float = 100.0
    max_angle_deg: float = 30.0
    step_mm: float = 0.5
    risk_cutoff_mm: float = 10.0
    min_separation_mm: float = 5.0

    def check(self) -> None:
        for name in ("max_length_mm", "step_mm", "risk_cutoff_mm"):
            check_positive_mm(name, getattr(self, name))
        if not (0.0 < self.max_angle_deg <= 90.0):
            raise PlanningError("max_angle_deg", f"must be in (0, 90] degrees, got {self.max_angle_deg!r}")
        if self.step_mm > 0.5:
            raise PlanningError("step_mm", f"must be <= 0.5 mm (sampling the issue asks for), got {self.step_mm}")
        if not (math.isfinite(self.min_separation_mm) and self.min_separation_mm >= 0):
            raise PlanningError("min_separation_mm", f"must be >= 0 mm, got {self.min_separation_mm!r}")


@dataclass(frozen=True, eq=False)
class DistanceMaps:
    """Per-structure distance in mm (float32, structure axis first) and the combined margin map the scorer reads.

    ``surface_mm[s]`` is the distance to structure ``s`` (its voxel cubes, conservatively); ``excess_mm`` is
    ``min_s(surface_mm[s] - margin_s)``: negative where some structure is nearer than its margin.

    ``reach_mm`` None: exact everywhere. Otherwise banded: ``surface_mm[s]`` is exact where it is below
    ``margin_s + reach_mm`` and equals that band beyond (so ``excess_mm`` is exact below ``reach_mm``);
    :func:`plan_trajectories` checks that every figure it returns was read inside the band and otherwise plans
    again on :meth:`exact` maps, so a banded map never changes a plan. Rehearsals want :meth:`exact`."""

    grid: Volume
    names: tuple[str, ...]
    margins_mm: tuple[float, ...]
    surface_mm: NDArray[np.float32]
    excess_mm: NDArray[np.float32]
    reach_mm: float | None = None
    criticals: tuple[Critical, ...] = ()
    _exact: list[DistanceMaps] = field(default_factory=list, repr=False)

    def exact(self) -> DistanceMaps:
        """These maps exact everywhere (self when already; else computed once and kept)."""
        if self.reach_mm is None:
            return self
        if not self._exact:
            self._exact.append(distance_maps(self.grid, self.criticals))
        return self._exact[0]

    def resolved_below_mm(self) -> float:
        """Combined-map values below this were read from exact voxels only (trilinear cells: a voxel diagonal)."""
        if self.reach_mm is None:
            return math.inf
        return self.reach_mm - float(np.linalg.norm(self.grid.spacing_mm)) - BAND_SLACK_MM


@dataclass(frozen=True)
class Trajectory:
    """One admissible straight path, in mm in ``frame``. ``risk`` in [0, 1] (lower is safer);
    ``margin_excess_mm``: the smallest clearance beyond the margins along the path;
    ``min_distance_mm``: the smallest distance to any critical structure, and which one."""

    entry_mm: Triple
    target_mm: Triple
    frame: Frame
    length_mm: float
    angle_deg: float
    risk: float
    margin_excess_mm: float
    min_distance_mm: float
    nearest_structure: str
    rank: int = 0
    electrode: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "electrode": self.electrode, "frame": self.frame,
                "entry_mm": list(self.entry_mm), "target_mm": list(self.target_mm),
                "length_mm": self.length_mm, "angle_deg": self.angle_deg, "risk": self.risk,
                "margin_excess_mm": self.margin_excess_mm, "min_distance_mm": self.min_distance_mm,
                "nearest_structure": self.nearest_structure}


@dataclass(frozen=True)
class Plan:
    """Ranked admissible candidates (best first) and how many paths each hard constraint removed."""

    frame: Frame
    candidates: tuple[Trajectory, ...]
    evaluated: int
    rejected: dict[str, int] = field(default_factory=dict)


# --- grid, targets, entries ------------------------------------------------------------------------------------


def _check_grid(grid: Volume) -> None:
    columns = grid.affine[:3, :3] / grid.spacing_mm
    off = columns.T @ columns - np.eye(3)
    if np.max(np.abs(off)) > 1e-6:
        raise PlanningError("affine", "the grid is sheared (axes not orthogonal): resample it before planning")


def _points(value: object, field_name: str) -> Array:
    try:
        p = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlanningError(field_name, "must be numbers (x, y, z) in mm") from None
    p = p.reshape(1, 3) if p.shape == (3,) else p
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
        raise PlanningError(field_name, f"must be points of shape (n, 3) in mm, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise PlanningError(field_name, "contains NaN or infinite coordinates")
    return p


def _inside(grid: Volume, points: Array, field_name: str) -> None:
    outside = ~grid.contains(points)
    if np.any(outside):
        first = int(np.flatnonzero(outside)[0])
        raise PlanningError(f"{field_name}[{first}]", f"{points[first].round(2).tolist()} mm ({grid.frame}) lies "
                                                      f"outside the image ({int(outside.sum())} point(s) outside)")


def _mask(grid: Volume, mask: object, field_name: str) -> NDArray[np.bool_]:
    m = np.asarray(mask)
    if m.shape != grid.shape:
        raise PlanningError(field_name, f"shape {m.shape} does not match the grid {grid.shape}")
    return m.astype(bool, copy=False)


def _subsample(n: int, max_points: int | None) -> NDArray[np.intp]:
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.intp))


def targets_from_label(labels: Volume, label: int, max_points: int | None = None) -> Array:
    """Target points (mm) inside structure ``label`` of a label map: its voxel centres, evenly thinned."""
    ijk = np.argwhere(np.asarray(labels.data) == label)
    if ijk.size == 0:
        raise PlanningError("target_label", f"label {label} has no voxel in the label map")
    return labels.index_to_world(ijk[_subsample(len(ijk), max_points)].astype(np.float64))


def entries_from_mask(grid: Volume, head_mask: object, entry_mask: object | None = None,
                      max_points: int | None = None, sigma_mm: float = 2.0) -> Entries:
    """Entry points on the outer surface of ``head_mask`` (voxels of the mask with an outside neighbour),
    restricted to ``entry_mask`` if given; outward normals from the gradient of the smoothed head mask."""
    head = _mask(grid, head_mask, "head_mask")
    surface = head & ~ndimage.binary_erosion(head, border_value=0)
    if entry_mask is not None:
        surface &= _mask(grid, entry_mask, "entry_mask")
    ijk = np.argwhere(surface)
    if ijk.size == 0:
        raise PlanningError("entry_mask", "has no voxel on the surface of the head mask")
    ijk = ijk[_subsample(len(ijk), max_points)]
    smooth = ndimage.gaussian_filter(head.astype(np.float32), sigma=sigma_mm / grid.spacing_mm)
    grad_index = np.stack([ndimage.map_coordinates(g, ijk.T, order=1) for g in np.gradient(smooth)], axis=1)
    grad_world = grad_index @ np.linalg.inv(grid.affine[:3, :3])  # d/dx = d/di . di/dx
    norm = np.linalg.norm(grad_world, axis=1, keepdims=True)
    if np.any(norm < 1e-9):
        raise PlanningError("head_mask", "has surface voxels without a defined normal (a one-voxel-thin mask?)")
    return Entries(grid.index_to_world(ijk.astype(np.float64)), -grad_world / norm)


# --- distance maps ---------------------------------------------------------------------------------------------


@numba.njit(parallel=True, cache=True)
def _combine(maps: NDArray[np.float32], margins: NDArray[np.float32], out: NDArray[np.float32]) -> None:
    """``out = min_s(maps[s] - margins[s])`` in one parallel pass (float32 as numpy would do it)."""
    flat, res = maps.reshape(maps.shape[0], -1), out.reshape(-1)
    for n in numba.prange(res.shape[0]):
        low = flat[0, n] - margins[0]
        for s in range(1, flat.shape[0]):
            low = min(low, flat[s, n] - margins[s])
        res[n] = low


def distance_maps(grid: Volume, criticals: Sequence[Critical], reach_mm: float | None = None) -> DistanceMaps:
    """The distance in mm from every voxel to each critical structure (respecting anisotropic spacing); with
    ``reach_mm`` banded at ``margin + reach_mm`` per structure (see :class:`DistanceMaps`)."""
    _check_grid(grid)
    if not criticals:
        raise PlanningError("criticals", "name at least one critical structure (an empty list plans blind)")
    if reach_mm is not None:
        check_positive_mm("reach_mm", reach_mm)
    spacing = grid.spacing_mm
    half_diagonal = 0.5 * float(np.linalg.norm(spacing))
    maps = np.empty((len(criticals), *grid.shape), dtype=np.float32)
    for s, c in enumerate(criticals):
        mask = _mask(grid, c.mask, f"criticals.{c.name}.mask")
        if not (math.isfinite(c.margin_mm) and c.margin_mm >= 0):
            raise PlanningError(f"criticals.{c.name}.margin_mm", f"must be >= 0 mm, got {c.margin_mm!r}")
        if not mask.any():
            raise PlanningError(f"criticals.{c.name}.mask", "is empty: the structure is not in the label map")
        band = None if reach_mm is None else c.margin_mm + reach_mm
        clearance_mm(mask, spacing, half_diagonal, out=maps[s], band_mm=band)
    excess = np.empty(grid.shape, dtype=np.float32)
    _combine(maps, np.array([c.margin_mm for c in criticals], dtype=np.float32), excess)
    return DistanceMaps(grid, tuple(c.name for c in criticals), tuple(float(c.margin_mm) for c in criticals),
                        maps, excess, reach_mm, tuple(criticals))


def _endpoint_bounds(grid: Volume, criticals: Sequence[Critical], points_mm: Array) -> tuple[Array, Array]:
    """Upper bounds, at each of ``points_mm``, of the interpolated combined map and of the nearest structure's
    interpolated distance (exact at each point's nearest voxel centre from a k-d tree of the structures' surface
    voxels, plus a voxel diagonal: the maps are 1-Lipschitz and a trilinear cell spans one diagonal)."""
    spacing = grid.spacing_mm
    diagonal = float(np.linalg.norm(spacing))
    ijk = np.clip(np.rint(grid.world_to_index(points_mm)), 0, np.asarray(grid.shape) - 1)
    nearest = np.full(len(ijk), np.inf)
    excess = np.full(len(ijk), np.inf)
    for c in criticals:
        mask = np.asarray(c.mask, dtype=bool)
        box = window(mask, spacing, 0.0)
        sub = mask[box]
        surface = np.argwhere(sub & ~ndimage.binary_erosion(sub, border_value=0))
        origin = np.array([b.start for b in box])
        d, _ = cKDTree((surface + origin) * spacing).query(ijk * spacing)
        clearance = np.maximum(d - 0.5 * diagonal, 0.0)
        nearest = np.minimum(nearest, clearance)
        excess = np.minimum(excess, clearance - c.margin_mm)
    return excess + diagonal, nearest + diagonal


def planning_reach_mm(grid: Volume, criticals: Sequence[Critical], entries: Entries, targets_mm: object,
                      limits: Limits | None = None) -> float:
    """A band for :func:`distance_maps` wide enough that planning these entries to these targets reads every
    figure inside it (so the banded maps need no exact re-plan): the risk cut-off, and for every path a bound
    on its smallest margin excess and nearest distance (neither exceeds its value at either end), plus a voxel
    diagonal."""
    limits = limits or Limits()
    limits.check()
    _check_grid(grid)
    if not criticals:
        raise PlanningError("criticals", "name at least one critical structure (an empty list plans blind)")
    points = _points(entries.points_mm, "entries")
    n = len(points)
    excess, near = _endpoint_bounds(grid, criticals, np.concatenate([points, _points(targets_mm, "targets")]))
    least_margin = min(c.margin_mm for c in criticals)
    needed = max(limits.risk_cutoff_mm, min(excess[:n].max(), excess[n:].max()),
                 min(near[:n].max(), near[n:].max()) - least_margin)
    return needed + float(np.linalg.norm(grid.spacing_mm)) + 2 * BAND_SLACK_MM


# --- scoring ---------------------------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _trilinear(volume: NDArray[np.float32], x: float, y: float, z: float) -> float:
    ni, nj, nk = volume.shape
    i0 = min(max(int(math.floor(x)), 0), ni - 2) if ni > 1 else 0
    j0 = min(max(int(math.floor(y)), 0), nj - 2) if nj > 1 else 0
    k0 = min(max(int(math.floor(z)), 0), nk - 2) if nk > 1 else 0
    fx = min(max(x - i0, 0.0), 1.0) if ni > 1 else 0.0
    fy = min(max(y - j0, 0.0), 1.0) if nj > 1 else 0.0
    fz = min(max(z - k0, 0.0), 1.0) if nk > 1 else 0.0
    i1 = i0 + 1 if ni > 1 else i0
    j1 = j0 + 1 if nj > 1 else j0
    k1 = k0 + 1 if nk > 1 else k0
    c00 = volume[i0, j0, k0] * (1 - fx) + volume[i1, j0, k0] * fx
    c10 = volume[i0, j1, k0] * (1 - fx) + volume[i1, j1, k0] * fx
    c01 = volume[i0, j0, k1] * (1 - fx) + volume[i1, j0, k1] * fx
    c11 = volume[i0, j1, k1] * (1 - fx) + volume[i1, j1, k1] * fx
    return (c00 * (1 - fy) + c10 * fy) * (1 - fz) + (c01 * (1 - fy) + c11 * fy) * fz


@numba.njit(parallel=True, cache=True)
def _score_pairs(excess: NDArray[np.float32], entries: Array, targets: Array, pair_e: NDArray[np.int64],
                 pair_t: NDArray[np.int64], n_samples: NDArray[np.int64], cutoff: float) -> tuple[Array, Array]:
    """For each (entry, target) pair (voxel-index coordinates): the minimum of ``excess`` over the samples and
    the length-normalised trapezoid integral of ``clip(1 - excess / cutoff, 0, 1)``."""
    n = pair_e.shape[0]
    minimum = np.empty(n)
    risk = np.empty(n)
    for p in numba.prange(n):
        e = entries[pair_e[p]]
        t = targets[pair_t[p]]
        m = n_samples[p]
        low = np.inf
        total = 0.0
        for k in range(m):
            f = k / (m - 1)
            v = _trilinear(excess, e[0] + (t[0] - e[0]) * f, e[1] + (t[1] - e[1]) * f, e[2] + (t[2] - e[2]) * f)
            low = min(low, v)
            r = min(max(1.0 - v / cutoff, 0.0), 1.0)
            total += 0.5 * r if (k == 0 or k == m - 1) else r
        minimum[p] = low
        risk[p] = total / (m - 1)
    return minimum, risk


def sample_counts(lengths_mm: Array, step_mm: float) -> NDArray[np.int64]:
    """Samples per path so that consecutive samples are at most ``step_mm`` apart (both ends included)."""
    return np.maximum(np.ceil(lengths_mm / step_mm).astype(np.int64), 1) + 1


@dataclass(frozen=True, eq=False)
class Scores:
    """Every entry x target pair: geometry, which passed the cheap limits, and for those the path figures."""

    length_mm: Array  # (ne, nt)
    angle_deg: Array  # (ne, nt)
    geometric_ok: NDArray[np.bool_]  # (ne, nt): length and angle within limits
    min_excess_mm: Array  # (ne, nt), NaN where not sampled
    risk: Array  # (ne, nt), NaN where not sampled


def score_paths(maps: DistanceMaps, entries: Entries, targets_mm: Array, limits: Limits) -> Scores:
    """Length, entry angle, minimum margin excess and risk of every entry x target straight path (vectorised:
    the geometry as arrays, the sampling in one compiled parallel loop over pairs)."""
    grid = maps.grid
    delta = targets_mm[None, :, :] - entries.points_mm[:, None, :]
    length = np.linalg.norm(delta, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = -np.einsum("etk,ek->et", delta, entries.normals) / length
    angle = np.degrees(np.arccos(np.clip(np.nan_to_num(cos, nan=-1.0), -1.0, 1.0)))
    ok = (length <= limits.max_length_mm) & (angle <= limits.max_angle_deg) & (length > 0)
    pair_e, pair_t = np.nonzero(ok)
    minimum = np.full(length.shape, np.nan)
    risk = np.full(length.shape, np.nan)
    if pair_e.size:
        e_idx = grid.world_to_index(entries.points_mm)
        t_idx = grid.world_to_index(targets_mm)
        counts = sample_counts(length[pair_e, pair_t], limits.step_mm)
        low, r = _score_pairs(maps.excess_mm, e_idx, t_idx, pair_e.astype(np.int64), pair_t.astype(np.int64),
                              counts, float(limits.risk_cutoff_mm))
        minimum[pair_e, pair_t] = low
        risk[pair_e, pair_t] = r
    return Scores(length, angle, ok, minimum, risk)


# --- planning --------------------------------------------------------------------------------------------------


def path_samples(entry_mm: Array, target_mm: Array, step_mm: float) -> Array:
    """Points (n, 3) from entry to target, consecutive ones at most ``step_mm`` apart."""
    n = int(sample_counts(np.asarray([np.linalg.norm(target_mm - entry_mm)]), step_mm)[0])
    f = np.linspace(0.0, 1.0, n)[:, None]
    return np.asarray(entry_mm + (target_mm - entry_mm) * f, dtype=np.float64)


def _banded_distances(maps: DistanceMaps, points_mm: Array) -> Array:
    ijk = maps.grid.world_to_index(points_mm).T
    return np.stack([ndimage.map_coordinates(m, ijk, order=1, mode="nearest") for m in maps.surface_mm], axis=1)


def structure_distances(maps: DistanceMaps, points_mm: Array) -> Array:
    """Distance (mm) from each point to each structure: shape (n_points, n_structures). Exact-map values even
    on banded maps: a value read at or beyond its structure's band is read again on ``maps.exact()``."""
    d = _banded_distances(maps, points_mm)
    if maps.reach_mm is not None and np.any(d >= np.asarray(maps.margins_mm) + maps.resolved_below_mm()):
        d = _banded_distances(maps.exact(), points_mm)
    return d


def _trajectory(maps: DistanceMaps, entry: Array, target: Array, scores: Scores, e: int, t: int,
                limits: Limits) -> Trajectory:
    d = _banded_distances(maps, path_samples(entry, target, limits.step_mm))  # the nearest: checked in _ranked
    s = int(np.argmin(d.min(axis=0)))
    return Trajectory(triple(entry), triple(target), maps.grid.frame,
                      float(scores.length_mm[e, t]), float(scores.angle_deg[e, t]), float(scores.risk[e, t]),
                      float(scores.min_excess_mm[e, t]), float(d[:, s].min()), maps.names[s])


def _rejections(scores: Scores, limits: Limits, admissible: NDArray[np.bool_]) -> dict[str, int]:
    too_long = scores.length_mm > limits.max_length_mm
    steep = ~too_long & (scores.angle_deg > limits.max_angle_deg)
    return {"max_length_mm": int(too_long.sum()), "max_angle_deg": int(steep.sum()),
            "margin": int((scores.geometric_ok & ~admissible).sum())}


def admissible_pairs(scores: Scores, limits: Limits) -> NDArray[np.bool_]:
    """Pairs meeting every hard constraint (the margin with the half-step guard between samples)."""
    with np.errstate(invalid="ignore"):
        return scores.geometric_ok & (scores.min_excess_mm >= 0.5 * limits.step_mm)


def plan_trajectories(maps: DistanceMaps, entries: Entries, targets_mm: object, limits: Limits | None = None,
                      top: int = 10, rank_by: str = "risk") -> Plan:
    """Rank the admissible entry -> target paths by ``rank_by``: ``"risk"`` (then margin excess, then length)
    or ``"clearance"`` (the largest smallest margin excess first: the max-min safest path; then risk).

    On banded maps (``maps.reach_mm``) the plan is checked to have read every figure it reports or ranks by
    (risk, every admissible path's margin excess, the candidates' nearest distances) inside the band; if not, it is
    made again on ``maps.exact()``: the same plan as on exact maps either way.

    Raises :class:`PlanningError` naming ``targets`` / ``entries`` when a point lies outside the image, and
    ``trajectory`` when no path meets every hard constraint (with the count each constraint removed)."""
    limits = limits or Limits()
    limits.check()
    if rank_by not in RANK_BY:
        raise PlanningError("rank_by", f"must be one of {RANK_BY}, got {rank_by!r}")
    targets = _points(targets_mm, "targets")
    _inside(maps.grid, targets, "targets")
    points = _points(entries.points_mm, "entries")
    normals = _points(entries.normals, "entries.normals")
    if normals.shape != points.shape:
        raise PlanningError("entries.normals", f"shape {normals.shape} does not match the entries {points.shape}")
    _inside(maps.grid, points, "entries")
    unit = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    if maps.resolved_below_mm() <= max(limits.risk_cutoff_mm, 0.5 * limits.step_mm):  # not even risk / margin
        maps = maps.exact()
    plan = _ranked(maps, Entries(points, unit), targets, limits, top, rank_by)
    if plan is None:
        plan = _ranked(maps.exact(), Entries(points, unit), targets, limits, top, rank_by)
    assert plan is not None  # exact maps resolve everything
    return plan


def _ranked(maps: DistanceMaps, entries: Entries, targets: Array, limits: Limits, top: int, rank_by: str) -> Plan | None:
    """The plan, or None when banded ``maps`` leave a figure it needs unresolved (read at or beyond the band)."""
    scores = score_paths(maps, entries, targets, limits)
    admissible = admissible_pairs(scores, limits)
    rejected = _rejections(scores, limits, admissible)
    if not admissible.any():
        raise PlanningError("trajectory", f"no admissible trajectory among {admissible.size} paths "
                                          f"(removed: {rejected}); no path is proposed")
    e_idx, t_idx = np.nonzero(admissible)
    if np.any(scores.min_excess_mm[e_idx, t_idx] >= maps.resolved_below_mm()):
        return None
    keys = {"risk": (scores.length_mm[e_idx, t_idx], -scores.min_excess_mm[e_idx, t_idx], scores.risk[e_idx, t_idx]),
            "clearance": (scores.length_mm[e_idx, t_idx], scores.risk[e_idx, t_idx], -scores.min_excess_mm[e_idx, t_idx])}
    order = np.lexsort(keys[rank_by])[:max(int(top), 1)]
    points = entries.points_mm
    ranked = tuple(
        _with_rank(_trajectory(maps, points[e_idx[i]], targets[t_idx[i]], scores, e_idx[i], t_idx[i], limits), r)
        for r, i in enumerate(order, start=1))
    if maps.reach_mm is not None:
        nearest_band = min(maps.margins_mm) + maps.resolved_below_mm()
        if any(t.min_distance_mm >= nearest_band for t in ranked):
            return None
    return Plan(maps.grid.frame, ranked, int(admissible.size), rejected)


def _with_rank(t: Trajectory, rank: int, electrode: str = "") -> Trajectory:
    return Trajectory(t.entry_mm, t.target_mm, t.frame, t.length_mm, t.angle_deg, t.risk, t.margin_excess_mm,
                      t.min_distance_mm, t.nearest_structure, rank, electrode or t.electrode)


# --- several electrodes ----------------------------------------------------------------------------------------


def segment_distance(p0: Array, p1: Array, q0: Array, q1: Array) -> Array:
    """Closest distance between segments p0-p1 and q0-q1 (arrays broadcast over leading axes; Ericson,
    Real-Time Collision Detection, 5.1.9, with the parallel case handled)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = np.einsum("...k,...k", d1, d1)
    e = np.einsum("...k,...k", d2, d2)
    f = np.einsum("...k,...k", d2, r)
    c = np.einsum("...k,...k", d1, r)
    b = np.einsum("...k,...k", d1, d2)
    denom = a * e - b * b
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(denom > 1e-12 * np.maximum(a * e, 1e-300), np.clip((b * f - c * e) / denom, 0, 1), 0.0)
        t = np.where(e > 1e-300, (b * s + f) / e, 0.0)
        s = np.where(t < 0, np.clip(-c / np.where(a > 0, a, 1), 0, 1), np.where(t > 1, np.clip((b - c) / np.where(
            a > 0, a, 1), 0, 1), s))
    t = np.clip(t, 0, 1)
    closest = (p0 + d1 * s[..., None]) - (q0 + d2 * t[..., None])
    return np.asarray(np.linalg.norm(closest, axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class Electrode:
    """One electrode to place: a name and its target points (mm)."""

    name: str
    targets_mm: object


def _search(candidates: list[tuple[Trajectory, ...]], separation: float, budget: int) -> list[Trajectory] | None:
    chosen: list[Trajectory] = []
    visits = 0

    def clear(t: Trajectory) -> bool:
        if not chosen:
            return True
        p0, p1 = np.asarray(t.entry_mm), np.asarray(t.target_mm)
        q0 = np.asarray([c.entry_mm for c in chosen])
        q1 = np.asarray([c.target_mm for c in chosen])
        return bool(np.all(segment_distance(p0, p1, q0, q1) >= separation))

    def depth(level: int) -> bool:
        nonlocal visits
        if level == len(candidates):
            return True
        for t in candidates[level]:
            visits += 1
            if visits > budget:
                return False
            if clear(t):
                chosen.append(t)
                if depth(level + 1):
                    return True
                chosen.pop()
        return False

    return chosen if depth(0) else None


def plan_electrodes(maps: DistanceMaps, entries: Entries, electrodes: Sequence[Electrode],
                    limits: Limits | None = None, per_electrode: int = 30, budget: int = 20000) -> tuple[Trajectory, ...]:
    """One trajectory per electrode, each admissible, every pair at least ``min_separation_mm`` apart.

    Each electrode's ``per_electrode`` best candidates by risk are searched depth first in the given order (the
    first electrode gets its best path that leaves room for the others). Raises ``PlanningError("electrodes")``
    when no combination within the search budget keeps the separation."""
    limits = limits or Limits()
    if not electrodes:
        raise PlanningError("electrodes", "name at least one electrode")
    names = [e.name for e in electrodes]
    if len(set(names)) != len(names):
        raise PlanningError("electrodes", f"names must be unique, got {names}")
    candidates = []
    for e in electrodes:
        try:
            plan = plan_trajectories(maps, entries, e.targets_mm, limits, top=per_electrode)
        except PlanningError as exc:
            raise PlanningError(f"electrodes.{e.name}.{exc.field}", exc.message) from None
        candidates.append(tuple(_with_rank(t, t.rank, e.name) for t in plan.candidates))
    found = _search(candidates, limits.min_separation_mm, budget)
    if found is None:
        raise PlanningError("electrodes", f"no combination of the {per_electrode} best paths per electrode keeps "
                                          f"{limits.min_separation_mm} mm between every pair of trajectories")
    return tuple(found)
