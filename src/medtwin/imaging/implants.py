"""Implants from the patient's anatomy: catalogue sizing from a measurement, and a patient-specific cranial plate.

Sizing (``size_implant``): a catalogue (``imaging/data/*.toml``, each with its source and status) gives the sizes on
offer and the rule linking the measured anatomy to an acceptable size (a fixed offset: cup = femoral head + 4..8 mm;
or an oversizing range: stent-graft = neck diameter x 1.10..1.20). The measurement comes with its uncertainty; a
size is proposed only when it is acceptable for every value the measurement allows. Otherwise the answer is
*not callable* with the reason (implausible measurement, outside the catalogue, or an uncertainty that spans
sizes), never a confident wrong size.

Measurements: ``femoral_head_diameter`` (least-squares sphere fit to the structure's smoothed surface),
``vessel_diameter`` (equivalent-circle diameter of the cross-section perpendicular to the vessel's axis).

Cranial plate (``cranial_plate``): the mid-sagittal plane is fitted as the plane whose mirror image of the skull
best overlaps the skull (trimmed mean distance, so the defect itself does not pull the plane), the skull is
mirrored across it, the defect is what the mirror has and the skull lacks (cleaned by a small opening, largest
piece kept), and that is meshed as a watertight surface for STL export.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, optimize

from medtwin.arrays import Array
from medtwin.errors import InputError
from medtwin.imaging.mesh import SurfaceMesh, check_mesh, mesh_mask
from medtwin.imaging.segment import keep_largest, opening
from medtwin.imaging.volume import Triple, Volume, triple

CATALOGUES = {"acetabular-cup": "acetabular_cups.toml", "aortic-stent-graft": "stent_grafts.toml"}


class ImplantError(InputError):
    """Bad input to implant sizing or design; ``field`` names it."""


# --------------------------------------------------------------------------- catalogues and sizing


@dataclass(frozen=True)
class Catalogue:
    key: str
    name: str
    status: str
    implant: str
    measure: str
    sizes_mm: tuple[float, ...]
    rule: dict[str, Any]
    plausible_mm: tuple[float, float]
    plausible_source: str

    def acceptable_interval(self, measured_mm: float) -> tuple[float, float]:
        """The implant sizes (mm) the rule accepts for an exact measurement."""
        if self.rule["kind"] == "offset":
            return measured_mm + float(self.rule["offset_min_mm"]), measured_mm + float(self.rule["offset_max_mm"])
        lo, hi = float(self.rule["oversize_min_pct"]), float(self.rule["oversize_max_pct"])
        return measured_mm * (1.0 + lo / 100.0), measured_mm * (1.0 + hi / 100.0)


def load_catalogue(key: str) -> Catalogue:
    """A catalogue shipped in ``medtwin/imaging/data`` by key (``acetabular-cup``, ``aortic-stent-graft``)."""
    if key not in CATALOGUES:
        raise ImplantError("catalogue", f"unknown {key!r}; known: {sorted(CATALOGUES)}")
    text = resources.files("medtwin.imaging").joinpath("data", CATALOGUES[key]).read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    cat, rule, plaus = raw["catalogue"], raw["rule"], raw["plausible"]
    if rule.get("kind") not in ("offset", "oversize"):
        raise ImplantError("rule.kind", f"must be 'offset' or 'oversize' in {CATALOGUES[key]}, got {rule.get('kind')!r}")
    return Catalogue(key, str(cat["name"]), str(cat["status"]), str(cat["implant"]), str(cat["measure"]),
                     tuple(sorted(float(s) for s in cat["sizes_mm"])), dict(rule),
                     (float(plaus["min_mm"]), float(plaus["max_mm"])), str(plaus["source"]))


@dataclass(frozen=True)
class SizingResult:
    """A proposed size, or ``callable=False`` with the reason."""

    catalogue: str
    status: str
    implant: str
    measured_mm: float
    uncertainty_mm: float
    callable: bool
    size_mm: float | None
    acceptable_interval_mm: tuple[float, float]
    acceptable_sizes_mm: tuple[float, ...]
    reason: str
    rule_source: str

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def size_implant(catalogue: Catalogue | str, measured_mm: float, uncertainty_mm: float = 0.0) -> SizingResult:
    """The catalogue size acceptable for every value in ``measured_mm +- uncertainty_mm`` (the one nearest the middle
    of the acceptable range), or not callable with the reason."""
    cat = load_catalogue(catalogue) if isinstance(catalogue, str) else catalogue
    if not math.isfinite(measured_mm) or measured_mm <= 0:
        raise ImplantError("measured_mm", f"must be a positive length in mm, got {measured_mm}")
    if not math.isfinite(uncertainty_mm) or uncertainty_mm < 0:
        raise ImplantError("uncertainty_mm", f"must be a non-negative length in mm, got {uncertainty_mm}")
    lo_nominal, hi_nominal = cat.acceptable_interval(measured_mm)
    # a size must suit the largest value the measurement allows (lower bound) and the smallest (upper bound)
    lo = cat.acceptable_interval(measured_mm + uncertainty_mm)[0]
    hi = cat.acceptable_interval(measured_mm - uncertainty_mm)[1]
    nominal = tuple(s for s in cat.sizes_mm if lo_nominal - 1e-9 <= s <= hi_nominal + 1e-9)
    robust = tuple(s for s in cat.sizes_mm if lo - 1e-9 <= s <= hi + 1e-9)

    def result(ok: bool, size: float | None, reason: str) -> SizingResult:
        return SizingResult(cat.key, cat.status, cat.implant, measured_mm, uncertainty_mm, ok, size,
                            (lo_nominal, hi_nominal), robust if ok else nominal, reason, str(cat.rule["source"]))

    pmin, pmax = cat.plausible_mm
    if not pmin - uncertainty_mm <= measured_mm <= pmax + uncertainty_mm:
        return result(False, None, f"not callable: a {cat.measure} of {measured_mm:.1f} mm is outside the plausible "
                                   f"{pmin:g}-{pmax:g} mm ({cat.plausible_source}); check the segmentation")
    if not nominal:
        return result(False, None, f"not callable: the rule asks for {lo_nominal:.1f}-{hi_nominal:.1f} mm and the "
                                   f"catalogue ({cat.sizes_mm[0]:g}-{cat.sizes_mm[-1]:g} mm) has no size in that range")
    if not robust:
        return result(False, None, f"not callable: within the measurement's uncertainty (+-{uncertainty_mm:.2f} mm) no single size "
                                   f"suits every value (sizes {', '.join(f'{s:g}' for s in nominal)} each suit only "
                                   "part of it); measure on a finer image")
    middle = 0.5 * (lo_nominal + hi_nominal)
    size = min(robust, key=lambda s: (abs(s - middle), s))
    return result(True, size, f"{size:g} mm suits {cat.measure} {measured_mm:.1f} +- {uncertainty_mm:.2f} mm "
                              f"(accepts {lo:.1f}-{hi:.1f} mm)")


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Measurement:
    value_mm: float
    uncertainty_mm: float
    method: str
    centre_mm: Triple | None = None
    extra: dict[str, float] = field(default_factory=dict)


def fit_sphere(points_mm: Array) -> tuple[Array, float, float]:
    """Least-squares sphere through points: centre (mm), radius (mm), RMS radial residual (mm)."""
    p = np.asarray(points_mm, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) < 4:
        raise ImplantError("points_mm", "a sphere fit needs at least four 3-D points")
    a = np.column_stack([2.0 * p, np.ones(len(p))])
    b = (p * p).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    radius = math.sqrt(max(float(sol[3] + centre @ centre), 0.0))
    rms = float(np.sqrt(np.mean((np.linalg.norm(p - centre, axis=1) - radius) ** 2)))
    return centre, radius, rms


def femoral_head_diameter(volume: Volume, label: int = 1) -> Measurement:
    """Diameter of the sphere fitted to the head's smoothed surface; uncertainty = half the largest voxel size plus
    twice the fit's RMS residual (a head that is not spherical measures less precisely)."""
    mask = np.asarray(volume.data) == label
    if not mask.any():
        raise ImplantError("label", f"{label} is not in the label map")
    mesh = mesh_mask(volume, mask)
    centre, radius, rms = fit_sphere(mesh.vertices_mm)
    u = 0.5 * float(volume.spacing_mm.max()) + 2.0 * rms
    return Measurement(2.0 * radius, u, "sphere fit to the smoothed surface",
                       triple(centre), {"fit_rms_mm": rms})


