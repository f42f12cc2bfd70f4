"""Segmentation on phantoms: thresholds, region growing, components, morphology in mm, NIfTI and DICOM SEG input."""

from __future__ import annotations

import io
import math

import highdicom as hd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from scipy.spatial import cKDTree

from medtwin.imaging import phantoms as ph
from medtwin.imaging import segment as seg
from medtwin.imaging.dicom import read_dicom
from medtwin.imaging.nifti import write_nifti
from medtwin.imaging.volume import ImageFileError, Volume, VolumeError

SPHERE = ph.Sphere([0.0, 0.0, 0.0], 8.0)


def _image(noise: float = 0.0) -> Volume:
    """Two spheres (bright 200, dim 120) on a 0 background with partial-volume edges."""
    g = ph.grid((48, 32, 32), (0.5, 0.5, 0.5), (-8.0, -8.0, -8.0))
    a = ph.intensity_volume(ph.Sphere([0.0, 0.0, 0.0], 5.0), g, 200.0, 0.0).data
    b = ph.intensity_volume(ph.Sphere([12.0, 0.0, 0.0], 3.0), g, 120.0, 0.0).data
    img = np.maximum(a, b)
    if noise:
        img = img + np.random.default_rng(1).normal(0.0, noise, img.shape)
    return g.with_data(img, units="a.u.")


def test_threshold_at_the_half_level_gives_the_analytic_volume() -> None:
    g = ph.grid((40, 40, 40), (0.5, 0.5, 0.5), (-10.0, -10.0, -10.0))
    img = ph.intensity_volume(ph.Sphere([0.3, 0.1, -0.2], 6.0), g, 200.0, 0.0)
    lab = seg.threshold(img, lower=100.0)
    assert float(lab.data.sum()) * img.voxel_volume_ml == pytest.approx(4 / 3 * math.pi * 216 / 1000, rel=0.005)
    below = seg.threshold(img, upper=99.999)
    assert np.array_equal(below.data.astype(bool), ~lab.data.astype(bool))
    assert 60.0 < seg.otsu_threshold(_image()) < 140.0
    with pytest.raises(VolumeError) as err:
        seg.threshold(img, lower=5.0, upper=1.0)
    assert err.value.field == "upper"


def test_region_grow_takes_the_seeded_sphere_only() -> None:
    img = _image(noise=5.0)
    grown = seg.region_grow(img, [12.0, 0.0, 0.0], tolerance=30.0)
    pts = img.index_to_world(np.argwhere(grown.data == 1))
    assert np.allclose(pts.mean(axis=0), [12.0, 0.0, 0.0], atol=0.2)
    assert float(grown.data.sum()) * img.voxel_volume_ml == pytest.approx(4 / 3 * math.pi * 27 / 1000, rel=0.25)
    bright = seg.region_grow(img, [0.0, 0.0, 0.0], tolerance=30.0)
    assert np.allclose(img.index_to_world(np.argwhere(bright.data == 1)).mean(axis=0), 0.0, atol=0.2)


def test_region_grow_bad_seed_names_the_field() -> None:
    img = _image()
    with pytest.raises(VolumeError) as err:
        seg.region_grow(img, [500.0, 0.0, 0.0], 10.0)
    assert err.value.field == "seed_mm" and "outside" in err.value.message
    with pytest.raises(VolumeError) as err:
        seg.region_grow(img, [0.0, 0.0, 0.0], -1.0)
    assert err.value.field == "tolerance"


def test_components_ranked_by_size_and_keep_largest() -> None:
    img = _image()
    mask = seg.threshold(img, lower=60.0)
    comps = seg.connected_components(mask)
    sizes = [int((comps.data == k).sum()) for k in (1, 2)]
    assert sizes[0] > sizes[1] > 0 and int(comps.data.max()) == 2
    largest = seg.keep_largest(mask)
    assert int(largest.data.sum()) == sizes[0]
    assert np.allclose(img.index_to_world(np.argwhere(largest.data == 1)).mean(axis=0), 0.0, atol=0.1)
    assert int(seg.keep_largest(mask, count=2).data.sum()) == sum(sizes)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.5, 1.5)])
