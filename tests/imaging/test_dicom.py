"""DICOM series into volumes: geometry against the DICOM definition, the bundled peers' files, and bad input."""

from __future__ import annotations

import copy
import gzip
import io
import zipfile
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.nicom import dicomwrappers
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage
from tests.imaging.dicom_factory import Series, oblique_orientation, ramp, to_bytes

from medtwin.imaging.dicom import read_dicom, read_dicom_path
from medtwin.imaging.volume import ImageFileError

NICOM_DATA = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"


def corners(shape: tuple[int, int, int]) -> np.ndarray:
    return np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)],
                    dtype=float)


def test_oblique_series_any_file_order_matches_the_dicom_definition() -> None:
    series = Series(ramp())
    files = series.files()
    volume = read_dicom(files[::-1][3:] + files[::-1][:3], "ct")  # shuffled
    assert volume.frame == "LPS" and volume.units == "HU" and volume.data.dtype == np.int16
    assert np.array_equal(volume.data, series.values)  # slices ordered by position, HU = stored - 1024
    for ijk in corners(volume.shape):
        assert np.allclose(volume.index_to_world(ijk), series.world(*ijk), atol=1e-5)
    assert np.allclose(volume.spacing_mm, [0.9, 0.7, 2.5], atol=1e-6)
    assert volume.meta["series_uid"] == series.series_uid and volume.meta["instances"] == "8"
    assert "PatientName" not in str(volume.meta) and "Doe" not in str(volume.meta)


def test_rescale_slope_gives_float_values() -> None:
    series = Series(ramp(), slope=0.5, intercept=-100.0)
    volume = read_dicom(series.files())
    assert volume.data.dtype == np.float32
    assert np.allclose(volume.data, np.round((series.values + 100.0) / 0.5) * 0.5 - 100.0)


def test_folder_and_zip_give_the_same_volume(tmp_path: Path) -> None:
    series = Series(ramp())
    folder = series.write(tmp_path / "series")
    (folder / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, blob in series.files():
            zf.writestr(f"dir/{name}", blob)
    a, b = read_dicom_path(folder), read_dicom_path(archive)
    assert np.array_equal(a.data, b.data) and np.allclose(a.affine, b.affine, atol=0)


def _enhanced(series: Series, order: list[int]) -> bytes:
    """The series as one enhanced multi-frame file, frames in ``order``, geometry in functional groups."""
    first = series.slice(0)
    ds = copy.deepcopy(first)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope",
                    "RescaleIntercept", "SliceThickness"):
        delattr(ds, keyword)
    shared = Dataset()
    orientation, measures, rescale = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    measures.PixelSpacing, measures.SliceThickness = first.PixelSpacing, first.SliceThickness
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = "1", "-1024", "HU"
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = series.slice(k).ImagePositionPatient
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(order)
    ds.PixelData = b"".join(series.slice(k).PixelData for k in order)
    return to_bytes(ds)


def test_enhanced_multiframe_equals_the_single_frame_series() -> None:
    series = Series(ramp())
    order = [5, 0, 7, 2, 1, 6, 3, 4]
    multi = read_dicom([("enhanced.dcm", _enhanced(series, order))])
    single = read_dicom(series.files())
    assert np.array_equal(multi.data, single.data)
    assert np.allclose(multi.affine, single.affine, atol=1e-9)
    assert multi.meta["frames"] == "8" and multi.meta["instances"] == "1"


def test_philips_enhanced_mprage_against_nibabel() -> None:
    """A real enhanced MR file (176 frames, oblique) shipped with nibabel: our volume and nibabel's DICOM
    wrapper place every voxel at the same point with the same value."""
    raw = gzip.decompress((NICOM_DATA / "philips_mprage.dcm.gz").read_bytes())
    ours = read_dicom([("philips_mprage.dcm", raw)])
    theirs = dicomwrappers.wrapper_from_data(pydicom.dcmread(io.BytesIO(raw)))
    assert ours.shape == (256, 256, 176)
    # nibabel indexes (row, column, frame) with frames in file order; ours (column, row, position order)
    reference = np.asarray(theirs.get_data())
    k_theirs = reference.shape[2] - 1 - np.arange(176)  # the file's frames run against the slice normal
    for i, j, k in [(0, 0, 0), (255, 0, 175), (17, 200, 90), (128, 128, 88)]:
        assert np.allclose(ours.index_to_world([i, j, k]),
                           (theirs.affine @ [j, i, k_theirs[k], 1.0])[:3], atol=1e-3)
        assert ours.data[i, j, k] == pytest.approx(reference[j, i, k_theirs[k]], rel=1e-6)


def test_two_siemens_slices_from_nibabel() -> None:
    files = [(str(NICOM_DATA / n), NICOM_DATA / n) for n in ("1.dcm", "0.dcm")]
    volume = read_dicom(files)
    first = pydicom.dcmread(NICOM_DATA / "0.dcm")
    assert volume.shape == (256, 256, 2)
    assert np.allclose(volume.affine[:3, 3], [float(v) for v in first.ImagePositionPatient])
    assert np.allclose(volume.affine[:3, 2], [0.0, 0.0, 3.0], atol=1e-6)  # measured between the two positions
    assert np.array_equal(volume.data[:, :, 0], first.pixel_array.T)


def test_rt_dose_grid_frames() -> None:
    path = Path(str(get_testdata_file("rtdose.dcm", download=False)))
    ds = pydicom.dcmread(path)
    volume = read_dicom_path(path)
    assert volume.shape == (10, 10, 15)
    assert np.allclose(volume.index_to_world([0, 0, 14]), [189.43125, 199.43125, -761.87 + 70.0])
    assert np.allclose(volume.data[:, :, 3], ds.pixel_array[3].T * float(ds.DoseGridScaling))


