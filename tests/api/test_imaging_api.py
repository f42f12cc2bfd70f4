"""The imaging API: upload, list, geometry, slice PNGs with overlays, exports; reach and bad input."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from tests.imaging.dicom_factory import PHI, Series, ramp

from medtwin.imaging.dicom import read_dicom
from medtwin.imaging.nifti import write_nifti
from medtwin.security import accounts
from medtwin.store.database import Store
from medtwin.store.images import image_chunks, image_volumes

PW = "a long enough clinician passphrase"


def _patient(client: TestClient, pid: str) -> None:
    r = client.post("/api/v1/record", content=json.dumps({"resourceType": "Patient", "id": pid}),
                    headers={"content-type": "application/fhir+json"})
    assert r.status_code in (200, 201), r.text


def other_clinician(client: TestClient, store: Store) -> dict[str, str]:
    """Headers of a clinician ("doc") whose care team holds only a new patient "pat-other"."""
    _patient(client, "pat-other")
    with store.begin() as connection:
        accounts.create_user(connection, "doc", PW, "clinician")
        accounts.add_to_care_team(connection, "doc", "pat-other")
    token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "doc", "password": PW})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _zip(series: Series) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, blob in series.files():
            archive.writestr(name, blob)
    return buffer.getvalue()


def _upload(client: TestClient, pid: str, name: str, blob: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/patients/{pid}/images", files={"file": (name, blob)}, headers=headers or {})


def _png(blob: bytes) -> np.ndarray:
    """Decode our PNG (8-bit grey or RGB, filter 0) independently of the encoder's code."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(blob):
        (length,), kind = struct.unpack(">I", blob[pos:pos + 4]), blob[pos + 4:pos + 8]
        body = blob[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == struct.unpack(">I", blob[pos + 8 + length:pos + 12 + length])[0]
        header, idat = (body, idat) if kind == b"IHDR" else (header, idat + body if kind == b"IDAT" else idat)
        pos += 12 + length
    width, height, _, colour = struct.unpack(">IIBB", header[:10])
    channels = 3 if colour == 2 else 1
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * channels)
    assert not rows[:, 0].any()
    return rows[:, 1:].reshape(height, width, channels).squeeze()


@pytest.fixture
def imported(client: TestClient) -> tuple[TestClient, Series, dict]:  # type: ignore[type-arg]
    _patient(client, "pat-img")
    series = Series(ramp((12, 10, 8)))
    r = _upload(client, "pat-img", "ct.zip", _zip(series))
    assert r.status_code == 201, r.text
    return client, series, r.json()


def test_upload_list_metadata_and_idempotent_reupload(imported, api_store: Store) -> None:  # type: ignore[no-untyped-def]
    client, series, body = imported
    assert body["shape"] == [12, 10, 8] and body["modality"] == "CT" and body["created"] is True
    again = _upload(client, "pat-img", "again.zip", _zip_reordered(series))
    assert again.status_code == 200 and again.json()["volume_id"] == body["volume_id"]
    listed = client.get("/api/v1/patients/pat-img/images").json()
    assert [v["volume_id"] for v in listed] == [body["volume_id"]]
    meta = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}").json()
    affine = np.array(meta["affine"])
    assert meta["frame"] == "LPS" and np.allclose(affine @ [11, 9, 7, 1], [*series.world(11, 9, 7), 1], atol=1e-5)
    study = client.get(f"/fhir/ImagingStudy/{body['study_id']}").json()
    assert study["series"][0]["uid"] == series.series_uid and study["series"][0]["numberOfInstances"] == 8
    assert study["series"][0]["extension"][0]["valueString"] == body["volume_id"]
    with api_store.connect() as connection:
        assert connection.execute(image_volumes.select()).rowcount != 0
        stored = b"".join(r.data for r in connection.execute(image_chunks.select()))
    assert b"MTVOL1" not in stored  # sealed at rest


def _zip_reordered(series: Series) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, blob in reversed(series.files()):
            archive.writestr(f"other/{name}", blob)
    return buffer.getvalue()


