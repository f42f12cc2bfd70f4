"""Analytic phantoms: shapes with exact volume, surface area and extent, rasterised onto any voxel grid.

Each shape knows its signed distance field (``sdf``: millimetres, negative inside, zero on the surface), its
analytic volume (mL), surface area (mm^2), centroid, axis-aligned bounding box and maximum (Feret) diameter, so
that segmentation, statistics, meshing and planning tests compare what they measure with exact values.

* :class:`Sphere`, :class:`Ellipsoid` (area from the exact elliptic-integral formula), :class:`Cylinder` (flat
  caps), :class:`Box` (any orientation), and :class:`Tube`: a vessel swept along a polyline whose corners are
  rounded by circular arcs (fillets) with hemispherical ends. A tube whose bend radius is at least its radius
  and that does not come back near itself has exactly ``pi r^2 L + 4/3 pi r^3`` volume and ``2 pi r L +
  4 pi r^2`` area (the tube formula for curves: Weyl 1939), ``L`` the centreline's length.
* :func:`label_volume` makes a label map (a voxel is in a shape when its centre is: ``sdf <= 0``),
  :func:`sdf_volume` the distance field on the grid, :func:`partial_volume` the fraction of each voxel inside
  (a linear ramp across the voxel's width along the surface normal: exact on average for smooth surfaces),
  :func:`intensity_volume` an image with partial-volume edges and optional Gaussian noise.

Coordinates are millimetres in the grid volume's frame (whatever its affine says: LPS or RAS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import special

from medtwin.arrays import Array
from medtwin.imaging.volume import Frame, Triple, Volume, VolumeError, grid_affine, triple

#: Points per chunk when evaluating a distance field (bounds the temporary memory to a few hundred MB).
_CHUNK = 1 << 20


class Shape(Protocol):
    """What every phantom shape offers."""

    @property
    def volume_ml(self) -> float: ...
    @property
    def area_mm2(self) -> float: ...
    @property
    def centroid_mm(self) -> Array: ...
    @property
    def bounds_mm(self) -> Array: ...
    @property
    def feret_mm(self) -> float | None: ...
    def sdf(self, points_mm: Array) -> Array: ...
    def contains(self, points_mm: Array) -> NDArray[np.bool_]: ...


class _Solid:
    """``contains`` from the distance field; shapes with a cheaper inside test override it."""

    def sdf(self, points_mm: Array) -> Array:
        raise NotImplementedError

    def contains(self, points_mm: Array) -> NDArray[np.bool_]:
        """Whether each point (..., 3) lies in the solid (its surface included)."""
        return np.asarray(self.sdf(points_mm) <= 0.0)


class _Centred(_Solid):
    """A solid symmetric about its ``centre_mm``, which is therefore its centroid."""

    centre_mm: Array

    @property
    def centroid_mm(self) -> Array:
        return self.centre_mm.copy()


def _vec3(value: Sequence[float] | Array, name: str) -> Array:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise VolumeError(name, f"must be three finite numbers (mm), got {np.asarray(value).tolist()}")
    return v


def _positive(value: float, name: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise VolumeError(name, f"must be a positive length in mm, got {value}")
    return v


def _rotation(rotation: Sequence[Sequence[float]] | Array | None) -> Array:
    if rotation is None:
        return np.eye(3)
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-9) or np.linalg.det(r) < 0:
        raise VolumeError("rotation", "must be a 3x3 proper rotation matrix (orthonormal, determinant +1)")
    return r


def _orient(solid: Ellipsoid | Box, extent: str) -> None:
    """Check and store an oriented solid's ``centre_mm``, its positive 3-vector ``extent`` and ``rotation``."""
    object.__setattr__(solid, "centre_mm", _vec3(solid.centre_mm, "centre_mm"))
    sizes = _vec3(getattr(solid, extent), extent)
    for s in sizes:
        _positive(float(s), extent)
    object.__setattr__(solid, extent, sizes)
    object.__setattr__(solid, "rotation", _rotation(solid.rotation))


