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

from medtwin.imaging.mesh import mesh_mask
from medtwin.imaging.volume import Frame, Volume, VolumeError

F64 = NDArray[np.float64]

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
    centroid_mm: tuple[float, float, float]
    bounds_min_mm: tuple[float, float, float]
    bounds_max_mm: tuple[float, float, float]
    inscribed_radius_voxels: float
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _triple(v: F64) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def feret_diameter(points_mm: F64) -> float:
    """The largest distance between two of ``points_mm`` (over their convex hull's vertices)."""
    pts = np.asarray(points_mm, dtype=np.float64)
    if len(pts) < 2:
        return 0.0
    with contextlib.suppress(QhullError):  # flat or degenerate: every point stays a candidate
        pts = pts[ConvexHull(pts).vertices]
    best = 0.0
    for start in range(0, len(pts), 512):
        d = np.linalg.norm(pts[start:start + 512, None, :] - pts[None, :, :], axis=-1)
        best = max(best, float(d.max()))
    return best


def structure_statistics(volume: Volume, label: int, name: str | None = None) -> SegmentStatistics:
    """The statistics of the voxels of ``volume`` equal to ``label``."""
    mask = np.asarray(volume.data) == label
    count = int(mask.sum())
    if count == 0:
        raise VolumeError("label", f"{label} has no voxel in the label map")
    centres = volume.index_to_world(np.argwhere(mask).astype(np.float64))
    half_voxel = 0.5 * np.abs(volume.affine[:3, :3]).sum(axis=1)
    spacing = volume.spacing_mm
    inscribed = float(ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing).max() / spacing.max())
    area: float | None = None
    svol: float | None = None
    feret: float | None = None
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
        feret_diameter_mm=feret, centroid_mm=_triple(centres.mean(axis=0)),
        bounds_min_mm=_triple(centres.min(axis=0) - half_voxel), bounds_max_mm=_triple(centres.max(axis=0) + half_voxel),
        inscribed_radius_voxels=inscribed, note=note)


def segment_statistics(volume: Volume, labels: Sequence[int] | None = None) -> list[SegmentStatistics]:
    """Statistics of every non-zero label of a label map (or of ``labels``), in label order."""
    data = np.asarray(volume.data)
    if not np.issubdtype(data.dtype, np.integer) and not np.issubdtype(data.dtype, np.bool_):
        raise VolumeError("data", f"a label map must hold integers, got {data.dtype}")
    wanted = sorted(int(v) for v in np.unique(data) if v != 0) if labels is None else [int(v) for v in labels]
    return [structure_statistics(volume, lab) for lab in wanted]