def test_one_slice_takes_its_spacing_between_slices() -> None:
    path = Path(str(get_testdata_file("CT_small.dcm", download=False)))
    volume = read_dicom_path(path)
    ds = pydicom.dcmread(path)
    assert volume.shape == (128, 128, 1) and volume.spacing_mm[2] == pytest.approx(float(ds.SpacingBetweenSlices))
    assert volume.meta["slice_spacing_source"] == "SpacingBetweenSlices"
    assert np.array_equal(volume.data[:, :, 0], ds.pixel_array.T.astype(np.int32) + int(ds.RescaleIntercept))


# --- bad input: each names the file and the attribute -----------------------------------------------

def _refused(files: list[tuple[str, bytes]]) -> ImageFileError:
    with pytest.raises(ImageFileError) as err:
        read_dicom(files, "series")
    return err.value


def test_missing_slice() -> None:
    files = Series(ramp()).files()
    error = _refused(files[:3] + files[4:])
    assert error.field == "ImagePositionPatient" and error.source == "slice004.dcm"
    assert "missing slice" in error.message and "slice002.dcm" in error.message


def test_duplicate_slice_position() -> None:
    series = Series(ramp())
    files = series.files()
    copy_ = ("slice099.dcm", to_bytes(series.slice(2, SOPInstanceUID="1.2.3.4")))
    error = _refused([*files, copy_])
    assert error.field == "ImagePositionPatient" and "duplicate" in error.message
    named = f"{error.source} {error.message}"
    assert "slice002.dcm" in named and "slice099.dcm" in named


def test_mixed_orientations() -> None:
    series = Series(ramp())
    files = series.files()
    tilted = np.concatenate([oblique_orientation()[3:], oblique_orientation()[:3]])
    files[5] = ("slice005.dcm", to_bytes(series.slice(5, ImageOrientationPatient=[f"{v:.10f}" for v in tilted])))
    error = _refused(files)
    assert error.field == "ImageOrientationPatient" and error.source == "slice005.dcm"
    assert "mixed orientations" in error.message


def test_uneven_spacing() -> None:
    series = Series(ramp())
    files = series.files()
    shifted = series.position(4) + 0.6 * series.normal  # 3.1 then 1.9 mm instead of 2.5
    files[4] = ("slice004.dcm", to_bytes(series.slice(4, ImagePositionPatient=[f"{v:.8f}" for v in shifted])))
    error = _refused(files)
    assert error.field == "ImagePositionPatient" and "uneven slice spacing" in error.message
    assert error.source in ("slice004.dcm", "slice005.dcm")


def test_truncated_file() -> None:
    files = Series(ramp()).files()
    name, blob = files[2]
    error = _refused([*files[:2], (name, blob[: len(blob) - 50]), *files[3:]])
    assert error.source == "slice002.dcm" and error.field == "PixelData"
    cut_header = _refused([*files[:2], (name, blob[:200]), *files[3:]])
    assert cut_header.source == "slice002.dcm"


def test_pydicom_truncated_example() -> None:
    path = Path(str(get_testdata_file("MR_truncated.dcm", download=False)))
    with pytest.raises(ImageFileError) as err:
        read_dicom_path(path)
    assert err.value.source == str(path) and err.value.field == "PixelData" and str(path) in str(err.value)


def test_two_series_and_non_dicom_files() -> None:
    a, b = Series(ramp()), Series(ramp())
    error = _refused(a.files()[:2] + b.files()[:2])
    assert error.field == "SeriesInstanceUID" and "2 series" in error.message
    error = _refused([*a.files(), ("notes.txt", b"not an image")])
    assert error.source == "notes.txt" and error.field == "file"


def test_missing_position() -> None:
    series = Series(ramp())
    ds = series.slice(1)
    del ds.ImagePositionPatient
    error = _refused([series.files()[0], ("slice001.dcm", to_bytes(ds))])
    assert error.field == "ImagePositionPatient" and error.source == "slice001.dcm"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
       st.tuples(st.floats(0.2, 3), st.floats(0.2, 3), st.floats(0.3, 6)),
       st.tuples(st.floats(-500, 500), st.floats(-500, 500), st.floats(-500, 500)))
def test_any_orientation_spacing_and_origin(q: list[float], spacing: tuple[float, float, float],
                                            origin: tuple[float, float, float]) -> None:
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    series = Series(ramp((4, 3, 5)), orientation=np.concatenate([rotation[:, 0], rotation[:, 1]]),
                    origin_mm=origin, pixel_spacing=(spacing[0], spacing[1]), slice_spacing_mm=spacing[2])
    volume = read_dicom(series.files()[::-1])
    assert np.array_equal(volume.data, series.values)
    for ijk in corners(volume.shape):
        assert np.allclose(volume.index_to_world(ijk), series.world(*ijk), atol=1e-4)


def test_zip_that_unpacks_too_large_is_refused_before_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtwin.imaging import dicom

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.dcm", b"\0" * 200_000)
    monkeypatch.setattr(dicom, "MAX_UNZIPPED_BYTES", 100_000)
    with pytest.raises(ImageFileError) as err:
        dicom.zip_sources(buffer.getvalue(), "bomb.zip")
    assert err.value.source == "bomb.zip" and err.value.field == "zip" and "200000" in err.value.message