def test_slice_png_window_and_headers(imported) -> None:  # type: ignore[no-untyped-def]
    client, series, body = imported
    r = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}/slice",
                   params={"axis": "k", "index": 3, "window": 4000, "level": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["X-Column-Axis"] == "+i" and r.headers["X-Row-Axis"] == "+j"
    assert r.headers["X-Slice-Count"] == "8" and r.headers["X-Pixel-Spacing-mm"] == "0.9,0.7"
    pixels = _png(r.content)
    expected = np.clip((series.values[:, :, 3].T + 2000.0) / 4000.0 * 255.0, 0, 255).round()
    assert pixels.shape == (10, 12) and np.array_equal(pixels, expected.astype(np.uint8))


def test_axial_view_is_radiological_for_a_ras_upload(client: TestClient) -> None:
    _patient(client, "pat-ras")
    from medtwin.imaging.volume import Volume, grid_affine

    data = np.zeros((4, 3, 2), dtype=np.int16)
    data[0, 0, 1] = 100  # voxel i=0 is the patient's leftmost (RAS: x grows towards the Right)
    ras = Volume(data, grid_affine((1.0, 1.0, 1.0), frame="RAS"), "RAS")
    vid = _upload(client, "pat-ras", "v.nii.gz", write_nifti(ras)).json()["volume_id"]
    r = client.get(f"/api/v1/patients/pat-ras/images/{vid}/slice", params={"index": 1, "window": 100, "level": 50})
    pixels = _png(r.content)
    # axial: columns run towards the patient's left, so the left-most voxel is in the last column;
    # rows towards posterior: RAS j=0 is the most posterior row, so it is the last row
    assert r.headers["X-Column-Axis"] == "-i" and r.headers["X-Row-Axis"] == "-j"
    assert pixels[-1, -1] == 255 and pixels.sum() == 255


def test_overlay_of_a_label_map_on_the_same_grid(imported) -> None:  # type: ignore[no-untyped-def]
    client, series, body = imported
    ct = read_dicom(series.files())
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[2:5, 1:3, 3] = 1
    label_map = ct.with_data(labels, units="label", labels={1: "lesion"})
    lid = _upload(client, "pat-img", "labels.nii.gz", write_nifti(label_map)).json()["volume_id"]
    r = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}/slice",
                   params={"axis": "k", "index": 3, "overlay": lid, "opacity": 1.0, "window": 4000, "level": 0})
    pixels = _png(r.content)
    assert pixels.shape == (10, 12, 3)
    assert (pixels[1:3, 2:5] == [230, 25, 75]).all()  # label 1's colour at full opacity
    assert (pixels[0, 0] == pixels[0, 0, 0]).all()  # grey elsewhere
    other = Series(ramp((5, 5, 3)))
    _patient(client, "pat-img")
    mismatch = _upload(client, "pat-img", "other.zip", _zip(other)).json()["volume_id"]
    bad = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}/slice", params={"overlay": mismatch})
    assert bad.status_code == 422 and bad.json()["field"] == "overlay"


def test_bad_upload_names_file_and_field_and_stores_nothing(client: TestClient, api_store: Store) -> None:
    _patient(client, "pat-bad")
    files = Series(ramp()).files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, blob in files[:3] + files[4:]:
            archive.writestr(name, blob)
    r = _upload(client, "pat-bad", "gap.zip", buffer.getvalue())
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "ImagePositionPatient" and r.json()["source"] == "gap.zip:slice004.dcm"
    assert client.get("/api/v1/patients/pat-bad/images").json() == []
    with api_store.connect() as connection:
        assert connection.execute(image_chunks.select()).first() is None
    assert client.get("/fhir/ImagingStudy", params={"patient": "pat-bad"}).json().get("total", 0) == 0
    r = client.get("/api/v1/patients/pat-bad/images/none/slice", params={"index": 0})
    assert r.status_code == 404


def test_index_out_of_range_is_named(imported) -> None:  # type: ignore[no-untyped-def]
    client, _, body = imported
    r = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}/slice", params={"axis": "k", "index": 8})
    assert r.status_code == 422 and r.json()["field"] == "index"


def test_out_of_reach_looks_missing(imported, api_store: Store) -> None:  # type: ignore[no-untyped-def]
    client, series, body = imported
    doc = other_clinician(client, api_store)
    vid = body["volume_id"]
    for path in ("/api/v1/patients/pat-img/images", f"/api/v1/patients/pat-img/images/{vid}",
                 f"/api/v1/patients/pat-img/images/{vid}/slice", f"/api/v1/patients/pat-img/images/{vid}/export"):
        out_of_reach = client.get(path, headers=doc)
        missing = client.get(path.replace("pat-img", "pat-nobody"), headers=doc)
        assert out_of_reach.status_code == missing.status_code == 404
        assert out_of_reach.json()["detail"].replace("pat-img", "X") == missing.json()["detail"].replace("pat-nobody", "X")
    # the other patient's id for this volume is not a way in either
    assert client.get(f"/api/v1/patients/pat-other/images/{vid}", headers=doc).status_code == 404
    assert _upload(client, "pat-img", "ct.zip", _zip(series), headers=doc).status_code == 404
    own = _upload(client, "pat-other", "ct.zip", _zip(series), headers=doc)
    assert own.status_code == 201, own.text


def test_dicom_export_is_deidentified(imported) -> None:  # type: ignore[no-untyped-def]
    client, series, body = imported
    r = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}/export", params={"format": "dicom"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        files = [(n, archive.read(n)) for n in archive.namelist()]
    assert not [v for v in PHI.values() for _, blob in files if v.encode() in blob]
    header = pydicom.dcmread(io.BytesIO(files[0][1]))
    assert header.SeriesInstanceUID != series.series_uid and header.PatientIdentityRemoved == "YES"
    back = read_dicom(files)
    assert np.array_equal(back.data, series.values)
    nifti = client.get(f"/api/v1/patients/pat-img/images/{body['volume_id']}/export")
    assert nifti.status_code == 200 and nifti.content[:2] == b"\x1f\x8b"