def _plane_basis(normal: Array) -> tuple[Array, Array]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def vessel_diameter(volume: Volume, point_mm: list[float] | Array, direction: list[float] | Array, *,
                    label: int | None = None, step_mm: float = 0.1, max_radius_mm: float = 40.0) -> Measurement:
    """Equivalent-circle diameter sqrt(4 A / pi) of the vessel's cross-section through ``point_mm`` perpendicular
    to ``direction`` (the vessel's axis): the mask is interpolated (trilinear) on a fine grid in that plane and the
    piece holding the point is measured. Uncertainty: half a voxel's width in that plane (where a label map's
    boundary can sit; on phantoms the error is under 0.2 mm, docs/imaging.md)."""
    p = np.asarray(point_mm, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    if p.shape != (3,) or not bool(volume.contains(p)):
        raise ImplantError("point_mm", f"{np.asarray(point_mm).tolist()} is not a point inside the image")
    if d.shape != (3,) or not np.linalg.norm(d) > 0:
        raise ImplantError("direction", "must be a non-zero 3-D vector along the vessel")
    n = d / np.linalg.norm(d)
    u, v = _plane_basis(n)
    data = np.asarray(volume.data)
    mask = (data != 0) if label is None else (data == label)
    t = np.arange(-max_radius_mm, max_radius_mm + step_mm / 2, step_mm)
    uu, vv = np.meshgrid(t, t, indexing="ij")
    pts = p + uu[..., None] * u + vv[..., None] * v
    ijk = volume.world_to_index(pts.reshape(-1, 3)).T
    inside = ndimage.map_coordinates(mask.astype(np.float32), ijk, order=1, mode="constant", cval=0.0)
    section = inside.reshape(uu.shape) >= 0.5
    centre = len(t) // 2
    if not section[centre, centre]:
        raise ImplantError("point_mm", "is not inside the vessel")
    pieces, _n = ndimage.label(section)
    piece = pieces == pieces[centre, centre]
    if piece[0].any() or piece[-1].any() or piece[:, 0].any() or piece[:, -1].any():
        raise ImplantError("max_radius_mm", f"the cross-section reaches {max_radius_mm} mm from the point: not a "
                                            "vessel cut across its axis (check the direction)")
    area = float(piece.sum()) * step_mm * step_mm
    a3 = volume.affine[:3, :3]
    in_plane = max(float(np.linalg.norm(u @ a3)), float(np.linalg.norm(v @ a3)))  # voxel size across the vessel
    return Measurement(2.0 * math.sqrt(area / math.pi), 0.5 * in_plane,
                       "equivalent-circle diameter of the perpendicular cross-section",
                       triple(p), {"area_mm2": area})


# --------------------------------------------------------------------------- cranial plate


@dataclass(frozen=True)
class CranialPlate:
    """The plate (label map and watertight mesh), the mid-sagittal plane used, and how well the skull is symmetric."""

    plate: Volume
    mesh: SurfaceMesh
    plane_normal: Triple
    plane_offset_mm: float
    symmetry_rms_mm: float
    volume_ml: float
    warnings: tuple[str, ...]


def _reflect(points: Array, normal: Array, offset: float) -> Array:
    return np.asarray(points - 2.0 * ((points @ normal) - offset)[..., None] * normal)


def _normal(angles: Array) -> Array:
    theta, phi = float(angles[0]), float(angles[1])
    return np.array([math.cos(theta) * math.cos(phi), math.sin(theta) * math.cos(phi), math.sin(phi)])


def fit_midsagittal_plane(skull: Volume, *, label: int | None = None, keep_fraction: float = 0.8,
                          max_points: int = 20000) -> tuple[Array, float, float]:
    """The plane ``normal . x = offset`` across which the skull is most nearly its own mirror image.

    Starts from the frame's left-right axis (x in both RAS and LPS) through the skull's centroid; minimises the
    mean distance (mm) from mirrored surface voxels to the skull's surface over the best ``keep_fraction`` of them, so that a
    defect on one side does not tilt the plane. Returns (unit normal, offset mm, that mean distance mm)."""
    data = np.asarray(skull.data)
    mask = (data != 0) if label is None else (data == label)
    if not mask.any():
        raise ImplantError("skull", "the label map has no skull voxel")
    # distances to the skull's surface voxels (not to the solid: inside the bone every mirror would score 0)
    surface = mask & ~ndimage.binary_erosion(mask, border_value=0)
    dist = ndimage.distance_transform_edt(~surface, sampling=skull.spacing_mm)
    idx = np.argwhere(surface)
    rng = np.random.default_rng(0)
    if len(idx) > max_points:
        idx = idx[rng.choice(len(idx), max_points, replace=False)]
    pts = skull.index_to_world(idx.astype(np.float64))
    centroid = pts.mean(axis=0)

    def cost(x: Array) -> float:
        n = _normal(x[:2])
        mirrored = skull.world_to_index(_reflect(pts, n, float(x[2])))
        d = ndimage.map_coordinates(dist, mirrored.T, order=1, mode="nearest")
        d = np.sort(d)[: max(1, int(keep_fraction * len(d)))]
        return float(d.mean())

    x0 = np.array([0.0, 0.0, float(centroid[0])])
    best = optimize.minimize(cost, x0, method="Nelder-Mead",
                             options={"xatol": 1e-4, "fatol": 1e-5, "maxiter": 600, "initial_simplex": np.array(
                                 [x0, x0 + [0.05, 0, 0], x0 + [0, 0.05, 0], x0 + [0, 0, 2.0]])})
    n = _normal(best.x[:2])
    offset = float(best.x[2])
    if n[0] < 0:
        n, offset = -n, -offset
    return n, offset, float(best.fun)


def _mirror_mask(mask: NDArray[np.bool_], volume: Volume, normal: Array, offset: float) -> NDArray[np.bool_]:
    centres = np.moveaxis(np.indices(volume.shape, dtype=np.float64), 0, -1).reshape(-1, 3)
    world = volume.index_to_world(centres)
    source = volume.world_to_index(_reflect(world, normal, offset))
    values = ndimage.map_coordinates(mask.astype(np.float32), source.T, order=1, mode="constant", cval=0.0)
    return np.asarray(values.reshape(volume.shape) >= 0.5)


def cranial_plate(skull: Volume, *, label: int | None = None, clean_radius_mm: float = 0.0,
                  min_plate_ml: float = 0.5, target_faces: int | None = None) -> CranialPlate:
    """A patient-specific plate for a skull defect by mirroring the healthy side (see the module's docstring).

    The largest connected piece of what the mirror adds is the plate (slivers along edges where the two sides
    differ by a voxel are separate pieces and dropped); ``clean_radius_mm`` > 0 also opens it with a ball of that
    radius (on the phantom, 1.6 mm at 1.5 mm voxels cost 8 % of the plate's volume for no gain in overlap). Raises ``ImplantError`` when no defect is found (the plate would be under
    ``min_plate_ml``) rather than return an empty or sliver plate."""
    data = np.asarray(skull.data)
    mask = (data != 0) if label is None else (data == label)
    normal, offset, rms = fit_midsagittal_plane(skull, label=label)
    mirrored = _mirror_mask(mask, skull, normal, offset)
    missing = skull.with_data((mirrored & ~mask).astype(np.uint8), units="label", labels={1: "cranial plate"})
    cleaned = opening(missing, clean_radius_mm) if clean_radius_mm > 0 else missing
    nothing = ("the mirror adds nothing to fill: either there is no defect, or the defect has its mirror image on "
               "the other side (a hole across the midline, or on both sides), where mirroring has no bone to give")
    if not np.any(cleaned.data):
        raise ImplantError("skull", nothing)
    plate = keep_largest(cleaned)
    plate = plate.with_data(plate.data, units="label", labels={1: "cranial plate"})
    volume_ml = float(np.count_nonzero(plate.data)) * skull.voxel_volume_ml
    if volume_ml < min_plate_ml:
        raise ImplantError("skull", f"{nothing} ({volume_ml:.2f} mL, under {min_plate_ml} mL)")
    warnings: list[str] = []
    pts = skull.index_to_world(np.argwhere(plate.data != 0).astype(np.float64))
    side = (pts @ normal) - offset
    if np.min(np.abs(side)) < 2.0 * float(skull.spacing_mm.max()):
        warnings.append("the defect reaches the mid-sagittal plane: the mirror has no bone to give there, the plate "
                        "may be incomplete along the midline")
    if rms > 2.0 * float(skull.spacing_mm.max()):
        warnings.append(f"the skull is not symmetric (mean mirror distance {rms:.1f} mm): check the plate's fit")
    mesh = mesh_mask(plate, target_faces=target_faces)
    if not check_mesh(mesh).ok:
        raise ImplantError("plate", "the plate's surface is not watertight")
    return CranialPlate(plate, SurfaceMesh(mesh.vertices_mm, mesh.faces, mesh.frame,
                                           {**mesh.meta, "name": "cranial plate"}),
                        triple(normal), offset, rms, volume_ml,
                        tuple(warnings))

