"""Imaging import (issue #19): a 512 x 512 x 256 CT series (256 DICOM files) into a patient's twin, timed by stage
(read the files, pack and seal, ImagingStudy), with bytes (DICOM files, canonical raw, stored sealed) and the
DICOM -> NIfTI -> back position error over every voxel corner and a grid of interior voxels.

The CT is a body phantom (an ellipse of soft tissue at 40 HU with a bone ring at 700 HU in air at -1000 HU)
with Gaussian noise of SD 12 HU, a typical CT noise level: noise is what keeps real CT from compressing to
nothing, so the stored/raw figure is not flattered by flat regions. The geometry is oblique (tilted 12 deg).

    .venv/bin/python benchmarks/bench_imaging_import.py [--smoke]
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from medtwin.imaging.dicom import read_dicom_path  # noqa: E402
from medtwin.imaging.dicom_export import to_datasets  # noqa: E402
from medtwin.imaging.nifti import read_nifti, write_nifti  # noqa: E402
from medtwin.imaging.volume import Volume  # noqa: E402
from medtwin.record.sources import RawUnit  # noqa: E402
from medtwin.security.crypto import AesGcmCodec, KeyRing  # noqa: E402
from medtwin.store.database import Store  # noqa: E402
from medtwin.twin import imaging  # noqa: E402
from medtwin.twin.build import import_units  # noqa: E402


def body_ct(n: int, slices: int, seed: int = 1) -> Volume:
    a = np.radians(12.0)
    axes = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]]).T * [0.7, 0.7, 1.25]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = axes, [-180.0, -160.0, -150.0]
    x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    r = (x / 0.85) ** 2 + (y / 0.6) ** 2
    plane = np.where(r <= 1.0, 40.0, -1000.0)
    plane[(r > 0.8) & (r <= 0.9)] = 700.0
    rng = np.random.default_rng(seed)
    data = np.empty((n, n, slices), dtype=np.int16)
    for k in range(slices):
        data[:, :, k] = np.round(plane + rng.normal(0.0, 12.0, (n, n))).astype(np.int16)
    return Volume(data, affine, "LPS", "HU", meta={"modality": "CT"})


def position_error_mm(truth: Volume, back: Volume) -> float:
    shape = truth.shape
    grid = np.stack(np.meshgrid(*(np.linspace(0, s - 1, 9) for s in shape), indexing="ij"), -1).reshape(-1, 3)
    return float(np.abs(back.to_frame("LPS").index_to_world(grid) - truth.index_to_world(grid)).max())


def main(smoke: bool) -> None:
    warnings.simplefilter("ignore")
    n, slices = (64, 16) if smoke else (512, 256)
    ct = body_ct(n, slices)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        series = root / "series"
        series.mkdir()
        for k, ds in enumerate(to_datasets(ct)):
            ds.save_as(series / f"IM{k:04d}.dcm", enforce_file_format=True)
        dicom_bytes = sum(p.stat().st_size for p in series.iterdir())
        store = Store(f"sqlite:///{root / 'bench.db'}", AesGcmCodec(KeyRing.generate()))
        store.migrate()
        assert import_units(store, [RawUnit("p.json", "json", {"resourceType": "Patient", "id": "p"})]).ok

        start = time.perf_counter()
        volume = read_dicom_path(series)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        result = imaging.import_volume(store, "p", volume, actor="bench")
        store_s = time.perf_counter() - start
        start = time.perf_counter()
        again = imaging.import_path(store, "p", series, actor="bench")
        reimport_s = time.perf_counter() - start
        assert not again.created
        start = time.perf_counter()
        loaded = imaging.load_volume(store, "p", result.volume_id)
        load_s = time.perf_counter() - start
        assert loaded is not None and np.array_equal(loaded.data, ct.data)
        back = read_nifti(write_nifti(loaded), "ct.nii.gz")
        error = position_error_mm(ct, back)
        store.dispose()
    half_voxel = 0.5 * float(min(ct.spacing_mm))
    print(machine())
    print(f"series: {n} x {n} x {slices} int16 CT, {slices} DICOM files, {dicom_bytes / 1e6:.1f} MB")
    print(f"import (first): read+order+rescale {read_s:.2f} s, pack+seal+store+ImagingStudy {store_s:.2f} s, "
          f"total {read_s + store_s:.2f} s")
    print(f"re-import (unchanged, from the folder): {reimport_s:.2f} s; load (open, check hash): {load_s:.2f} s")
    print(f"bytes: raw canonical {result.raw_bytes / 1e6:.1f} MB, stored sealed {result.stored_bytes / 1e6:.1f} MB "
          f"({result.stored_bytes / result.raw_bytes:.1%} of raw)")
    print(f"DICOM -> NIfTI -> back: largest position error {error:.2e} mm (half a voxel: {half_voxel:.2f} mm)")


if __name__ == "__main__":
    main("--smoke" in sys.argv)