def test_morphology_radius_is_millimetres_on_anisotropic_grids(spacing: tuple[float, float, float]) -> None:
    """Against the definition, by brute force in world mm: dilation = every voxel within r of the mask."""
    g = ph.grid_around([SPHERE], spacing, margin_mm=4.0)
    lab = ph.label_volume(SPHERE, g)
    pts = g.index_to_world(np.indices(g.shape).reshape(3, -1).T.astype(float))
    inside = lab.data.ravel().astype(bool)
    d_to_mask = cKDTree(pts[inside]).query(pts)[0].reshape(g.shape)
    d_to_back = cKDTree(pts[~inside]).query(pts)[0].reshape(g.shape)
    assert np.array_equal(seg.dilate(lab, 2.0).data.astype(bool), d_to_mask <= 2.0 + 1e-9)
    assert np.array_equal(seg.erode(lab, 2.0).data.astype(bool), d_to_back > 2.0 + 1e-9)
    grown = g.index_to_world(np.argwhere(seg.dilate(lab, 2.0).data == 1))
    # the same 2 mm on every axis whatever the voxel size: the extent grows by 4 mm up to one voxel
    base = g.index_to_world(np.argwhere(lab.data == 1))
    growth = (grown.max(0) - grown.min(0)) - (base.max(0) - base.min(0))
    assert np.all(growth <= 4.0 + 1e-9) and np.all(growth >= 4.0 - 2 * np.asarray(spacing) - 1e-9)


def test_opening_removes_a_thin_bridge_and_closing_fills_a_gap() -> None:
    g = ph.grid((40, 20, 20), (1.0, 1.0, 1.0))
    two = ph.label_volume([(ph.Sphere([10.0, 10.0, 10.0], 6.0), 1), (ph.Sphere([29.0, 10.0, 10.0], 6.0), 1),
                           (ph.Cylinder([19.5, 10.0, 10.0], [1, 0, 0], 0.6, 12.0), 1)], g)
    assert int(seg.connected_components(two).data.max()) == 1
    assert int(seg.connected_components(seg.opening(two, 1.5)).data.max()) == 2
    holed = two.data.copy()
    holed[10, 10, 10] = 0  # a one-voxel hole inside the first sphere
    closed = seg.closing(two.with_data(holed), 1.5)
    assert closed.data[10, 10, 10] == 1


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 3.0))
def test_erosion_and_dilation_are_dual(radius: float) -> None:
    rng = np.random.default_rng(7)
    g = ph.grid((14, 12, 10), (0.7, 1.0, 1.3))
    mask = g.with_data((rng.random(g.shape) > 0.6).astype(np.uint8))
    inverse = mask.with_data((1 - mask.data).astype(np.uint8))
    eroded = seg.erode(mask, radius).data.astype(bool)
    dual = ~seg.dilate(inverse, radius).data.astype(bool)
    inner = (slice(3, -3),) * 3  # away from the edge (the edge counts as background for erosion)
    assert np.array_equal(eroded[inner], dual[inner])
    assert np.all(seg.dilate(mask, radius).data >= mask.data) and np.all(eroded <= mask.data.astype(bool))


def test_label_map_from_nifti_round_trip_and_refusal() -> None:
    g = ph.grid_around([SPHERE], (1.0, 1.0, 1.0), frame="LPS")
    lab = ph.label_volume([(SPHERE, 3)], g)
    back = seg.label_map_from_nifti(write_nifti(lab), "labels.nii.gz", names={3: "tumour"})
    assert back.frame == "RAS" and back.labels == {3: "tumour"} and back.units == "label"
    ijk = np.argwhere(back.data == 3)
    assert np.allclose(back.index_to_world(ijk).mean(axis=0), [0.0, 0.0, 0.0], atol=1e-6)
    img = g.with_data(np.random.default_rng(0).random(g.shape))
    with pytest.raises(ImageFileError) as err:
        seg.label_map_from_nifti(write_nifti(img), "ct.nii.gz")
    assert err.value.field == "data" and err.value.source == "ct.nii.gz"


# --------------------------------------------------------------------------- DICOM SEG (written by highdicom)


