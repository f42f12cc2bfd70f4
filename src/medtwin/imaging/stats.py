"""Per-structure statistics of a label map, as 3D Slicer's Segment Statistics gives them.

For each label: voxel count and volume (count x voxel volume: Slicer's "labelmap" volume), surface area and
enclosed volume of the smoothed closed surface (``mesh.mesh_mask``: Slicer's "closed surface" statistics), maximum
(Feret) diameter (the largest distance between two points of that surface, over its convex hull), centroid (mean of
the voxel centres) and the axis-aligned bounding box of the voxels, all in millimetres in the volume's frame.

A structure too thin for its voxels cannot have its surface measured from a mask: when its largest inscribed
radius is under ``MIN_RADIUS_VOXELS`` the area is not given (``None``) and ``note`` says why; under
``COARSE_RADIUS_VOXELS`` it is given with a note that it is coarse (measured on phantoms: within 5 % rather than
2 %, docs/imaging.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from medtwin.arrays import Array
from medtwin.imaging.mesh import mesh_mask
from medtwin.imaging.volume import Frame, Triple, Volume, VolumeError, triple

#: Below this largest inscribed radius (voxels) a mask's surface area is not callable (a 3 mm vessel at 2 mm voxels
#: reads 2-20 % low); below COARSE it is within ~5 % (a 20 mm sphere at 2 mm voxels: +4 %).
MIN_RADIUS_VOXELS = 2.5
COARSE_RADIUS_VOXELS = 8.0


@dataclass(frozen=True)
class SegmentStatistics:
    label: int
    name: str
    frame: Frame
    voxel_count: int
    volume_ml: float
    surface_area_mm2: float | None
    surface_volume_ml: float | None
    feret_diameter_mm: float | None
    centroid_mm: Triple
    bounds_min_mm: Triple
    bounds_max_mm: Triple
    inscribed_radius_voxels: float
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def feret_diameter(points_mm: Array) -> float:
    """The largest distance between two of ``points_mm``. Exact: only convex-hull vertices can be its ends, and only
    those whose distance from the centroid plus the largest such distance reaches a known pair's length; the
    candidates are compared with every hull vertex by blocks of a float32 Gram matrix, the best pair again in float64.
    """
    pts = np.asarray(points_mm, dtype=np.float64)
    if len(pts) < 2:
        return 0.0
    with contextlib.suppress(QhullError):  # flat or degenerate: every point stays a candidate
        pts = pts[ConvexHull(pts).vertices]
    pts = pts - pts.mean(axis=0)
    radius = np.sqrt((pts * pts).sum(axis=1))
    far = pts[int(np.argmax(radius))]
    known = float(np.max(np.linalg.norm(pts - far, axis=1)))  # a real pair: a lower bound
    candidates = pts[radius + float(radius.max()) >= known - 1e-9]
    p32, c32 = pts.astype(np.float32), candidates.astype(np.float32)
    sq_p, sq_c = (p32 * p32).sum(axis=1), (c32 * c32).sum(axis=1)
    best, pair = -1.0, (0, 0)
    for start in range(0, len(c32), 1024):
        d2 = sq_c[start:start + 1024, None] + sq_p[None, :] - 2.0 * (c32[start:start + 1024] @ p32.T)
        flat = int(np.argmax(d2))
        if float(d2.flat[flat]) > best:
            best, pair = float(d2.flat[flat]), (start + flat // len(p32), flat % len(p32))
    exact = float(np.linalg.norm(candidates[pair[0]] - pts[pair[1]]))
    return max(exact, known)


#: Largest cropped mask (voxels) whose inscribed radius is computed at full resolution; a larger one is measured
#: on every n-th voxel (error ~n voxels, on structures that large only the skull-like thin ones are near a limit).
EDT_MAX_VOXELS = 1_000_000


def _crop(mask: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    axes = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    lo = np.array([a[0] for a in axes], dtype=np.int64)
    hi = np.array([a[-1] + 1 for a in axes], dtype=np.int64)
    return mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], lo


def inscribed_radius_voxels(mask: NDArray[np.bool_], spacing: Array) -> float:
    """Radius of the largest ball inside the mask, in units of the largest voxel size."""
    sub, _lo = _crop(mask)
    stride = max(1, int(np.ceil((sub.size / EDT_MAX_VOXELS) ** (1.0 / 3.0))))
    coarse = np.pad(sub[::stride, ::stride, ::stride], 1)
    radius_mm = float(ndimage.distance_transform_edt(coarse, sampling=spacing * stride).max())
    return radius_mm / float(spacing.max())


def _extremes(volume: Volume, sub: NDArray[np.bool_], lo: NDArray[np.int64]) -> tuple[Array, Array]:
    """World min and max of the voxel centres: a linear map's extremes over a row of voxels are at the row's
    first or last voxel, so only those are transformed."""
    rows = sub.any(axis=0)
    first = np.argmax(sub, axis=0)
    last = sub.shape[0] - 1 - np.argmax(sub[::-1], axis=0)
    j, k = np.nonzero(rows)
    ends = np.concatenate([np.column_stack([first[j, k], j, k]), np.column_stack([last[j, k], j, k])])
    world = volume.index_to_world((ends + lo).astype(np.float64))
    return world.min(axis=0), world.max(axis=0)


def structure_statistics(volume: Volume, label: int, name: str | None = None) -> SegmentStatistics:
    """The statistics of the voxels of ``volume`` equal to ``label``."""
    mask = np.asarray(volume.data) == label
    count = int(mask.sum())
    if count == 0:
        raise VolumeError("label", f"{label} has no voxel in the label map")
    sub, lo = _crop(mask)
    centroid = volume.index_to_world(np.asarray(ndimage.center_of_mass(sub)) + lo)  # the affine is linear
    low, high = _extremes(volume, sub, lo)
    half_voxel = 0.5 * np.abs(volume.affine[:3, :3]).sum(axis=1)
    inscribed = inscribed_radius_voxels(mask, volume.spacing_mm)
    area: float | None = None
    svol: float | None = None
    note = ""
    mesh = mesh_mask(volume, mask)
    feret = feret_diameter(mesh.vertices_mm)
    if inscribed < MIN_RADIUS_VOXELS:
        note = (f"surface area not callable: the structure is {inscribed:.1f} voxels in radius at its thickest "
                f"(needs >= {MIN_RADIUS_VOXELS}); a finer image is needed")
    else:
        area, svol = mesh.area_mm2, mesh.volume_ml
        if inscribed < COARSE_RADIUS_VOXELS:
            note = f"coarse: {inscribed:.1f} voxels in radius, surface area within ~5 %"
    return SegmentStatistics(
        label=int(label), name=name if name is not None else volume.labels.get(int(label), ""), frame=volume.frame,
        voxel_count=count, volume_ml=count * volume.voxel_volume_ml, surface_area_mm2=area, surface_volume_ml=svol,
        feret_diameter_mm=feret, centroid_mm=triple(centroid), bounds_min_mm=triple(low - half_voxel),
        bounds_max_mm=triple(high + half_voxel), inscribed_radius_voxels=inscribed, note=note)


def segment_statistics(volume: Volume, labels: Sequence[int] | None = None) -> list[SegmentStatistics]:
    """Statistics of every non-zero label of a label map (or of ``labels``), in label order."""
    data = np.asarray(volume.data)
    if not np.issubdtype(data.dtype, np.integer) and not np.issubdtype(data.dtype, np.bool_):
        raise VolumeError("data", f"a label map must hold integers, got {data.dtype}")
    wanted = sorted(int(v) for v in np.unique(data) if v != 0) if labels is None else [int(v) for v in labels]
    return [structure_statistics(volume, lab) for lab in wanted]