def rotation_about(axis: Sequence[float], angle_deg: float) -> Array:
    """The rotation by ``angle_deg`` about ``axis`` (Rodrigues)."""
    k = _vec3(axis, "axis")
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    a = math.radians(angle_deg)
    return np.eye(3) + math.sin(a) * kx + (1.0 - math.cos(a)) * kx @ kx


def _local(points: Array, centre: Array, rotation: Array) -> Array:
    """World points -> the shape's own axes (``world = centre + rotation @ local``)."""
    return np.asarray((np.asarray(points, dtype=np.float64) - centre) @ rotation, dtype=np.float64)


def _rotated_half_extent(rotation: Array, half: Array) -> Array:
    """Half-extent along the world axes of a centred box with local half sizes ``half``."""
    return np.asarray(np.abs(rotation) @ half, dtype=np.float64)


@dataclass(frozen=True)
class Sphere(_Centred):
    centre_mm: Array
    radius_mm: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre_mm", _vec3(self.centre_mm, "centre_mm"))
        object.__setattr__(self, "radius_mm", _positive(self.radius_mm, "radius_mm"))

    @property
    def volume_ml(self) -> float:
        return 4.0 / 3.0 * math.pi * self.radius_mm**3 / 1000.0

    @property
    def area_mm2(self) -> float:
        return 4.0 * math.pi * self.radius_mm**2

    @property
    def bounds_mm(self) -> Array:
        return np.stack([self.centre_mm - self.radius_mm, self.centre_mm + self.radius_mm])

    @property
    def feret_mm(self) -> float:
        return 2.0 * self.radius_mm

    def sdf(self, points_mm: Array) -> Array:
        return np.asarray(np.linalg.norm(np.asarray(points_mm) - self.centre_mm, axis=-1) - self.radius_mm)


@dataclass(frozen=True)
class Ellipsoid(_Centred):
    """Semi-axes ``semi_axes_mm`` along the local axes; ``world = centre + rotation @ local``."""

    centre_mm: Array
    semi_axes_mm: Array
    rotation: Array = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        _orient(self, "semi_axes_mm")

    @property
    def volume_ml(self) -> float:
        return 4.0 / 3.0 * math.pi * float(np.prod(self.semi_axes_mm)) / 1000.0

    @property
    def area_mm2(self) -> float:
        """Exact: Legendre's form with incomplete elliptic integrals (DLMF 19.33.2)."""
        a, b, c = sorted((float(x) for x in self.semi_axes_mm), reverse=True)
        if math.isclose(a, c):
            return 4.0 * math.pi * a * a
        phi = math.acos(c / a)
        m = (a * a * (b * b - c * c)) / (b * b * (a * a - c * c))
        e = float(special.ellipeinc(phi, m))
        f = float(special.ellipkinc(phi, m))
        s = math.sin(phi)
        return 2.0 * math.pi * c * c + 2.0 * math.pi * a * b / s * (e * s * s + f * (1.0 - s * s))

    @property
    def bounds_mm(self) -> Array:
        # support function of an ellipsoid along world axis i: sqrt(sum_j (R_ij a_j)^2)
        half = np.sqrt(((self.rotation * self.semi_axes_mm) ** 2).sum(axis=1))
        return np.stack([self.centre_mm - half, self.centre_mm + half])

    @property
    def feret_mm(self) -> float:
        return 2.0 * float(self.semi_axes_mm.max())

    def sdf(self, points_mm: Array) -> Array:
        """Exact Euclidean signed distance: the root ``t`` of Eberly's closest-point equation
        ``sum((e_i y_i / (t + e_i^2))^2) = 1`` by Newton's method from the left, where the function is convex and
        decreasing, so every step stays left of the root and converges (quadratically near it)."""
        y = np.abs(_local(points_mm, self.centre_mm, self.rotation))
        e = self.semi_axes_mm
        y = np.maximum(y, 1e-9 * float(e.min()))  # on a symmetry plane: the limit from one side
        ey = e * y
        e2 = e * e
        inside = np.sum((y / e) ** 2, axis=-1) <= 1.0
        flat_ey, flat_t = ey.reshape(-1, 3), np.max(ey - e2, axis=-1).reshape(-1)  # F(t) >= 0: left of the root
        active = np.arange(len(flat_t))
        for _ in range(200):  # points next to the centre start at the pole and need ~60 steps; most need < 10
            a, t = flat_ey[active], flat_t[active]
            q = a / (t[:, None] + e2)
            f = np.sum(q * q, axis=1) - 1.0
            step = f / (2.0 * np.sum(q * q / (t[:, None] + e2), axis=1))
            flat_t[active] = t + step
            active = active[np.abs(step) > 1e-12 * (np.abs(t) + float(e2.max()))]
            if not active.size:
                break
        t = flat_t.reshape(y.shape[:-1])
        x = e2 * y / (t[..., None] + e2)
        d = np.linalg.norm(y - x, axis=-1)
        return np.asarray(np.where(inside, -d, d))

    def contains(self, points_mm: Array) -> NDArray[np.bool_]:
        y = _local(points_mm, self.centre_mm, self.rotation)
        return np.asarray(np.sum((y / self.semi_axes_mm) ** 2, axis=-1) <= 1.0)