def _ct_series(n: int = 6, rows: int = 8, cols: int = 10) -> list[Dataset]:
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "Test^Phantom", "19700101", "O"
        ds.StudyID, ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.AccessionNumber = (
            "1", "20260101", "120000", "", "A1")
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 1, k + 1, "medtwin"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-5.0, 10.0, 30.0 + 2.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.7], 2.0
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = np.full((rows, cols), 1000 + k, np.int16).tobytes()
        out.append(ds)
    return out


def _seg_blob(images: list[Dataset], labels: NDArrayU8) -> bytes:
    descs = [hd.seg.SegmentDescription(
        segment_number=i, segment_label=name, segmented_property_category=codes.cid7150.Tissue,
        segmented_property_type=codes.cid7166.ConnectiveTissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, name in ((1, "tumour"), (2, "vessel"))]
    s = hd.seg.Segmentation(
        source_images=images, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs, series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medtwin", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0")
    buf = io.BytesIO()
    s.save_as(buf)
    return buf.getvalue()


NDArrayU8 = np.ndarray


def test_dicom_seg_lands_on_the_ct_grid_by_position() -> None:
    images = _ct_series()
    labels = np.zeros((6, 8, 10), np.uint8)  # (frames, rows, columns) as highdicom takes it
    labels[2:4, 3:5, 4:8] = 1
    labels[4, 1, 1] = 2
    blob = _seg_blob(images, labels)
    own = seg.read_dicom_seg(blob, "seg.dcm")
    assert own.frame == "LPS" and own.labels == {1: "tumour", 2: "vessel"}
    pts = own.index_to_world(np.argwhere(own.data == 1))
    # columns 4..7 at 0.7 mm from x=-5, rows 3..4 at 0.8 mm from y=10, slices 2..3 at 2 mm from z=30
    assert np.allclose(pts.min(axis=0), [-2.2, 12.4, 34.0]) and np.allclose(pts.max(axis=0), [-0.1, 13.2, 36.0])
    buffers = []
    for n, ds in enumerate(images):
        b = io.BytesIO()
        ds.save_as(b, enforce_file_format=True)
        buffers.append((f"ct{n}.dcm", b.getvalue()))
    ct = read_dicom(buffers, "ct")
    on_ct = seg.read_dicom_seg(blob, "seg.dcm", like=ct)
    assert on_ct.shape == ct.shape and int((on_ct.data == 1).sum()) == 16 and int((on_ct.data == 2).sum()) == 1
    # each label sits where highdicom was told: frame k, row r, column c -> data[c, r, k]
    assert on_ct.data[1, 1, 4] == 2 and on_ct.data[4, 3, 2] == 1 and on_ct.data[4, 3, 1] == 0


def test_not_a_seg_is_refused_naming_the_file() -> None:
    b = io.BytesIO()
    _ct_series(1)[0].save_as(b, enforce_file_format=True)
    with pytest.raises(ImageFileError) as err:
        seg.read_dicom_seg(b.getvalue(), "ct.dcm")
    assert err.value.source == "ct.dcm" and err.value.field == "SOPClassUID"
    with pytest.raises(ImageFileError) as err:
        seg.read_dicom_seg(b"not dicom at all", "junk.dcm")
    assert err.value.source == "junk.dcm"


def test_recipe_checks_its_steps_and_seed_frames_agree() -> None:
    img = _image()
    with pytest.raises(VolumeError) as err:
        seg.apply_recipe(img, seg.Recipe(tolerance=5.0))
    assert err.value.field == "seed_mm"
    with pytest.raises(VolumeError) as err:
        seg.apply_recipe(img, seg.Recipe())
    assert err.value.field == "lower"
    ras = seg.apply_recipe(img, seg.Recipe(seed_mm=(12.0, 0.0, 0.0), tolerance=40.0, name="dim"))
    lps = seg.apply_recipe(img, seg.Recipe(seed_mm=(-12.0, 0.0, 0.0), seed_frame="LPS", tolerance=40.0, name="dim"))
    assert np.array_equal(ras.data, lps.data) and ras.labels == {1: "dim"} and ras.data.any()
    banded = seg.apply_recipe(img, seg.Recipe(lower=100.0, seed_mm=(12.0, 0.0, 0.0), tolerance=200.0))
    assert banded.data.sum() < seg.region_grow(img, [12.0, 0.0, 0.0], 200.0).data.sum()
