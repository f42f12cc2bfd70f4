"""Slices of a volume as images for people: plane choice, display orientation, window/level, label overlay, PNG.

A slice is taken along a voxel axis (``i``, ``j``, ``k``) or an anatomical plane, which picks the voxel axis most
aligned with the plane's normal in patient space: ``axial`` (S), ``coronal`` (P), ``sagittal`` (L). The two
remaining voxel axes are put on the image so it reads the radiological way whatever the voxel order:
axial: columns towards the patient's left, rows towards posterior (the patient's right on the image's left);
coronal: columns towards left, rows towards inferior (superior at the top); sagittal: columns towards posterior,
rows towards inferior. For ``i``/``j``/``k`` the image's columns follow the lower remaining voxel axis and rows
the higher one, as stored. :class:`SliceImage` says which voxel axis and direction each image axis runs along, so
a client can map a pixel back to a voxel and so to millimetres.

One pixel per voxel (the client scales by ``pixel_spacing_mm`` for the aspect ratio). Grey levels: ``level`` +-
``window`` / 2 mapped to 0..255 (clipped). Overlay: a label map on the same grid, each label its own colour
(:data:`LABEL_COLOURS`, cycled), blended with ``opacity``; label 0 is transparent.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from medtwin.imaging.volume import Volume, VolumeError

Axis = Literal["i", "j", "k", "axial", "coronal", "sagittal"]
AXES: tuple[str, ...] = ("i", "j", "k", "axial", "coronal", "sagittal")
#: Plane -> (normal, the world direction of image columns, of image rows), in LPS (0 = x/L, 1 = y/P, 2 = z/S).
PLANES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (0, +1), (1, +1)),
    "coronal": (1, (0, +1), (2, -1)),
    "sagittal": (0, (1, +1), (2, -1)),
}
LABEL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40))
SAME_GRID_TOL_MM = 1e-3


@dataclass(frozen=True)
class SliceImage:
    """``pixels[row, column]`` (uint8 grey, or RGB with an overlay) and how the image maps onto voxels."""

    pixels: NDArray[np.uint8]
    axis: str  # the voxel axis sliced: i, j or k
    index: int
    count: int  # slices along that axis
    column_axis: str  # e.g. "+i": column c is voxel i = c; "-j": column c is voxel j = n_j - 1 - c
    row_axis: str
    pixel_spacing_mm: tuple[float, float]  # (along columns, along rows)
    window: float
    level: float

    def headers(self) -> dict[str, str]:
        return {"X-Slice-Axis": self.axis, "X-Slice-Index": str(self.index), "X-Slice-Count": str(self.count),
                "X-Column-Axis": self.column_axis, "X-Row-Axis": self.row_axis,
                "X-Pixel-Spacing-mm": f"{self.pixel_spacing_mm[0]:.6g},{self.pixel_spacing_mm[1]:.6g}",
                "X-Window": f"{self.window:.6g}", "X-Level": f"{self.level:.6g}"}


def _lps_axes(volume: Volume) -> NDArray[np.float64]:
    """Unit direction of each voxel axis in LPS (columns 0, 1, 2 = i, j, k)."""
    m = volume.to_frame("LPS").affine[:3, :3]
    return np.asarray(m / np.linalg.norm(m, axis=0), dtype=np.float64)


def plane_axes(volume: Volume, axis: str) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(sliced voxel axis, (voxel axis, sign) of image columns, of image rows)."""
    if axis not in AXES:
        raise VolumeError("axis", f"must be one of {', '.join(AXES)}, got {axis!r}")
    if axis in ("i", "j", "k"):
        a = "ijk".index(axis)
        b, c = (n for n in range(3) if n != a)
        return a, (b, +1), (c, +1)
    directions = _lps_axes(volume)  # rows: world x/y/z, columns: voxel i/j/k
    normal, (col_world, col_sign), (row_world, row_sign) = PLANES[axis]
    sliced = int(np.argmax(np.abs(directions[normal])))
    rest = [n for n in range(3) if n != sliced]
    col_voxel = max(rest, key=lambda n: abs(directions[col_world, n]))
    row_voxel = next(n for n in rest if n != col_voxel)
    return (sliced, (col_voxel, col_sign * int(np.sign(directions[col_world, col_voxel]) or 1)),
            (row_voxel, row_sign * int(np.sign(directions[row_world, row_voxel]) or 1)))


