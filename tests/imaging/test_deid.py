"""DICOM de-identification (PS3.15 basic profile) and the de-identified export of a stored volume."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from tests.imaging.dicom_factory import PHI, Series, ramp, to_bytes

from medtwin.imaging.dicom import read_dicom
from medtwin.imaging.dicom_deid import ACTIONS, deidentify_all
from medtwin.imaging.dicom_export import export_zip
from medtwin.imaging.volume import Volume, grid_affine

GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows",
            "Columns", "RescaleSlope", "RescaleIntercept", "PixelData", "Modality", "SOPClassUID")


def _with_nested_phi(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.PersonName = "Nurse^Nancy"
    ds.ReferencedSeriesSequence = Sequence([item])  # not in the table: kept, but its UIDs and names are cleaned
    return ds


def test_deidentified_series_has_no_phi_and_the_same_geometry() -> None:
    series = Series(ramp())
    originals = [_with_nested_phi(series.slice(k)) for k in range(series.values.shape[2])]
    cleaned = deidentify_all([pydicom.dcmread(io.BytesIO(to_bytes(ds))) for ds in originals])
    phi_values = set(PHI.values()) | {"Nurse^Nancy", "private secret Doe"}
    for before, after in zip(originals, cleaned, strict=True):
        text = str(after) + str(after.file_meta)
        assert not [v for v in phi_values if v in text], "PHI left in the de-identified header"
        for keyword in PHI:
            assert keyword not in after or after[keyword].value in ("", None), keyword
            assert ACTIONS[keyword] in ("X", "Z")
        assert not any(element.tag.is_private for element in after)
        for keyword in GEOMETRY:
            assert after[keyword].value == before[keyword].value, keyword
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            assert after[keyword].value != before[keyword].value and after[keyword].value.startswith("2.25.")
        nested = after.ReferencedSeriesSequence[0]
        assert "PersonName" not in nested and nested.ReferencedSOPInstanceUID == after.SOPInstanceUID
        assert nested.ReferencedSOPClassUID == before.SOPClassUID  # a class UID is not an instance: kept
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert after.PatientIdentityRemoved == "YES"
        assert after.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # one study, one series, one frame of reference after as before (UIDs replaced consistently)
    assert len({ds.SeriesInstanceUID for ds in cleaned}) == 1 and len({ds.StudyInstanceUID for ds in cleaned}) == 1
    assert len({ds.FrameOfReferenceUID for ds in cleaned}) == 1
    # and the de-identified files read as the same volume
    a = read_dicom(series.files())
    b = read_dicom([(f"{k}.dcm", to_bytes(ds)) for k, ds in enumerate(cleaned)])
    assert np.array_equal(a.data, b.data) and np.allclose(a.affine, b.affine, atol=1e-9)


def test_two_exports_do_not_share_uids() -> None:
    ds = Series(ramp((2, 2, 1))).slice(0)
    first, second = deidentify_all([ds])[0], deidentify_all([ds])[0]
    assert first.StudyInstanceUID != second.StudyInstanceUID  # no link between two exports of one study


def test_exported_zip_is_deidentified_and_reads_back_in_place() -> None:
    series = Series(ramp())
    volume = read_dicom(series.files())
    blob = export_zip(volume)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        files = [(n, archive.read(n)) for n in archive.namelist()]
    assert len(files) == volume.shape[2]
    back = read_dicom(files)
    assert np.array_equal(back.data, volume.data)
    assert np.abs(back.affine - volume.affine).max() < 1e-6
    header = pydicom.dcmread(io.BytesIO(files[0][1]))
    assert header.StudyInstanceUID != series.study_uid and header.SeriesInstanceUID != series.series_uid
    assert header.PatientIdentityRemoved == "YES" and header.PatientName == ""


def test_export_of_a_float_ras_volume_keeps_positions_and_values_to_the_rescale_step() -> None:
    data = np.linspace(-3.0, 7.0, 60, dtype=np.float32).reshape(3, 4, 5)
    volume = Volume(data, grid_affine((1.5, 0.5, 2.0), (10.0, -4.0, 2.0), "RAS"), "RAS", "a.u.")
    with zipfile.ZipFile(io.BytesIO(export_zip(volume))) as archive:
        back = read_dicom([(n, archive.read(n)) for n in archive.namelist()])
    step = 10.0 / 65534
    assert np.abs(back.data - data).max() <= step
    assert np.allclose(back.to_frame("RAS").affine, volume.affine, atol=1e-6)
