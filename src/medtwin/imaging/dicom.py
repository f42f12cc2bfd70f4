"""A DICOM series (a folder, a zip, or one multi-frame file) into one :class:`Volume` in LPS.

Geometry, as DICOM PS3.3 C.7.6.2 defines it: ``ImageOrientationPatient`` gives the direction cosines of a row
(``r``, the direction in which the column index grows) and of a column (``c``); ``PixelSpacing`` is
``[between rows, between columns]`` in mm; ``ImagePositionPatient`` is the centre of the first pixel. Voxel
``data[i, j, k]`` is column ``i``, row ``j`` of the ``k``-th slice, slices ordered by their position projected on
the normal ``r x c``. The affine's columns are ``r * column spacing``, ``c * row spacing``, and the step from one
slice to the next measured from the positions (``(P_last - P_first) / (n - 1)``; so a gantry tilt shears the
affine instead of being ignored), and its translation the first slice's position.

Single-frame series (one file per slice), enhanced multi-frame files (per-frame and shared functional groups:
plane position and orientation, pixel measures, pixel value transformation) and classic multi-frame files with
``GridFrameOffsetVector`` (RT Dose) are read. Stored values become modality values through
``RescaleSlope``/``RescaleIntercept`` (``DoseGridScaling`` for RT Dose), per frame: integer when every slope is 1
and every intercept whole, float32 otherwise.

Refused with :class:`ImageFileError` naming the file (and frame) and the attribute: files that are not DICOM or
are truncated, more than one series, mixed orientations, pixel spacings or matrix sizes, duplicate slice
positions, a missing slice (a gap over 1.5 x the median spacing), uneven spacing, positions off one line.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medtwin.imaging.volume import ImageFileError, Volume

#: A gap bigger than this many median spacings is a missing slice.
MISSING_SLICE_FACTOR = 1.5
#: Tolerances on positions (mm): absolute plus relative to the median slice spacing.
POSITION_TOL_MM = 0.01
POSITION_TOL_REL = 0.005
ORIENTATION_TOL = 1e-4
#: Limits of one import (a bad or hostile input should not take the server's memory).
MAX_FILES = 5000
MAX_VOXELS = 512 * 512 * 2048
MAX_UNZIPPED_BYTES = 2 * 1024**3

Source = tuple[str, bytes | Path]


@dataclass(frozen=True)
class Plane:
    """One slice's geometry and pixels: ``pixels()`` gives modality values, shape (rows, columns)."""

    source: str
    position: NDArray[np.float64]
    orientation: NDArray[np.float64]
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    slope: float
    intercept: float
    pixels: Callable[[], NDArray[Any]]


# ---------------------------------------------------------------------------------------------- reading files

def sources_of(path: Path) -> list[Source]:
    """The files of a DICOM input: every file under a folder (hidden files and DICOMDIR skipped), every member
    of a zip, or the one file."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and p.name.upper() != "DICOMDIR")
        return [(str(p), p) for p in files]
    if zipfile.is_zipfile(path):
        return zip_sources(path.read_bytes(), str(path))
    return [(str(path), path)]


def zip_sources(blob: bytes, name: str) -> list[Source]:
    """The members of a zip of DICOM files (folders, hidden files and DICOMDIR skipped)."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()
                       and not Path(m.filename).name.startswith(".") and Path(m.filename).name.upper() != "DICOMDIR"]
            if len(members) > MAX_FILES:
                raise ImageFileError(name, "files", f"{len(members)} files; at most {MAX_FILES} in one import")
            unzipped = sum(m.file_size for m in members)
            if unzipped > MAX_UNZIPPED_BYTES:  # checked before inflating anything: no zip bomb
                raise ImageFileError(name, "zip", f"unpacks to {unzipped} bytes; at most {MAX_UNZIPPED_BYTES}")
            return [(f"{name}:{m.filename}", archive.read(m)) for m in sorted(members, key=lambda m: m.filename)]
    except zipfile.BadZipFile as error:
        raise ImageFileError(name, "zip", f"not a readable zip file ({error})") from None


def _read(source: Source) -> Dataset:
    name, content = source
    try:
        handle: Any = io.BytesIO(content) if isinstance(content, bytes) else content
        ds = pydicom.dcmread(handle)
    except InvalidDicomError:
        raise ImageFileError(name, "file", "not a DICOM file (no DICM preamble)") from None
    except Exception as error:  # pydicom raises many kinds on a cut-off header
        raise ImageFileError(name, "file", f"unreadable DICOM (truncated?): {error}") from None
    for keyword in ("SeriesInstanceUID", "PixelData"):  # pydicom reads a file cut in its header without a word
        if keyword not in ds:
            raise ImageFileError(name, keyword, "is missing: not an image of a series, or a truncated file")
    return ds


