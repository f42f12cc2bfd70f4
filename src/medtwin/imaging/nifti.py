"""NIfTI-1/2 volumes in and out (nibabel), affine in RAS.

Reading takes the sform when its code is set, else the qform (NIfTI-1 header, ``sform_code``/``qform_code``); a
file with neither has no position in the patient (only voxel sizes), and is refused rather than placed at an
invented origin. ``scl_slope``/``scl_inter`` are applied (integer voxels stay integer when they are 1 and 0). A
4-D file is a volume only when its 4th dimension is 1.

Writing puts the volume's affine (converted to RAS) in both sform and qform with code 1 (scanner anatomical),
``xyzt_units`` mm, so any NIfTI reader (Slicer, ITK, nibabel) places the voxels where DICOM did.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from medtwin.imaging.volume import ImageFileError, Volume, VolumeError, check_affine

NIFTI_SUFFIXES = (".nii", ".nii.gz")
GZIP_MAGIC = b"\x1f\x8b"


def is_nifti_name(name: str) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES)


def _image(blob: bytes, name: str) -> Any:
    try:
        raw = gzip.decompress(blob) if blob[:2] == GZIP_MAGIC else blob
    except (OSError, EOFError, zlib.error) as error:
        raise ImageFileError(name, "file", f"not a readable gzip file (truncated?): {error}") from None
    if len(raw) < 348:
        raise ImageFileError(name, "header", f"{len(raw)} bytes: shorter than a NIfTI header (truncated?)")
    for kind in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return kind.from_bytes(raw)
        except Exception:  # noqa: S112 - try the next format; both failing is reported below
            continue
    raise ImageFileError(name, "header", "not a NIfTI-1 or NIfTI-2 file (bad sizeof_hdr or magic)")


def _affine(image: Any, name: str) -> tuple[NDArray[np.float64], str]:
    header = image.header
    sform, s_code = header.get_sform(coded=True)
    if sform is not None and int(s_code) > 0:
        field, affine = "sform", sform
    else:
        qform, q_code = header.get_qform(coded=True)
        if qform is None or int(q_code) <= 0:
            raise ImageFileError(name, "sform_code/qform_code", "both 0: the file gives voxel sizes but no position "
                                                                 "in the patient")
        field, affine = "qform", qform
    try:
        return check_affine(np.asarray(affine, dtype=np.float64), field), field
    except VolumeError as error:
        raise ImageFileError(name, error.field, error.message) from None


def _voxels(image: Any, name: str) -> NDArray[Any]:
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ImageFileError(name, "dim", f"shape {tuple(image.shape)}: only 3-D volumes (or 4-D with one volume)")
    try:
        proxy = image.dataobj
        slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        unscaled = np.asarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
        if float(slope) == 1.0 and float(inter) == 0.0:
            data = unscaled
        else:
            data = (unscaled.astype(np.float64) * float(slope) + float(inter)).astype(np.float32)
    except Exception as error:  # a short data block and the like
        raise ImageFileError(name, "data", f"cannot be read (truncated?): {error}") from None
    if data.dtype.kind not in "iufb":
        raise ImageFileError(name, "datatype", f"{data.dtype} voxels are not supported (need integers or floats)")
    return np.ascontiguousarray(data.reshape(shape))


def read_nifti(blob: bytes, name: str = "input.nii") -> Volume:
    """A NIfTI file's bytes (plain or gzip) as a volume in RAS."""
    image = _image(blob, name)
    affine, field = _affine(image, name)
    data = _voxels(image, name)
    units = "label" if str(image.header.get("intent_code", 0)) == "1002" else "a.u."
    meta = {"source": name, "format": "nifti", "affine_source": field,
            "description": bytes(image.header.get("descrip", b"")).split(b"\0")[0].decode("ascii", "replace")}
    return Volume(data, affine, "RAS", units, {}, {k: v for k, v in meta.items() if v})


def read_nifti_path(path: Path) -> Volume:
    return read_nifti(path.read_bytes(), str(path))


def nifti_image(volume: Volume) -> Any:
    """The volume as a ``nibabel.Nifti1Image`` in RAS (sform and qform code 1, mm)."""
    ras = volume.to_frame("RAS")
    data = np.asarray(ras.data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    image = nib.Nifti1Image(data, ras.affine)
    image.set_sform(ras.affine, code=1)
    image.set_qform(ras.affine, code=1)
    image.header.set_xyzt_units("mm")
    if ras.units == "label":
        image.header.set_intent("label")
    return image


def write_nifti(volume: Volume, compress: bool = True) -> bytes:
    """The volume as NIfTI-1 bytes (``.nii.gz`` when ``compress``)."""
    raw = nifti_image(volume).to_bytes()
    if not compress:
        return bytes(raw)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as handle:
        handle.write(raw)
    return buffer.getvalue()
