"""Segmentation: thresholds, region growing, connected components, morphology in millimetres, label-map import.

Every function takes a :class:`Volume` and returns a label map on the same grid (``units="label"``, uint8 or
uint16, 0 = background). Distances (morphology radii, seeds) are millimetres in the volume's frame; anisotropic
voxels are respected (the structuring element is a ball in mm: exact Euclidean distance transforms with the voxel
spacing, ``scipy.ndimage.distance_transform_edt(sampling=...)``). The image's edge counts as background.

Label maps come in from NIfTI (``label_map_from_nifti``: integer voxels only) and DICOM SEG
(``read_dicom_seg``: BINARY and FRACTIONAL, placed by each frame's ImagePositionPatient, optionally onto the grid of
the image it segments).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medtwin.imaging.volume import FRAMES, Frame, ImageFileError, Volume, VolumeError

Connectivity = Literal[6, 18, 26]
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _structure(connectivity: int) -> NDArray[np.bool_]:
    rank = {6: 1, 18: 2, 26: 3}.get(int(connectivity))
    if rank is None:
        raise VolumeError("connectivity", f"must be 6, 18 or 26, got {connectivity}")
    return np.asarray(ndimage.generate_binary_structure(3, rank))


def _label_volume(like: Volume, mask: NDArray[Any], labels: dict[int, str]) -> Volume:
    data = np.asarray(mask)
    dtype = np.uint8 if data.max(initial=0) <= 255 else np.uint16
    return like.with_data(data.astype(dtype), units="label", labels=labels)


def _mask_of(volume: Volume, label: int | None) -> NDArray[np.bool_]:
    data = np.asarray(volume.data)
    return np.asarray(data != 0 if label is None else data == label)


# --------------------------------------------------------------------------- thresholds and region growing


def threshold(volume: Volume, lower: float | None = None, upper: float | None = None, *,
              name: str = "threshold") -> Volume:
    """Label 1 where ``lower <= value <= upper`` (either bound may be left open)."""
    if lower is None and upper is None:
        raise VolumeError("lower", "give a lower or an upper threshold (or both)")
    for field_name, bound in (("lower", lower), ("upper", upper)):
        if bound is not None and not math.isfinite(bound):
            raise VolumeError(field_name, f"must be a finite number, got {bound}")
    if lower is not None and upper is not None and lower > upper:
        raise VolumeError("upper", f"{upper} is below the lower threshold {lower}")
    data = np.asarray(volume.data)
    mask = np.ones(volume.shape, dtype=bool)
    if lower is not None:
        mask &= data >= lower
    if upper is not None:
        mask &= data <= upper
    return _label_volume(volume, mask, {1: name})


def otsu_threshold(volume: Volume) -> float:
    """Otsu's threshold of the image's values (skimage.filters.threshold_otsu)."""
    from skimage.filters import threshold_otsu

    data = np.asarray(volume.data, dtype=np.float64)
    if float(data.min()) == float(data.max()):
        raise VolumeError("data", "is constant: there is no threshold to find")
    return float(threshold_otsu(data))


def seed_index(volume: Volume, seed_mm: NDArray[np.floating] | list[float]) -> tuple[int, int, int]:
    """The voxel holding a point (mm, in the volume's frame); ``VolumeError("seed_mm")`` outside the image."""
    p = np.asarray(seed_mm, dtype=np.float64)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise VolumeError("seed_mm", f"must be three finite coordinates in mm, got {np.asarray(seed_mm).tolist()}")
    if not bool(volume.contains(p)):
        raise VolumeError("seed_mm", f"{p.tolist()} lies outside the image ({volume.frame}, mm)")
    ijk = np.clip(np.rint(volume.world_to_index(p)).astype(int), 0, np.asarray(volume.shape) - 1)
    return (int(ijk[0]), int(ijk[1]), int(ijk[2]))


def region_grow(volume: Volume, seed_mm: NDArray[np.floating] | list[float], tolerance: float, *,
                connectivity: Connectivity = 6, seed_radius_voxels: int = 1, name: str = "region") -> Volume:
    """The connected region around a seed whose values lie within ``tolerance`` of the seed's value.

    The seed's value is the mean over a cube of ``seed_radius_voxels`` around it (noise-robust; 0 = the voxel).
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise VolumeError("tolerance", f"must be a non-negative number, got {tolerance}")
    i, j, k = seed_index(volume, seed_mm)
    data = np.asarray(volume.data, dtype=np.float64)
    r = max(int(seed_radius_voxels), 0)
    ref = float(data[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1, max(k - r, 0):k + r + 1].mean())
    within = np.abs(data - ref) <= tolerance
    if not within[i, j, k]:
        raise VolumeError("tolerance", f"the seed voxel's value {data[i, j, k]:.4g} is not within {tolerance} of the "
                                       f"seed neighbourhood's mean {ref:.4g}: widen the tolerance or move the seed")
    comps, _n = ndimage.label(within, structure=_structure(connectivity))
    return _label_volume(volume, comps == comps[i, j, k], {1: name})


# --------------------------------------------------------------------------- connected components


def connected_components(volume: Volume, *, label: int | None = None, connectivity: Connectivity = 26) -> Volume:
    """Each connected piece of the mask (``label``, or any non-zero voxel) numbered 1, 2, ... largest first."""
    comps, n = ndimage.label(_mask_of(volume, label), structure=_structure(connectivity))
    if n == 0:
        return _label_volume(volume, np.zeros(volume.shape, np.uint8), {})
    sizes = np.bincount(comps.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")  # component index by size, largest first
    rank = np.zeros(n + 1, dtype=np.int64)
    rank[order + 1] = np.arange(1, n + 1)
    return _label_volume(volume, rank[comps], {int(r): f"component {r}" for r in range(1, n + 1)})


def keep_largest(volume: Volume, *, label: int | None = None, count: int = 1,
                 connectivity: Connectivity = 26) -> Volume:
    """The ``count`` largest connected pieces of the mask, as label 1 (or ``label``), the rest cleared."""
    if count < 1:
        raise VolumeError("count", f"must be at least 1, got {count}")
    ranked = np.asarray(connected_components(volume, label=label, connectivity=connectivity).data, dtype=np.int64)
    out_label = 1 if label is None else int(label)
    name = volume.labels.get(out_label, "largest")
    return _label_volume(volume, np.where((ranked > 0) & (ranked <= count), out_label, 0), {out_label: name})


def keep_labels(volume: Volume, labels: list[int]) -> Volume:
    """Only the given labels of a label map."""
    data = np.asarray(volume.data)
    missing = [lab for lab in labels if not np.any(data == lab)]
    if missing:
        raise VolumeError("labels", f"{missing} not in the label map")
    keep = np.isin(data, labels)
    return _label_volume(volume, np.where(keep, data, 0), {k: v for k, v in volume.labels.items() if k in labels})


# --------------------------------------------------------------------------- morphology (radius in mm)


def _radius(radius_mm: float) -> float:
    if not math.isfinite(radius_mm) or radius_mm < 0:
        raise VolumeError("radius_mm", f"must be a non-negative length in mm, got {radius_mm}")
    return float(radius_mm)


def _pad_voxels(volume: Volume, radius_mm: float) -> int:
    return int(math.ceil(radius_mm / float(volume.spacing_mm.min()))) + 1


def _dilate(mask: NDArray[np.bool_], radius_mm: float, spacing: NDArray[np.float64]) -> NDArray[np.bool_]:
    if not mask.any():
        return mask.copy()
    return np.asarray(ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm + 1e-9)


def _erode(mask: NDArray[np.bool_], radius_mm: float, spacing: NDArray[np.float64]) -> NDArray[np.bool_]:
    padded = np.pad(mask, 1)  # the image's edge is background
    return np.asarray(ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1] > radius_mm + 1e-9)


def _morph(volume: Volume, radius_mm: float, label: int | None, ops: str) -> Volume:
    r = _radius(radius_mm)
    mask = _mask_of(volume, label)
    spacing = volume.spacing_mm
    pad = _pad_voxels(volume, r) if ops == "de" else 0  # closing: room to grow beyond the edge, then come back
    m = np.pad(mask, pad) if pad else mask
    for op in ops:
        m = _dilate(m, r, spacing) if op == "d" else _erode(m, r, spacing)
    if pad:
        m = m[pad:-pad, pad:-pad, pad:-pad]
    out_label = 1 if label is None else int(label)
    return _label_volume(volume, np.where(m, out_label, 0), {out_label: volume.labels.get(out_label, "mask")})


def dilate(volume: Volume, radius_mm: float, *, label: int | None = None) -> Volume:
    """Every voxel within ``radius_mm`` (centre to centre) of the mask."""
    return _morph(volume, radius_mm, label, "d")


def erode(volume: Volume, radius_mm: float, *, label: int | None = None) -> Volume:
    """The mask's voxels further than ``radius_mm`` from any background voxel (or the image's edge)."""
    return _morph(volume, radius_mm, label, "e")


def opening(volume: Volume, radius_mm: float, *, label: int | None = None) -> Volume:
    """Erode then dilate: removes pieces and spurs thinner than the ball."""
    return _morph(volume, radius_mm, label, "ed")


def closing(volume: Volume, radius_mm: float, *, label: int | None = None) -> Volume:
    """Dilate then erode: fills gaps and holes narrower than the ball."""
    return _morph(volume, radius_mm, label, "de")


# --------------------------------------------------------------------------- label maps from files


def as_label_map(volume: Volume, names: dict[int, str] | None = None, source: str = "input") -> Volume:
    """A volume whose voxels are whole non-negative numbers, as a label map (uint8/uint16)."""
    data = np.asarray(volume.data)
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise ImageFileError(source, "data", "a label map must hold whole numbers (this looks like an image)")
    if data.min() < 0 or data.max() > 65535:
        raise ImageFileError(source, "data", f"labels must be 0..65535, got {data.min()}..{data.max()}")
    present = {int(v) for v in np.unique(data) if v != 0}
    labels = {k: v for k, v in (names or volume.labels).items() if k in present}
    return _label_volume(volume, data.astype(np.int64), labels or {k: f"label {k}" for k in sorted(present)})


def label_map_from_nifti(blob: bytes, name: str = "labels.nii", names: dict[int, str] | None = None) -> Volume:
    """A NIfTI label map (RAS) through the imaging NIfTI reader; refused if its voxels are not whole numbers."""
    from medtwin.imaging.nifti import read_nifti

    return as_label_map(read_nifti(blob, name), names, name)


def _seg_geometry(ds: Any, name: str) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[float, float]]:
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=np.float64)
        spacing = tuple(float(x) for x in shared.PixelMeasuresSequence[0].PixelSpacing)
    except (AttributeError, IndexError) as exc:
        raise ImageFileError(name, "SharedFunctionalGroupsSequence",
                             "needs PlaneOrientationSequence and PixelMeasuresSequence") from exc
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(float(row @ col)) > 1e-3:
        raise ImageFileError(name, "ImageOrientationPatient", f"{iop.tolist()} are not two orthogonal unit vectors")
    return row, col, (spacing[0], spacing[1])


def _seg_frames(ds: Any, name: str) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    positions, segments = [], []
    for n, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        try:
            positions.append([float(x) for x in group.PlanePositionSequence[0].ImagePositionPatient])
            segments.append(int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber))
        except (AttributeError, IndexError) as exc:
            raise ImageFileError(f"{name} frame {n + 1}", "PerFrameFunctionalGroupsSequence",
                                 "needs PlanePositionSequence and SegmentIdentificationSequence") from exc
    return np.asarray(positions), np.asarray(segments)


def _seg_grid(positions: NDArray[np.float64], normal: NDArray[np.float64], ds: Any,
              name: str) -> tuple[NDArray[np.float64], float, NDArray[np.int64]]:
    """The first slice's position, the slice spacing (mm) and each frame's slice index."""
    along = positions @ normal
    levels = np.unique(np.round(along, 3))
    shared = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    declared = float(getattr(shared, "SpacingBetweenSlices", 0) or getattr(shared, "SliceThickness", 0) or 0)
    step = float(np.min(np.diff(levels))) if len(levels) > 1 else (declared or 1.0)
    k = (along - along.min()) / step
    if np.abs(k - np.rint(k)).max() > 0.01:
        raise ImageFileError(name, "ImagePositionPatient", "frames are not on one evenly spaced stack "
                                                           f"(spacing {step:.4g} mm)")
    return positions[int(np.argmin(along))], step, np.rint(k).astype(np.int64)


def read_dicom_seg(blob: bytes, name: str = "seg.dcm", like: Volume | None = None) -> Volume:
    """A DICOM Segmentation (BINARY or FRACTIONAL) as a label map: segment number = label, names from
    SegmentLabel, LPS affine from the frames' geometry. With ``like`` (the segmented image, any frame), the
    labels are placed on its grid, and a SEG whose frames do not fall on that grid's voxels is refused."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(blob))
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise ImageFileError(name, "file", f"not a readable DICOM file ({exc})") from exc
    if str(getattr(ds, "SOPClassUID", "")) != SEG_SOP_CLASS or getattr(ds, "Modality", "") != "SEG":
        raise ImageFileError(name, "SOPClassUID", "not a DICOM Segmentation (Modality SEG)")
    kind = str(getattr(ds, "SegmentationType", ""))
    if kind not in ("BINARY", "FRACTIONAL"):
        raise ImageFileError(name, "SegmentationType", f"must be BINARY or FRACTIONAL, got {kind!r}")
    row, col, (row_spacing, col_spacing) = _seg_geometry(ds, name)
    normal = np.cross(row, col)
    positions, segments = _seg_frames(ds, name)
    frames = np.asarray(ds.pixel_array)
    frames = frames[None] if frames.ndim == 2 else frames
    if kind == "FRACTIONAL":
        frames = frames >= 0.5 * float(getattr(ds, "MaximumFractionalValue", 255))
    origin, step, k = _seg_grid(positions, normal, ds, name)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = row * col_spacing, col * row_spacing
    affine[:3, 2], affine[:3, 3] = normal * step, origin
    data = np.zeros((int(ds.Columns), int(ds.Rows), int(k.max()) + 1), dtype=np.uint16)
    for f, (seg, kk) in enumerate(zip(segments, k, strict=True)):
        data[:, :, kk][np.asarray(frames[f]).T.astype(bool)] = seg
    names = {int(s.SegmentNumber): str(getattr(s, "SegmentLabel", f"segment {s.SegmentNumber}"))
             for s in ds.SegmentSequence}
    if data.max() <= 255:
        data = data.astype(np.uint8)
    seg_volume = Volume(data, affine, "LPS", "label", names, {"source": name, "format": "dicom-seg"})
    return seg_volume if like is None else resample_labels_onto(seg_volume, like, name)