def _require(ds: Dataset, name: str, *keywords: str) -> None:
    for keyword in keywords:
        if keyword not in ds or ds[keyword].value in (None, ""):
            raise ImageFileError(name, keyword, "is missing: the slice has no position in the patient")


def _floats(value: Any, n: int, name: str, keyword: str) -> NDArray[np.float64]:
    items = [value] if isinstance(value, str | bytes) or not hasattr(value, "__iter__") else list(value)
    try:
        out = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError):
        raise ImageFileError(name, keyword, f"is not {n} numbers: {value!r}") from None
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise ImageFileError(name, keyword, f"must be {n} finite numbers, got {value!r}")
    return out


def _decoder(ds: Dataset, name: str, frame: int | None) -> Callable[[], NDArray[Any]]:
    def decode() -> NDArray[Any]:
        try:
            array = ds.pixel_array
        except Exception as error:  # truncated pixel data, unsupported compression, ...
            raise ImageFileError(name, "PixelData", f"cannot be decoded: {error}") from None
        return np.asarray(array if frame is None else array[frame])
    return decode


def _check_pixels(ds: Dataset, name: str) -> tuple[int, int]:
    _require(ds, name, "Rows", "Columns", "PixelData")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ImageFileError(name, "SamplesPerPixel", f"is {ds.SamplesPerPixel}: only greyscale images are volumes")
    return int(ds.Rows), int(ds.Columns)


def _rescale(ds: Dataset, name: str) -> tuple[float, float]:
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if "DoseGridScaling" in ds:
        slope *= float(ds.DoseGridScaling)
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0.0:
        raise ImageFileError(name, "RescaleSlope", f"unusable rescale {slope} x + {intercept}")
    return slope, intercept


def _single_frame(ds: Dataset, name: str) -> list[Plane]:
    shape = _check_pixels(ds, name)
    _require(ds, name, "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    slope, intercept = _rescale(ds, name)
    spacing = _floats(ds.PixelSpacing, 2, name, "PixelSpacing")
    return [Plane(name, _floats(ds.ImagePositionPatient, 3, name, "ImagePositionPatient"),
                  _floats(ds.ImageOrientationPatient, 6, name, "ImageOrientationPatient"),
                  (float(spacing[0]), float(spacing[1])), shape, slope, intercept, _decoder(ds, name, None))]


def _group_value(groups: list[Dataset], sequence: str, keyword: str) -> Any:
    for group in groups:
        if sequence in group and len(group[sequence].value) and keyword in group[sequence].value[0]:
            return group[sequence].value[0][keyword].value
    return None


def _enhanced(ds: Dataset, name: str) -> list[Plane]:
    """Frames of an enhanced multi-frame file: per-frame groups first, then the shared ones."""
    shape = _check_pixels(ds, name)
    shared = list(ds.get("SharedFunctionalGroupsSequence", []))[:1]
    per_frame = list(ds.PerFrameFunctionalGroupsSequence)
    frames = int(ds.get("NumberOfFrames", len(per_frame)) or 1)
    if len(per_frame) != frames:
        raise ImageFileError(name, "PerFrameFunctionalGroupsSequence",
                             f"has {len(per_frame)} items for NumberOfFrames {frames}")
    planes = []
    for index, item in enumerate(per_frame):
        where = f"{name} frame {index + 1}"
        groups = [item, *shared]
        values = {key: _group_value(groups, seq, key) for seq, key in (
            ("PlanePositionSequence", "ImagePositionPatient"), ("PlaneOrientationSequence", "ImageOrientationPatient"),
            ("PixelMeasuresSequence", "PixelSpacing"))}
        for key, value in values.items():
            if value is None:
                raise ImageFileError(where, key, "is missing from the per-frame and shared functional groups")
        slope = _group_value(groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        fallback = _rescale(ds, where)
        spacing = _floats(values["PixelSpacing"], 2, where, "PixelSpacing")
        planes.append(Plane(where, _floats(values["ImagePositionPatient"], 3, where, "ImagePositionPatient"),
                            _floats(values["ImageOrientationPatient"], 6, where, "ImageOrientationPatient"),
                            (float(spacing[0]), float(spacing[1])), shape,
                            fallback[0] if slope is None else float(slope),
                            fallback[1] if intercept is None else float(intercept), _decoder(ds, where, index)))
    return planes


def _grid_frames(ds: Dataset, name: str) -> list[Plane]:
    """Frames of a classic multi-frame file (RT Dose): one position plus offsets along the normal."""
    first = _single_frame(ds, name)[0]
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector], dtype=np.float64)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if offsets.size != frames:
        raise ImageFileError(name, "GridFrameOffsetVector", f"has {offsets.size} offsets for {frames} frames")
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    if offsets[0] != 0.0:  # absolute positions along the normal (PS3.3 C.8.8.3.2)
        offsets = offsets - float(first.position @ normal)
    return [Plane(f"{name} frame {n + 1}", first.position + offset * normal, first.orientation, first.pixel_spacing,
                  first.shape, first.slope, first.intercept, _decoder(ds, f"{name} frame {n + 1}", n))
            for n, offset in enumerate(offsets)]


