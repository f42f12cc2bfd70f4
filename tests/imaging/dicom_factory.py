"""Synthetic DICOM series with exact, known geometry (and some PHI to de-identify), written with pydicom.

Independent of medtwin's reader: the geometry is set here from the DICOM definitions directly, so a reader test
compares against values computed here, not against the reader's own output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

PHI = {"PatientName": "Doe^Jane", "PatientID": "MRN-0042", "PatientBirthDate": "19700101",
       "PatientAddress": "1 Main Street, Springfield", "ReferringPhysicianName": "House^Gregory",
       "InstitutionName": "St Elsewhere", "AccessionNumber": "ACC123", "OperatorsName": "Tech^Tom",
       "StudyID": "S1", "OtherPatientIDs": "OTHER-9", "PatientTelephoneNumbers": "555-0100"}


def oblique_orientation() -> NDArray[np.float64]:
    """Row and column direction cosines of a plane tilted 20 deg about x, then 15 deg about z."""
    a, b = np.radians(20.0), np.radians(15.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    m = rz @ rx
    return np.concatenate([m[:, 0], m[:, 1]])


@dataclass
class Series:
    """A CT series: voxels ``values[i, j, k]`` (column i, row j, slice k) in HU, stored as
    ``(HU - intercept) / slope``."""

    values: NDArray[np.int16]
    orientation: NDArray[np.float64] = field(default_factory=oblique_orientation)
    origin_mm: tuple[float, float, float] = (-120.5, 33.25, 410.0)
    pixel_spacing: tuple[float, float] = (0.7, 0.9)  # between rows, between columns
    slice_spacing_mm: float = 2.5
    slope: float = 1.0
    intercept: float = -1024.0
    series_uid: str = field(default_factory=generate_uid)
    study_uid: str = field(default_factory=generate_uid)
    frame_uid: str = field(default_factory=generate_uid)

    @property
    def normal(self) -> NDArray[np.float64]:
        return np.cross(self.orientation[:3], self.orientation[3:])

    def position(self, k: float) -> NDArray[np.float64]:
        return np.asarray(self.origin_mm) + k * self.slice_spacing_mm * self.normal

    def world(self, i: float, j: float, k: float) -> NDArray[np.float64]:
        """LPS position of voxel (i, j, k) from the DICOM definition (PS3.3 C.7.6.2.1.1)."""
        row, col = self.orientation[:3], self.orientation[3:]
        return self.position(k) + i * self.pixel_spacing[1] * row + j * self.pixel_spacing[0] * col

    def slice(self, k: int, **overrides: object) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self.study_uid, self.series_uid
        ds.FrameOfReferenceUID = self.frame_uid
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, k + 1
        ds.StudyDate, ds.StudyTime, ds.SeriesDescription = "20240305", "101500", "CHEST"
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.add_new(0x00091001, "LO", "private secret Doe")  # a private tag (no creator: still private)
        # decimal strings as DICOM allows them (at most 16 characters, PS3.5 table 6.2-1), as a scanner writes
        ds.ImageOrientationPatient = [format_number_as_ds(float(v)) for v in self.orientation]
        ds.ImagePositionPatient = [format_number_as_ds(float(v)) for v in self.position(k)]
        ds.PixelSpacing = [format_number_as_ds(float(s)) for s in self.pixel_spacing]
        ds.SliceThickness = format_number_as_ds(float(self.slice_spacing_mm))
        ds.RescaleSlope = format_number_as_ds(float(self.slope))
        ds.RescaleIntercept = format_number_as_ds(float(self.intercept))
        cols, rows = self.values.shape[0], self.values.shape[1]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        stored = np.round((self.values[:, :, k].astype(np.float64) - self.intercept) / self.slope).astype(np.int16)
        ds.PixelData = np.ascontiguousarray(stored.T).tobytes()  # rows x columns
        for keyword, value in overrides.items():
            setattr(ds, keyword, value)
        return ds

    def files(self) -> list[tuple[str, bytes]]:
        return [(f"slice{k:03d}.dcm", to_bytes(self.slice(k))) for k in range(self.values.shape[2])]

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, blob in self.files():
            (folder / name).write_bytes(blob)
        return folder


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ramp(shape: tuple[int, int, int] = (12, 10, 8), seed: int = 0) -> NDArray[np.int16]:
    """Distinct HU per voxel (so a swapped axis or slice shows): i + 20 j + 400 k - 1000 plus noise."""
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    noise = np.random.default_rng(seed).integers(0, 3, shape)
    return (i + 20 * j + 400 * k - 1000 + noise).astype(np.int16)
