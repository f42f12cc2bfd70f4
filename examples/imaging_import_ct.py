"""Images in the twin: a CT series into a patient's record, stored sealed and linked to an ImagingStudy, then
viewed, converted to NIfTI and exported de-identified.

The series is made here (an oblique 64 x 64 x 40 CT of a 20 mm sphere of soft tissue in water, written as DICOM
files as a scanner would send them), so the example runs offline.

    .venv/bin/python examples/imaging_import_ct.py
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from medtwin.imaging.dicom_export import to_datasets
from medtwin.imaging.nifti import read_nifti, write_nifti
from medtwin.imaging.slices import png_bytes, render_slice
from medtwin.imaging.volume import Volume
from medtwin.record.sources import RawUnit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.twin import imaging
from medtwin.twin.build import import_units


def phantom_ct() -> Volume:
    """-> a CT volume (HU) with an oblique LPS affine: 0.8 x 0.8 x 1.5 mm voxels, tilted 15 degrees about x."""
    a = np.radians(15.0)
    axes = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]]).T * [0.8, 0.8, 1.5]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = axes, [-25.0, -30.0, 100.0]
    volume = Volume(np.zeros((64, 64, 40), dtype=np.int16), affine, "LPS", "HU")
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij"), axis=-1)
    centre = volume.index_to_world([32, 32, 20])
    inside = np.linalg.norm(volume.index_to_world(ijk) - centre, axis=-1) <= 10.0
    return volume.with_data(np.where(inside, 40, 0).astype(np.int16))  # water 0 HU, soft tissue 40 HU


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store = Store(f"sqlite:///{root / 'example.db'}", AesGcmCodec(KeyRing.generate()))
        store.migrate()
        assert import_units(store, [RawUnit("patient.json", "json", {"resourceType": "Patient", "id": "pat-1"})]).ok
        made = phantom_ct()
        ct = Volume(made.data, made.affine, "LPS", "HU", meta={"modality": "CT"})
        series = root / "ct-series"
        series.mkdir()
        for k, ds in enumerate(to_datasets(ct)):
            ds.save_as(series / f"IM{k:04d}", enforce_file_format=True)

        result = imaging.import_path(store, "pat-1", series, actor="example")
        spacing = " x ".join(f"{s:.4g}" for s in result.spacing_mm)
        print(f"stored volume {result.volume_id[:12]}... {result.shape} voxels of {spacing} mm in "
              f"{result.frame}; ImagingStudy/{result.study_id}; {result.raw_bytes} bytes raw, "
              f"{result.stored_bytes} stored (compressed and sealed)")
        again = imaging.import_path(store, "pat-1", series, actor="example")
        print(f"re-import: created={again.created} (same volume id: {again.volume_id == result.volume_id})")

        volume = imaging.load_volume(store, "pat-1", result.volume_id)
        assert volume is not None
        back = read_nifti(write_nifti(volume), "ct.nii.gz").to_frame("LPS")
        ijk = np.array([[0, 0, 0], [63, 63, 39], [32, 32, 20]], dtype=float)
        error = float(np.abs(back.index_to_world(ijk) - ct.index_to_world(ijk)).max())
        print(f"DICOM -> NIfTI -> back: largest position error {error:.2e} mm (half a voxel: 0.4 mm)")
        sphere_ml = float((np.asarray(volume.data) > 20).sum()) * volume.voxel_volume_ml
        print(f"sphere: {sphere_ml:.2f} mL of voxels over 20 HU (analytic 4.19 mL for r = 10 mm)")

        axial = render_slice(volume, "axial", window=400, level=40)
        png = png_bytes(axial.pixels)
        print(f"axial slice {axial.index}/{axial.count} along {axial.axis}: {axial.pixels.shape} PNG, {len(png)} bytes")

        from medtwin.imaging.dicom_export import export_zip

        with zipfile.ZipFile(io.BytesIO(export_zip(volume))) as archive:
            print(f"de-identified DICOM export: {len(archive.namelist())} files")
        store.dispose()


if __name__ == "__main__":
    main()
