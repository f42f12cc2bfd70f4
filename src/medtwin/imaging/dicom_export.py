"""A stored volume back out as a DICOM series (one file per slice), de-identified, in a zip.

The writer is the reader's inverse (``imaging/dicom.py``): slice ``k`` holds ``data[:, :, k]`` as rows x
columns, ``ImagePositionPatient`` is the affine applied to voxel ``(0, 0, k)``, ``ImageOrientationPatient``
the unit directions of ``i`` and ``j``, ``PixelSpacing`` their lengths (between rows = along ``j``). Voxels go
out as 16-bit integers: integer volumes that fit unchanged; others with ``RescaleSlope``/``RescaleIntercept``
spanning their range (a float volume loses what 65,535 levels cannot hold; the slope says how much). Every
file then goes through :func:`medtwin.imaging.dicom_deid.deidentify_all` (one UID map for the export).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medtwin.imaging.dicom_deid import deidentify_all
from medtwin.imaging.volume import Volume

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}


def _stored(data: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """(values as int16 or uint16, slope, intercept, signed)."""
    if data.dtype.kind in "biu":
        low, high = int(data.min()), int(data.max())
        if low >= -32768 and high <= 32767:
            return data.astype(np.int16), 1.0, 0.0, True
        if low >= 0 and high <= 65535:
            return data.astype(np.uint16), 1.0, 0.0, False
    bottom, top = float(np.min(data)), float(np.max(data))
    slope = (top - bottom) / 65534.0 if top > bottom else 1.0
    intercept = bottom + 32767.0 * slope
    stored = np.clip(np.round((data.astype(np.float64) - intercept) / slope), -32767, 32767).astype(np.int16)
    return stored, slope, intercept, True


def _series_header(volume: Volume) -> Dataset:
    meta = volume.meta
    ds = Dataset()
    modality = meta.get("modality", "OT")
    ds.SOPClassUID = SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    ds.Modality = modality if modality in SOP_CLASSES else "OT"
    ds.StudyInstanceUID = meta.get("study_uid") or generate_uid()
    ds.SeriesInstanceUID = meta.get("series_uid") or generate_uid()
    ds.FrameOfReferenceUID = meta.get("frame_of_reference_uid") or generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", "", "", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", "", ""
    ds.SeriesNumber = int(meta.get("series_number", "1") or 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def to_datasets(volume: Volume) -> list[Dataset]:
    """The volume (converted to LPS) as single-frame DICOM datasets, not yet de-identified."""
    lps = volume.to_frame("LPS")
    stored, slope, intercept, signed = _stored(np.asarray(lps.data))
    axes = lps.affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    orientation = np.concatenate([axes[:, 0] / spacing[0], axes[:, 1] / spacing[1]])
    header = _series_header(lps)
    out = []
    for k in range(lps.shape[2]):
        ds = Dataset()
        ds.update(header)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.10g}" for v in lps.affine[:3, :3] @ [0.0, 0.0, k] + lps.affine[:3, 3]]
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in orientation]
        ds.PixelSpacing = [f"{spacing[1]:.10g}", f"{spacing[0]:.10g}"]
        ds.SliceThickness = f"{spacing[2]:.10g}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        ds.Rows, ds.Columns = lps.shape[1], lps.shape[0]
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        out.append(ds)
    return out


def export_zip(volume: Volume, salt: str | None = None) -> bytes:
    """A zip of the volume as a de-identified DICOM series (``slice0001.dcm`` ...)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for k, ds in enumerate(deidentify_all(to_datasets(volume), salt)):
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            archive.writestr(f"slice{k + 1:04d}.dcm", out.getvalue())
    return buffer.getvalue()