def auto_window(volume: Volume) -> tuple[float, float]:
    """(window, level) spanning the 1st to 99th percentile of a subsample of the voxels."""
    data = np.asarray(volume.data)
    step = max(1, int(round((data.size / 200_000) ** (1 / 3))))
    sample = data[::step, ::step, ::step].astype(np.float64)
    low, high = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    return max(high - low, 1e-6), (high + low) / 2.0


def _plane(data: NDArray[Any], sliced: int, index: int, col: tuple[int, int], row: tuple[int, int]) -> NDArray[Any]:
    plane = np.take(data, index, axis=sliced)  # remaining axes in increasing order
    rest = [n for n in range(3) if n != sliced]
    if rest.index(row[0]) != 0:  # we want [row, column]
        plane = plane.T
    if col[1] < 0:
        plane = plane[:, ::-1]
    if row[1] < 0:
        plane = plane[::-1, :]
    return plane


def same_grid(a: Volume, b: Volume) -> bool:
    return a.shape == b.shape and bool(np.allclose(a.to_frame("LPS").affine, b.to_frame("LPS").affine,
                                                   atol=SAME_GRID_TOL_MM))


def render_slice(volume: Volume, axis: str = "axial", index: int | None = None, window: float | None = None,
                 level: float | None = None, overlay: Volume | None = None, opacity: float = 0.4) -> SliceImage:
    """One slice as an 8-bit image; see the module docstring."""
    sliced, col, row = plane_axes(volume, axis)
    count = volume.shape[sliced]
    index = count // 2 if index is None else index
    if not 0 <= index < count:
        raise VolumeError("index", f"{index} is outside 0..{count - 1} along {'ijk'[sliced]}")
    if window is not None and not (np.isfinite(window) and window > 0):
        raise VolumeError("window", f"must be a positive number, got {window}")
    if level is not None and not np.isfinite(level):
        raise VolumeError("level", f"must be a finite number, got {level}")
    if not 0.0 <= opacity <= 1.0:
        raise VolumeError("opacity", f"must be within 0..1, got {opacity}")
    if window is None or level is None:
        auto_w, auto_l = auto_window(volume)
        window, level = window or auto_w, auto_l if level is None else level
    values = _plane(np.asarray(volume.data), sliced, index, col, row).astype(np.float64)
    grey = np.clip((values - (level - window / 2.0)) / window * 255.0, 0, 255).round().astype(np.uint8)
    pixels: NDArray[np.uint8] = grey
    if overlay is not None:
        if not same_grid(volume, overlay):
            raise VolumeError("overlay", "is not on the same voxel grid (shape and affine) as the volume")
        pixels = _blend(grey, _plane(np.asarray(overlay.data), sliced, index, col, row), opacity)
    spacing = volume.spacing_mm
    sign = {1: "+", -1: "-"}
    return SliceImage(np.ascontiguousarray(pixels), "ijk"[sliced], index, count, f"{sign[col[1]]}{'ijk'[col[0]]}",
                      f"{sign[row[1]]}{'ijk'[row[0]]}", (float(spacing[col[0]]), float(spacing[row[0]])),
                      float(window), float(level))


def _blend(grey: NDArray[np.uint8], labels: NDArray[Any], opacity: float) -> NDArray[np.uint8]:
    rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float64)
    ids = np.asarray(labels).astype(np.int64)
    palette = np.array(LABEL_COLOURS, dtype=np.float64)
    mask = ids > 0
    colours = palette[(ids[mask] - 1) % len(palette)]
    rgb[mask] = (1.0 - opacity) * rgb[mask] + opacity * colours
    return np.asarray(rgb.round().astype(np.uint8))


def png_bytes(pixels: NDArray[np.uint8]) -> bytes:
    """A PNG (8-bit greyscale for 2-D input, RGB for (h, w, 3)), written with zlib: no imaging library needed."""
    image = np.ascontiguousarray(pixels, dtype=np.uint8)
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise VolumeError("pixels", f"shape {image.shape}: need (h, w) or (h, w, 3)")
    height, width = image.shape[:2]
    rows = image.reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