def planes_of(ds: Dataset, name: str) -> list[Plane]:
    """The slices one file holds."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(ds, name)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        if "GridFrameOffsetVector" not in ds:
            raise ImageFileError(name, "NumberOfFrames", "a multi-frame file without per-frame functional groups "
                                                         "or GridFrameOffsetVector has no frame positions")
        return _grid_frames(ds, name)
    return _single_frame(ds, name)


# ----------------------------------------------------------------------------------------------- geometry

def _same(planes: list[Plane]) -> None:
    first = planes[0]
    for plane in planes[1:]:
        if not np.allclose(plane.orientation, first.orientation, atol=ORIENTATION_TOL):
            raise ImageFileError(plane.source, "ImageOrientationPatient",
                                 f"{plane.orientation.tolist()} differs from {first.source}'s "
                                 f"{first.orientation.tolist()}: mixed orientations in one series")
        if not np.allclose(plane.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-6):
            raise ImageFileError(plane.source, "PixelSpacing", f"{list(plane.pixel_spacing)} differs from "
                                 f"{first.source}'s {list(first.pixel_spacing)}")
        if plane.shape != first.shape:
            raise ImageFileError(plane.source, "Rows/Columns", f"{plane.shape} differs from {first.source}'s {first.shape}")


def _axes(plane: Plane) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    row, col = plane.orientation[:3], plane.orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(float(row @ col)) > 1e-3:
        raise ImageFileError(plane.source, "ImageOrientationPatient",
                             f"{plane.orientation.tolist()} are not two orthogonal unit vectors")
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _check_spacing(ordered: list[Plane], along: NDArray[np.float64]) -> float:
    """The median slice spacing (mm) along the normal, after refusing duplicates, gaps and uneven spacing."""
    steps = np.diff(along)
    for n, step in enumerate(steps):
        if step <= POSITION_TOL_MM:
            raise ImageFileError(ordered[n + 1].source, "ImagePositionPatient",
                                 f"duplicate slice position: same as {ordered[n].source} "
                                 f"({ordered[n + 1].position.tolist()})")
    median = float(np.median(steps))
    tolerance = POSITION_TOL_MM + POSITION_TOL_REL * median
    for n, step in enumerate(steps):
        if step > MISSING_SLICE_FACTOR * median:
            raise ImageFileError(ordered[n + 1].source, "ImagePositionPatient",
                                 f"missing slice: {step:.4g} mm after {ordered[n].source}, over "
                                 f"{MISSING_SLICE_FACTOR} x the median spacing {median:.4g} mm")
        if abs(step - median) > tolerance:
            raise ImageFileError(ordered[n + 1].source, "ImagePositionPatient",
                                 f"uneven slice spacing: {step:.4g} mm after {ordered[n].source}, the median is "
                                 f"{median:.4g} mm (tolerance {tolerance:.3g} mm)")
    return median


def _slice_step(ordered: list[Plane], single_spacing: float, normal: NDArray[np.float64]) -> NDArray[np.float64]:
    """The vector from one slice's first pixel to the next's, checked against every position."""
    if len(ordered) == 1:
        return normal * single_spacing
    positions = np.array([p.position for p in ordered])
    _check_spacing(ordered, positions @ normal)
    step = (positions[-1] - positions[0]) / (len(ordered) - 1)
    expected = positions[0] + np.arange(len(ordered))[:, None] * step
    off = np.linalg.norm(positions - expected, axis=1)
    tolerance = POSITION_TOL_MM + POSITION_TOL_REL * float(np.linalg.norm(step))
    if float(off.max()) > tolerance:
        worst = int(off.argmax())
        raise ImageFileError(ordered[worst].source, "ImagePositionPatient",
                             f"is {off[worst]:.3g} mm off the line through the first and last slice: "
                             "the slices are not one evenly spaced stack")
    return step


def _values(ordered: list[Plane]) -> NDArray[Any]:
    """Modality values of the ordered planes, as an array (columns, rows, slices)."""
    integral = all(p.slope == 1.0 and float(p.intercept).is_integer() for p in ordered)
    stack: NDArray[Any] | None = None
    for k, plane in enumerate(ordered):
        raw = plane.pixels()
        if raw.shape != plane.shape:
            raise ImageFileError(plane.source, "PixelData", f"decoded to {raw.shape}, expected {plane.shape}")
        if integral:
            values = raw.astype(np.int32) + int(plane.intercept)
        else:
            values = (raw.astype(np.float64) * plane.slope + plane.intercept).astype(np.float32)
        if stack is None:
            stack = np.empty((len(ordered), *plane.shape), dtype=values.dtype)
        stack[k] = values
    assert stack is not None
    if integral and stack.size and stack.min() >= np.iinfo(np.int16).min and stack.max() <= np.iinfo(np.int16).max:
        stack = stack.astype(np.int16)
    return np.ascontiguousarray(stack.transpose(2, 1, 0))


def volume_from_planes(planes: list[Plane], *, slice_spacing_mm: float = 1.0, meta: dict[str, str] | None = None,
                       units: str = "a.u.") -> Volume:
    """One volume from slices of one series (any order); LPS affine from their geometry."""
    if not planes:
        raise ImageFileError("input", "files", "no DICOM slices")
    _same(planes)
    row, col = _axes(planes[0])
    normal = np.cross(row, col)
    ordered = sorted(planes, key=lambda p: float(p.position @ normal))
    step = _slice_step(ordered, slice_spacing_mm, normal)
    rows, cols = ordered[0].shape
    if rows * cols * len(ordered) > MAX_VOXELS:
        raise ImageFileError(ordered[0].source, "Rows/Columns", f"{cols} x {rows} x {len(ordered)} voxels is over "
                                                                f"the limit of {MAX_VOXELS}")
    affine = np.eye(4)
    affine[:3, 0] = row * ordered[0].pixel_spacing[1]
    affine[:3, 1] = col * ordered[0].pixel_spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = ordered[0].position
    return Volume(_values(ordered), affine, "LPS", units, {}, dict(meta or {}))


# ------------------------------------------------------------------------------------------------- series

def _one_series(datasets: list[tuple[str, Dataset]]) -> None:
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets})
    if len(uids) > 1:
        raise ImageFileError(datasets[0][0], "SeriesInstanceUID",
                             f"{len(uids)} series in one input ({', '.join(u or '(none)' for u in uids[:5])}): "
                             "import one series at a time")


def _units(ds: Dataset) -> str:
    if "DoseUnits" in ds:
        return str(ds.DoseUnits).replace("GY", "Gy")
    kind = str(ds.get("RescaleType", "") or "")
    if str(ds.get("Modality", "")) == "CT" and kind in ("", "HU"):
        return "HU"
    return kind or "a.u."


def _meta(ds: Dataset, name: str, instances: int, frames: int) -> dict[str, str]:
    """What the record needs to know about the series (no person's name or identifier)."""
    meta = {"source": name, "format": "dicom", "instances": str(instances), "frames": str(frames)}
    for keyword, key in (("StudyInstanceUID", "study_uid"), ("SeriesInstanceUID", "series_uid"),
                         ("Modality", "modality"), ("SeriesNumber", "series_number"),
                         ("SeriesDescription", "series_description"), ("StudyDate", "study_date"),
                         ("StudyTime", "study_time"), ("BodyPartExamined", "body_part"),
                         ("FrameOfReferenceUID", "frame_of_reference_uid"), ("SOPClassUID", "sop_class_uid")):
        value = ds.get(keyword)
        if value not in (None, ""):
            meta[key] = str(value)
    return meta


def read_dicom(sources: Iterable[Source], name: str = "input") -> Volume:
    """Read one series from its files (``(name, bytes or path)``); see the module's docstring."""
    datasets = [(source[0], _read(source)) for source in sources]
    if not datasets:
        raise ImageFileError(name, "files", "no DICOM files")
    if len(datasets) > MAX_FILES:
        raise ImageFileError(name, "files", f"{len(datasets)} files; at most {MAX_FILES} in one import")
    _one_series(datasets)
    per_file = [planes_of(ds, file_name) for file_name, ds in datasets]
    if len(datasets) > 1 and any(len(p) > 1 for p in per_file):
        multi = next(n for (n, _), p in zip(datasets, per_file, strict=True) if len(p) > 1)
        raise ImageFileError(multi, "NumberOfFrames", "a multi-frame file mixed with other files of its series")
    planes = [plane for found in per_file for plane in found]
    first = datasets[0][1]
    single = float(first.get("SpacingBetweenSlices", 0) or first.get("SliceThickness", 0) or 1.0)
    meta = _meta(first, name, len(datasets), len(planes))
    if len(planes) == 1:
        meta["slice_spacing_source"] = ("SpacingBetweenSlices" if first.get("SpacingBetweenSlices")
                                        else "SliceThickness" if first.get("SliceThickness") else "assumed 1 mm")
    return volume_from_planes(planes, slice_spacing_mm=single, meta=meta, units=_units(first))


def read_dicom_path(path: Path) -> Volume:
    """A series from a folder, a zip or one file."""
    return read_dicom(sources_of(path), str(path))
