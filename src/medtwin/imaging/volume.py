"""One volume type for every image: voxels plus an explicit affine to patient coordinates in millimetres.

``affine`` maps a voxel index ``(i, j, k, 1)`` (``data[i, j, k]``) to a point ``(x, y, z, 1)`` in millimetres in
the named ``frame``:

* ``"LPS"`` (DICOM): +x towards the patient's Left, +y Posterior, +z Superior;
* ``"RAS"`` (NIfTI, Slicer, nibabel): +x Right, +y Anterior, +z Superior.

The two differ by negating x and y: ``RAS = diag(-1, -1, 1, 1) @ LPS``. ``Volume.to_frame`` converts; the voxels
never move, only the affine changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from medtwin.errors import InputError

Frame = Literal["LPS", "RAS"]
FRAMES: tuple[Frame, ...] = ("LPS", "RAS")

#: LPS <-> RAS flip (its own inverse).
LPS_TO_RAS: NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Three plain floats (a point or a spacing in mm, a unit direction): the form results and JSON carry.
Triple = tuple[float, float, float]


def triple(v: NDArray[np.floating] | Sequence[float]) -> Triple:
    """The three components of ``v`` as plain Python floats."""
    return (float(v[0]), float(v[1]), float(v[2]))


class VolumeError(InputError):
    """A volume, affine or coordinate that cannot be used; ``field`` names it."""


class ImageFileError(VolumeError):
    """A file that cannot become a volume: ``source`` names the file (and frame), ``field`` the DICOM attribute or
    NIfTI header field, ``message`` what is wrong (``str()`` says all three)."""

    def __init__(self, source: str, field: str, message: str) -> None:
        super().__init__(field, message)
        self.source = source
        self.args = (f"{source}: {field}: {message}",)


def check_affine(affine: NDArray[np.float64], field_name: str = "affine") -> NDArray[np.float64]:
    """Return ``affine`` as a float 4x4 array, or raise naming ``field_name`` if it is not a usable affine."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise VolumeError(field_name, f"must be a 4x4 matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise VolumeError(field_name, "contains NaN or infinite entries")
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise VolumeError(field_name, f"last row must be [0, 0, 0, 1], got {a[3].tolist()}")
    det = float(np.linalg.det(a[:3, :3]))
    if not np.isfinite(det) or abs(det) < 1e-9:
        raise VolumeError(field_name, f"is singular (determinant {det:.3g}): voxels have no position")
    return a


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image: ``data[i, j, k]`` with ``affine`` (voxel index -> mm in ``frame``).

    ``units`` names what a voxel value means ("HU", "label", "a.u."); ``labels`` maps label values to structure
    names for label maps; ``meta`` carries provenance (source file, series UID, modality) as plain strings.
    """

    data: NDArray[np.generic]
    affine: NDArray[np.float64]
    frame: Frame = "RAS"
    units: str = "a.u."
    labels: dict[int, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise VolumeError("frame", f"must be one of {FRAMES}, got {self.frame!r}")
        if np.ndim(self.data) != 3:
            raise VolumeError("data", f"must be 3-D (i, j, k), got {np.ndim(self.data)} dimensions")
        if min(np.shape(self.data)) < 1:
            raise VolumeError("data", f"is empty (shape {np.shape(self.data)})")
        object.__setattr__(self, "affine", check_affine(self.affine))

    @property
    def shape(self) -> tuple[int, int, int]:
        s = np.shape(self.data)
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def spacing_mm(self) -> NDArray[np.float64]:
        """Voxel size along i, j, k in millimetres (column norms of the affine)."""
        return np.asarray(np.linalg.norm(self.affine[:3, :3], axis=0), dtype=np.float64)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def to_frame(self, frame: Frame) -> Volume:
        """The same voxels with the affine expressed in ``frame``."""
        if frame not in FRAMES:
            raise VolumeError("frame", f"must be one of {FRAMES}, got {frame!r}")
        if frame == self.frame:
            return self
        return Volume(self.data, LPS_TO_RAS @ self.affine, frame, self.units, dict(self.labels), dict(self.meta))

    def index_to_world(self, ijk: NDArray[np.floating] | list[float]) -> NDArray[np.float64]:
        """Voxel indices (..., 3) -> points in mm in this volume's frame."""
        p = np.asarray(ijk, dtype=np.float64)
        return np.asarray(p @ self.affine[:3, :3].T + self.affine[:3, 3], dtype=np.float64)

    def world_to_index(self, xyz: NDArray[np.floating] | list[float]) -> NDArray[np.float64]:
        """Points in mm (..., 3) in this volume's frame -> continuous voxel indices."""
        p = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return np.asarray(p @ inv[:3, :3].T + inv[:3, 3], dtype=np.float64)

    def contains(self, xyz: NDArray[np.floating] | list[float]) -> NDArray[np.bool_]:
        """Whether points (..., 3) lie inside the image (voxel centres span -0.5 .. n-0.5)."""
        ijk = self.world_to_index(xyz)
        n = np.asarray(self.shape, dtype=np.float64)
        return np.asarray(np.all((ijk >= -0.5) & (ijk <= n - 0.5), axis=-1))

    def with_data(self, data: NDArray[np.generic], units: str | None = None,
                  labels: dict[int, str] | None = None) -> Volume:
        """A volume on the same grid with other voxels (a mask, a label map, a distance map)."""
        if np.shape(data) != self.shape:
            raise VolumeError("data", f"shape {np.shape(data)} does not match the grid {self.shape}")
        return Volume(data, self.affine.copy(), self.frame, units or self.units,
                      dict(labels) if labels is not None else dict(self.labels), dict(self.meta))


def grid_affine(spacing_mm: tuple[float, float, float], origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
                frame: Frame = "RAS") -> NDArray[np.float64]:
    """An axis-aligned affine with the given voxel spacing and the position of voxel (0, 0, 0)."""
    a = np.diag([*map(float, spacing_mm), 1.0])
    a[:3, 3] = origin_mm
    return check_affine(a, "spacing_mm")