@dataclass(frozen=True)
class Cylinder(_Centred):
    """A solid cylinder with flat caps: ``axis`` direction, ``length_mm`` between the caps, centred on ``centre_mm``."""

    centre_mm: Array
    axis: Array
    radius_mm: float
    length_mm: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre_mm", _vec3(self.centre_mm, "centre_mm"))
        ax = _vec3(self.axis, "axis")
        if np.linalg.norm(ax) == 0.0:
            raise VolumeError("axis", "must not be the zero vector")
        object.__setattr__(self, "axis", ax / np.linalg.norm(ax))
        object.__setattr__(self, "radius_mm", _positive(self.radius_mm, "radius_mm"))
        object.__setattr__(self, "length_mm", _positive(self.length_mm, "length_mm"))

    @property
    def volume_ml(self) -> float:
        return math.pi * self.radius_mm**2 * self.length_mm / 1000.0

    @property
    def area_mm2(self) -> float:
        return 2.0 * math.pi * self.radius_mm * (self.radius_mm + self.length_mm)

    @property
    def bounds_mm(self) -> Array:
        half = np.abs(self.axis) * self.length_mm / 2.0 + self.radius_mm * np.sqrt(
            np.clip(1.0 - self.axis**2, 0.0, None))
        return np.stack([self.centre_mm - half, self.centre_mm + half])

    @property
    def feret_mm(self) -> float:
        return math.hypot(self.length_mm, 2.0 * self.radius_mm)

    def sdf(self, points_mm: Array) -> Array:
        q = np.asarray(points_mm, dtype=np.float64) - self.centre_mm
        along = q @ self.axis
        radial = np.linalg.norm(q - along[..., None] * self.axis, axis=-1)
        return _capped(radial - self.radius_mm, np.abs(along) - self.length_mm / 2.0)


def _capped(d1: Array, d2: Array) -> Array:
    """Signed distance to the intersection of two orthogonal slabs/half-spaces (exact for box-like corners)."""
    outside = np.hypot(np.maximum(d1, 0.0), np.maximum(d2, 0.0))
    return np.asarray(outside + np.minimum(np.maximum(d1, d2), 0.0))


@dataclass(frozen=True)
class Box(_Centred):
    """A rectangular box with edge lengths ``size_mm`` along its local axes; ``world = centre + rotation @ local``."""

    centre_mm: Array
    size_mm: Array
    rotation: Array = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        _orient(self, "size_mm")

    @property
    def volume_ml(self) -> float:
        return float(np.prod(self.size_mm)) / 1000.0

    @property
    def area_mm2(self) -> float:
        a, b, c = (float(s) for s in self.size_mm)
        return 2.0 * (a * b + b * c + c * a)

    @property
    def bounds_mm(self) -> Array:
        half = _rotated_half_extent(self.rotation, self.size_mm / 2.0)
        return np.stack([self.centre_mm - half, self.centre_mm + half])

    @property
    def feret_mm(self) -> float:
        return float(np.linalg.norm(self.size_mm))

    def sdf(self, points_mm: Array) -> Array:
        q = np.abs(_local(points_mm, self.centre_mm, self.rotation)) - self.size_mm / 2.0
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        return np.asarray(outside + np.minimum(q.max(axis=-1), 0.0))