def resample_labels_onto(labels: Volume, like: Volume, name: str = "labels") -> Volume:
    """Labels moved onto another grid by nearest voxel; refused (naming ``affine``) unless every voxel of
    ``labels`` lands within 0.01 voxel of a voxel centre of ``like`` (no silent resampling of a label map)."""
    lab = labels.to_frame(like.frame)
    idx = np.argwhere(np.asarray(lab.data) != 0)
    target = like.world_to_index(lab.index_to_world(idx.astype(np.float64)))
    near = np.rint(target)
    if idx.size and np.abs(target - near).max() > 0.01:
        raise ImageFileError(name, "affine", "the segmentation's voxels do not fall on the image's voxel grid")
    if idx.size and (near.min() < 0 or np.any(near.max(axis=0) >= np.asarray(like.shape))):
        raise ImageFileError(name, "affine", "the segmentation reaches outside the image it segments")
    out = np.zeros(like.shape, dtype=np.asarray(lab.data).dtype)
    n = near.astype(int)
    out[n[:, 0], n[:, 1], n[:, 2]] = np.asarray(lab.data)[idx[:, 0], idx[:, 1], idx[:, 2]]
    return _label_volume(like, out, dict(labels.labels))


def read_label_map(blob: bytes, name: str, names: dict[int, str] | None = None) -> Volume:
    """A label map from a file's bytes: NIfTI (by its name) or a DICOM SEG."""
    from medtwin.imaging.nifti import is_nifti_name

    if is_nifti_name(name):
        return label_map_from_nifti(blob, name, names)
    return read_dicom_seg(blob, name)


