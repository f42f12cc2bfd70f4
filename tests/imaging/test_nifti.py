"""NIfTI in and out, and the DICOM -> NIfTI -> back round trip of every voxel's position."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path
from tests.imaging.dicom_factory import Series, ramp

from medtwin.imaging.dicom import read_dicom
from medtwin.imaging.nifti import read_nifti, write_nifti
from medtwin.imaging.volume import LPS_TO_RAS, ImageFileError, Volume, grid_affine

NIB_DATA = Path(data_path)


def _all_voxels(shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).reshape(-1, 3).astype(float)


def round_trip_error_mm(series: Series) -> float:
    """Largest distance between where DICOM puts a voxel and where the NIfTI written from it (read back by
    nibabel itself, independently of our reader) puts it."""
    dicom = read_dicom(series.files())
    image = nib.Nifti1Image.from_bytes(gzip.decompress(write_nifti(dicom)))
    ijk = _all_voxels(dicom.shape)
    ras = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    lps_truth = np.array([series.world(*v) for v in ijk])
    return float(np.abs(ras * [-1, -1, 1] - lps_truth).max())


def test_dicom_to_nifti_to_back_keeps_every_position() -> None:
    series = Series(ramp())
    error = round_trip_error_mm(series)
    smallest_half_voxel = 0.5 * min(series.pixel_spacing + (series.slice_spacing_mm,))
    assert error < 1e-3 < smallest_half_voxel  # float32 sform: micrometres, far within half a voxel
    dicom = read_dicom(series.files())
    back = read_nifti(write_nifti(dicom), "ct.nii.gz")
    assert back.frame == "RAS" and np.array_equal(back.data, dicom.data)
    assert np.abs(back.to_frame("LPS").index_to_world(_all_voxels(back.shape))
                  - dicom.index_to_world(_all_voxels(back.shape))).max() < 1e-3


def test_nibabel_bundled_anatomical_nii() -> None:
    path = NIB_DATA / "anatomical.nii"
    reference = nib.load(path)
    volume = read_nifti(path.read_bytes(), "anatomical.nii")
    assert volume.shape == reference.shape and volume.frame == "RAS"
    assert np.allclose(volume.affine, reference.affine)
    assert np.array_equal(volume.data, np.asarray(reference.dataobj))
    assert volume.meta["affine_source"] == "sform"


def test_written_header_has_sform_qform_and_mm() -> None:
    volume = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), grid_affine((1.0, 2.0, 3.0), (5, 6, 7), "LPS"),
                    "LPS", "label", {1: "tumour"})
    image = nib.Nifti1Image.from_bytes(write_nifti(volume, compress=False))
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    assert image.header.get_xyzt_units()[0] == "mm"
    assert np.allclose(image.affine, LPS_TO_RAS @ volume.affine)
    assert image.header.get_intent()[0] == "label"
    back = read_nifti(write_nifti(volume), "labels.nii.gz")
    assert back.units == "label" and np.array_equal(back.data, volume.data)


def test_scaled_voxels_are_rescaled() -> None:
    image = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    image.header.set_slope_inter(2.5, -10.0)
    volume = read_nifti(image.to_bytes(), "scaled.nii")
    assert volume.data.dtype == np.float32
    assert np.allclose(volume.data, np.arange(8).reshape(2, 2, 2) * 2.5 - 10.0)


def _nifti(affine: np.ndarray, sform_code: int = 1, qform_code: int = 1) -> bytes:
    image = nib.Nifti1Image(np.zeros((3, 3, 3), dtype=np.uint8), None)
    image.header.set_sform(affine, code=sform_code)
    if qform_code:
        image.header.set_qform(np.eye(4), code=qform_code)
    else:
        image.header.set_qform(None, code=0)
    return bytes(image.to_bytes())


def test_singular_affine_is_refused_naming_file_and_field() -> None:
    singular = np.diag([1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ImageFileError) as err:
        read_nifti(_nifti(singular), "flat.nii")
    assert err.value.source == "flat.nii" and err.value.field == "sform" and "singular" in err.value.message


def test_no_position_is_refused() -> None:
    with pytest.raises(ImageFileError) as err:
        read_nifti(_nifti(np.eye(4), sform_code=0, qform_code=0), "nowhere.nii")
    assert err.value.field == "sform_code/qform_code"


def test_qform_is_used_without_sform() -> None:
    volume = read_nifti(_nifti(np.diag([9.0, 9.0, 9.0, 1.0]), sform_code=0, qform_code=1), "q.nii")
    assert volume.meta["affine_source"] == "qform" and np.allclose(volume.affine, np.eye(4))


def test_four_d_and_truncated_files() -> None:
    four_d = NIB_DATA / "example4d.nii.gz"
    with pytest.raises(ImageFileError) as err:
        read_nifti(four_d.read_bytes(), "example4d.nii.gz")
    assert err.value.field == "dim"
    whole = (NIB_DATA / "anatomical.nii").read_bytes()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        handle.write(whole[: len(whole) // 3])
    with pytest.raises(ImageFileError) as err:
        read_nifti(buffer.getvalue(), "cut.nii.gz")
    assert err.value.source == "cut.nii.gz" and err.value.field == "data"
    with pytest.raises(ImageFileError) as err:
        read_nifti(four_d.read_bytes()[:1000], "cut2.nii.gz")
    assert err.value.source == "cut2.nii.gz" and err.value.field == "file"