@dataclass(frozen=True)
class _Arc:
    centre: Array
    u: Array  # unit, centre -> arc start
    v: Array  # unit, in the arc's plane, 90 degrees on towards the arc's end
    radius: float
    angle: float  # radians


@dataclass(frozen=True)
class Tube(_Solid):
    """A vessel: radius ``radius_mm`` around a polyline whose corners are rounded with arcs of ``bend_radius_mm``.

    The ends are hemispherical. ``bend_radius_mm`` defaults to twice the radius and must be at least the radius
    (else the tube would fold over itself at a bend and the formulas would not hold).
    """

    points_mm: Array
    radius_mm: float
    bend_radius_mm: float | None = None
    _segments: tuple[tuple[Array, Array], ...] = field(init=False, repr=False)
    _arcs: tuple[_Arc, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pts = np.asarray(self.points_mm, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2 or not np.all(np.isfinite(pts)):
            raise VolumeError("points_mm", "must be two or more finite 3-D points (mm)")
        if np.any(np.linalg.norm(np.diff(pts, axis=0), axis=1) == 0.0):
            raise VolumeError("points_mm", "has two consecutive equal points")
        r = _positive(self.radius_mm, "radius_mm")
        rho = _positive(self.bend_radius_mm if self.bend_radius_mm is not None else 2.0 * r, "bend_radius_mm")
        if rho < r:
            raise VolumeError("bend_radius_mm", f"must be at least the tube radius ({r} mm), got {rho}")
        object.__setattr__(self, "points_mm", pts)
        object.__setattr__(self, "radius_mm", r)
        object.__setattr__(self, "bend_radius_mm", rho)
        segments, arcs = _fillet(pts, rho)
        object.__setattr__(self, "_segments", segments)
        object.__setattr__(self, "_arcs", arcs)

    @property
    def length_mm(self) -> float:
        """Length of the (rounded) centreline."""
        straight = sum(float(np.linalg.norm(b - a)) for a, b in self._segments)
        return straight + sum(a.radius * a.angle for a in self._arcs)

    @property
    def volume_ml(self) -> float:
        r = self.radius_mm
        return (math.pi * r * r * self.length_mm + 4.0 / 3.0 * math.pi * r**3) / 1000.0

    @property
    def area_mm2(self) -> float:
        r = self.radius_mm
        return 2.0 * math.pi * r * self.length_mm + 4.0 * math.pi * r * r

    def centreline_mm(self, step_mm: float = 0.5) -> Array:
        """Points along the rounded centreline, about ``step_mm`` apart, from the first point to the last."""
        step = _positive(step_mm, "step_mm")
        out: list[Array] = []
        for idx, (a, b) in enumerate(self._segments):
            n = max(int(math.ceil(np.linalg.norm(b - a) / step)), 1)
            out.append(a + np.linspace(0.0, 1.0, n, endpoint=False)[:, None] * (b - a))
            if idx < len(self._arcs):
                arc = self._arcs[idx]
                m = max(int(math.ceil(arc.radius * arc.angle / step)), 1)
                th = np.linspace(0.0, arc.angle, m, endpoint=False)[:, None]
                out.append(arc.centre + arc.radius * (np.cos(th) * arc.u + np.sin(th) * arc.v))
        out.append(self._segments[-1][1][None, :])
        return np.concatenate(out)

    @property
    def centroid_mm(self) -> Array:
        """Centroid of the solid: the centreline's length-weighted mean plus the two end caps' share."""
        pts = self.centreline_mm(step_mm=min(0.05, self.radius_mm / 10.0))
        mid = 0.5 * (pts[1:] + pts[:-1])
        w = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        r = self.radius_mm
        body = math.pi * r * r * (mid * w[:, None]).sum(axis=0)
        ends = []
        for end, inward in ((pts[0], pts[1] - pts[0]), (pts[-1], pts[-2] - pts[-1])):
            n = inward / np.linalg.norm(inward)
            ends.append(2.0 / 3.0 * math.pi * r**3 * (end - 3.0 / 8.0 * r * n))  # hemisphere centroid 3r/8
        return np.asarray((body + ends[0] + ends[1]) / (self.volume_ml * 1000.0))

    @property
    def bounds_mm(self) -> Array:
        pts = self.centreline_mm(step_mm=min(0.05, self.radius_mm / 10.0))
        return np.stack([pts.min(axis=0) - self.radius_mm, pts.max(axis=0) + self.radius_mm])

    @property
    def feret_mm(self) -> None:
        """No closed form for a general tube."""
        return None

    def centreline_distance(self, points_mm: Array) -> Array:
        """Distance (mm) from each point to the rounded centreline."""
        p = np.asarray(points_mm, dtype=np.float64)
        best = np.full(p.shape[:-1], np.inf)
        for a, b in self._segments:
            ab = b - a
            t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
            best = np.minimum(best, np.linalg.norm(p - a - t[..., None] * ab, axis=-1))
        for arc in self._arcs:
            best = np.minimum(best, _arc_distance(p, arc))
        return best

    def sdf(self, points_mm: Array) -> Array:
        return np.asarray(self.centreline_distance(points_mm) - self.radius_mm)


def _fillet(pts: Array, rho: float) -> tuple[tuple[tuple[Array, Array], ...], tuple[_Arc, ...]]:
    """Straight pieces and corner arcs of a polyline rounded with radius ``rho``."""
    d = np.diff(pts, axis=0)
    lengths = np.linalg.norm(d, axis=1)
    t = d / lengths[:, None]
    turns = np.arccos(np.clip(np.sum(t[:-1] * t[1:], axis=1), -1.0, 1.0))
    if np.any(turns > math.pi - 1e-6):
        raise VolumeError("points_mm", f"turns back on itself at point {int(np.argmax(turns)) + 1}")
    tangent = np.concatenate([[0.0], rho * np.tan(turns / 2.0), [0.0]])  # straight length each corner takes
    short = np.flatnonzero(tangent[:-1] + tangent[1:] > lengths + 1e-9)
    if short.size:
        s = int(short[0])
        raise VolumeError("bend_radius_mm", f"too large: the segment from point {s} to {s + 1} "
                                            f"({lengths[s]:.3g} mm) is shorter than its corners' arcs need")
    starts, ends, arcs = [pts[0]], [], []
    for k in range(1, len(pts) - 1):
        if turns[k - 1] < 1e-9:
            continue  # collinear: no corner, the straight piece goes on
        t_in, t_out = t[k - 1], t[k]
        a = pts[k] - tangent[k] * t_in
        inward = t_out - (t_out @ t_in) * t_in
        inward /= np.linalg.norm(inward)
        ends.append(a)
        starts.append(pts[k] + tangent[k] * t_out)
        arcs.append(_Arc(a + rho * inward, -inward, t_in, rho, float(turns[k - 1])))
    ends.append(pts[-1])
    return tuple(zip(starts, ends, strict=True)), tuple(arcs)


def _arc_distance(p: Array, arc: _Arc) -> Array:
    q = p - arc.centre
    x, y = q @ arc.u, q @ arc.v
    n = np.cross(arc.u, arc.v)
    z = q @ n
    phi = np.arctan2(y, x)
    in_span = (phi >= 0.0) & (phi <= arc.angle)
    on_arc = np.hypot(np.hypot(x, y) - arc.radius, z)
    start = arc.centre + arc.radius * arc.u
    end = arc.centre + arc.radius * (math.cos(arc.angle) * arc.u + math.sin(arc.angle) * arc.v)
    to_ends = np.minimum(np.linalg.norm(p - start, axis=-1), np.linalg.norm(p - end, axis=-1))
    return np.asarray(np.where(in_span, on_arc, to_ends))


# --------------------------------------------------------------------------- rasterising onto a grid


def grid(shape: tuple[int, int, int], spacing_mm: Triple, origin_mm: Triple = (0.0, 0.0, 0.0),
         frame: Frame = "RAS") -> Volume:
    """An empty (zero) volume: the grid phantoms are drawn on."""
    if len(shape) != 3 or min(shape) < 1:
        raise VolumeError("shape", f"must be three positive voxel counts, got {shape}")
    return Volume(np.zeros(shape, dtype=np.uint8), grid_affine(spacing_mm, origin_mm, frame), frame, "label")


def grid_around(shapes: Sequence[Shape], spacing_mm: Triple, margin_mm: float = 5.0,
                frame: Frame = "RAS") -> Volume:
    """The smallest axis-aligned grid with ``spacing_mm`` that holds ``shapes`` with ``margin_mm`` to spare."""
    lo = np.min([s.bounds_mm[0] for s in shapes], axis=0) - margin_mm
    hi = np.max([s.bounds_mm[1] for s in shapes], axis=0) + margin_mm
    sp = np.asarray(spacing_mm, dtype=np.float64)
    n = np.ceil((hi - lo) / sp).astype(int) + 1
    return grid((int(n[0]), int(n[1]), int(n[2])), spacing_mm, triple(lo), frame)


def voxel_centres(like: Volume) -> Array:
    """World positions (mm) of every voxel centre, shape ``(i, j, k, 3)``."""
    idx = np.indices(like.shape, dtype=np.float64)
    return np.asarray(np.moveaxis(idx, 0, -1) @ like.affine[:3, :3].T + like.affine[:3, 3], dtype=np.float64)


def _sdf_on(shape: Shape, like: Volume, inside_only: bool = False) -> NDArray[Any]:
    """The distance field on the grid (or, with ``inside_only``, whether each voxel centre is inside)."""
    # in chunks of i-slabs so a brain-sized grid never holds several (N, 3) temporaries at once
    out: NDArray[Any] = np.empty(like.shape, dtype=np.bool_ if inside_only else np.float64)
    ni, nj, nk = like.shape
    step = max(1, _CHUNK // (nj * nk))
    jk = np.moveaxis(np.indices((nj, nk), dtype=np.float64), 0, -1)
    for i0 in range(0, ni, step):
        i = np.arange(i0, min(i0 + step, ni), dtype=np.float64)
        ijk = np.concatenate([np.broadcast_to(i[:, None, None, None], (len(i), nj, nk, 1)),
                              np.broadcast_to(jk, (len(i), nj, nk, 2))], axis=-1)
        pts = ijk @ like.affine[:3, :3].T + like.affine[:3, 3]
        if inside_only:  # only points within the shape's bounding box can be inside
            lo, hi = shape.bounds_mm
            near = np.all((pts >= lo) & (pts <= hi), axis=-1)
            slab = np.zeros(near.shape, dtype=np.bool_)
            slab[near] = shape.contains(pts[near])
            out[i0:i0 + len(i)] = slab
        else:
            out[i0:i0 + len(i)] = shape.sdf(pts)
    return out


def sdf_volume(shape: Shape, like: Volume) -> Volume:
    """The shape's signed distance (mm, negative inside) at every voxel centre of ``like``'s grid."""
    return like.with_data(_sdf_on(shape, like), units="mm", labels={})


def label_volume(shapes: Shape | Sequence[tuple[Shape, int]], like: Volume,
                 names: dict[int, str] | None = None) -> Volume:
    """A label map: each voxel whose centre lies in a shape gets that shape's label (later shapes win overlaps).

    ``shapes`` is one shape (label 1) or ``(shape, label)`` pairs with labels 1..255.
    """
    pairs: Sequence[tuple[Shape, int]] = [(shapes, 1)] if not isinstance(shapes, Sequence) else shapes
    data = np.zeros(like.shape, dtype=np.uint8)
    for shape, label in pairs:
        if not 1 <= int(label) <= 255:
            raise VolumeError("label", f"must be 1..255, got {label}")
        data[_sdf_on(shape, like, inside_only=True)] = label
    labels = names if names is not None else {int(lab): type(s).__name__.lower() for s, lab in pairs}
    return like.with_data(data, units="label", labels=labels)


def partial_volume(shape: Shape, like: Volume, samples_per_axis: int = 4) -> Volume:
    """Fraction (0..1) of each voxel inside the shape.

    Voxels whose centre is further from the surface than half the voxel's diagonal are wholly in or out; the
    ones in that band are sampled on a regular ``samples_per_axis``^3 sub-grid (error ~ 1/samples^2 of a voxel).
    """
    if samples_per_axis < 1:
        raise VolumeError("samples_per_axis", f"must be >= 1, got {samples_per_axis}")
    sdf = _sdf_on(shape, like)
    a3 = like.affine[:3, :3]
    half_diag = 0.5 * float(np.linalg.norm(a3.sum(axis=1))) + 0.5 * float(np.abs(a3).sum(axis=0).max())
    frac = (sdf <= 0.0).astype(np.float64)
    band = np.argwhere(np.abs(sdf) < half_diag).astype(np.float64)
    if band.size:
        n = samples_per_axis
        sub = (np.arange(n) + 0.5) / n - 0.5
        offsets = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), axis=-1).reshape(-1, 3)
        inside = np.zeros(len(band))
        for chunk in range(0, len(band), max(1, _CHUNK // len(offsets))):
            ijk = band[chunk:chunk + _CHUNK // len(offsets), None, :] + offsets[None]
            pts = ijk @ a3.T + like.affine[:3, 3]
            inside[chunk:chunk + len(ijk)] = (shape.sdf(pts) <= 0.0).mean(axis=1)
        b = band.astype(int)
        frac[b[:, 0], b[:, 1], b[:, 2]] = inside
    return like.with_data(frac, units="fraction", labels={})


def intensity_volume(shape: Shape, like: Volume, inside: float = 100.0, outside: float = 0.0,
                     noise_sd: float = 0.0, rng: np.random.Generator | None = None) -> Volume:
    """An image: ``inside`` within the shape, ``outside`` beyond, partial-volume edges, optional Gaussian noise."""
    frac = partial_volume(shape, like).data.astype(np.float64)
    img = outside + (inside - outside) * frac
    if noise_sd > 0.0:
        if rng is None:
            raise VolumeError("rng", "a numpy Generator is needed when noise_sd > 0")
        img = img + rng.normal(0.0, noise_sd, img.shape)
    return like.with_data(img, units="a.u.", labels={})


@dataclass(frozen=True, eq=False)
class SkullPhantom:
    """A skull (label 1) with a defect, the bone the defect removed, and the true mid-sagittal plane
    (``normal . x = offset_mm``)."""

    skull: Volume
    missing: NDArray[np.bool_]
    plane_normal: Array
    plane_offset_mm: float


def skull_phantom(spacing_mm: float = 1.5, *, turn_deg: float = 4.0,
                  centre_mm: Triple = (0.0, 0.0, 0.0), defect: bool = True,
                  midline: bool = False) -> SkullPhantom:
    """An ellipsoidal skull shell 7 mm thick (outer semi-axes 70 x 88 x 64 mm) turned ``turn_deg`` about the
    superior axis, with an 18 mm-radius cylindrical defect on the right side (or, with ``midline``, across the
    midline at the vertex, which mirroring cannot repair)."""
    rot = rotation_about([0.0, 0.0, 1.0], turn_deg)
    c = np.asarray(centre_mm, dtype=np.float64)
    outer = Ellipsoid(c, np.array([70.0, 88.0, 64.0]), rot)
    inner = Ellipsoid(c, np.array([63.0, 81.0, 57.0]), rot)
    where, toward = ((0.0, 10.0, 60.0), (0.0, 0.0, 1.0)) if midline else ((62.0, 10.0, 25.0), (1.0, 0.0, 0.4))
    hole = Cylinder(c + rot @ np.asarray(where), rot @ np.asarray(toward), 18.0, 40.0)
    g = grid_around([outer], (spacing_mm, spacing_mm, spacing_mm), margin_mm=4.0)
    shell = _sdf_on(outer, g, inside_only=True) & ~_sdf_on(inner, g, inside_only=True)
    cut = _sdf_on(hole, g, inside_only=True) if defect else np.zeros(g.shape, dtype=bool)
    skull = g.with_data((shell & ~cut).astype(np.uint8), units="label", labels={1: "skull"})
    return SkullPhantom(skull, np.asarray(shell & cut), rot[:, 0].copy(), float(rot[:, 0] @ c))