# --------------------------------------------------------------------------- one recipe for the CLI and the API


@dataclass(frozen=True)
class Recipe:
    """A segmentation in steps: a threshold or a grown region, then clean-up. Seeds are in ``seed_frame``."""

    lower: float | None = None
    upper: float | None = None
    seed_mm: tuple[float, float, float] | None = None
    seed_frame: Frame = "RAS"
    tolerance: float | None = None
    keep_largest: bool = False
    open_mm: float = 0.0
    close_mm: float = 0.0
    name: str = "segment"

    def check(self) -> None:
        if self.seed_mm is not None and self.tolerance is None:
            raise VolumeError("tolerance", "region growing from a seed needs a tolerance")
        if self.seed_mm is None and self.tolerance is not None:
            raise VolumeError("seed_mm", "a tolerance needs a seed to grow from")
        if self.seed_mm is None and self.lower is None and self.upper is None:
            raise VolumeError("lower", "give a threshold (lower and/or upper) or a seed with a tolerance")
        if self.seed_frame not in FRAMES:
            raise VolumeError("seed_frame", f"must be one of {FRAMES}, got {self.seed_frame!r}")


def apply_recipe(volume: Volume, recipe: Recipe) -> Volume:
    """Run a :class:`Recipe` on an image: a label map (label 1 = ``recipe.name``) on the image's grid."""
    recipe.check()
    if recipe.seed_mm is not None and recipe.tolerance is not None:  # check() allows a seed only with a tolerance
        seed = np.asarray(recipe.seed_mm, dtype=np.float64)
        if recipe.seed_frame != volume.frame:  # LPS <-> RAS: x and y change sign
            seed = seed * np.array([-1.0, -1.0, 1.0])
        out = region_grow(volume, seed, recipe.tolerance, name=recipe.name)
        if recipe.lower is not None or recipe.upper is not None:
            band = threshold(volume, recipe.lower, recipe.upper)
            out = out.with_data((out.data.astype(bool) & band.data.astype(bool)).astype(np.uint8))
    else:
        out = threshold(volume, recipe.lower, recipe.upper, name=recipe.name)
    if recipe.close_mm > 0:
        out = closing(out, recipe.close_mm)
    if recipe.open_mm > 0:
        out = opening(out, recipe.open_mm)
    if recipe.keep_largest and np.any(out.data):
        out = keep_largest(out)
    return out.with_data(out.data, units="label", labels={1: recipe.name})


def is_dicom_seg(blob: bytes) -> bool:
    """Whether bytes are a DICOM file of the Segmentation storage class (header only)."""
    if len(blob) < 132 or blob[128:132] != b"DICM":
        return False
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any unreadable header is simply "not a SEG"; the readers report why
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS


def label_value(volume: Volume, label: str | int) -> int:
    """A label given by value (``"3"``) or by name (``"tumour"``), checked present in the label map."""
    data = np.asarray(volume.data)
    text = str(label).strip()
    if text.isdigit():
        value = int(text)
    else:
        by_name = [k for k, v in volume.labels.items() if v.lower() == text.lower()]
        if not by_name:
            raise VolumeError("label", f"no label named {text!r} (names: {sorted(volume.labels.values())})")
        value = by_name[0]
    if not np.any(data == value):
        present = sorted(int(v) for v in np.unique(data) if v != 0)[:20]
        raise VolumeError("label", f"{value} is not in the label map (labels present: {present})")
    return value
