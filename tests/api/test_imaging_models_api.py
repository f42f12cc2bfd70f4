"""Segmentation, statistics and meshes over HTTP on a stored phantom image; reach and bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient
from tests.api.test_imaging_api import _patient, other_clinician

from medtwin.imaging import phantoms as ph
from medtwin.imaging.nifti import write_nifti
from medtwin.store.database import Store

SPHERE = ph.Sphere([2.0, -3.0, 4.0], 8.0)


@pytest.fixture
def stored(client: TestClient) -> tuple[TestClient, str]:
    _patient(client, "pat-seg")
    g = ph.grid_around([SPHERE], (0.8, 0.8, 0.8), margin_mm=4.0)
    img = ph.intensity_volume(SPHERE, g, inside=300.0, outside=20.0)
    r = client.post("/api/v1/patients/pat-seg/images", files={"file": ("ct.nii.gz", write_nifti(img))})
    assert r.status_code == 201, r.text
    return client, r.json()["volume_id"]


def test_segment_store_statistics_and_mesh(stored: tuple[TestClient, str]) -> None:
    client, vid = stored
    base = "/api/v1/patients/pat-seg/images"
    r = client.post(f"{base}/{vid}/segmentations", json={"lower": 160, "keep_largest": True, "name": "lesion"})
    assert r.status_code == 201, r.text
    body = r.json()
    labels_id = body["volume_id"]
    assert body["derived_from"] == vid and body["statistics"][0]["name"] == "lesion"
    assert body["statistics"][0]["volume_ml"] == pytest.approx(SPHERE.volume_ml, rel=0.01)
    again = client.post(f"{base}/{vid}/segmentations", json={"lower": 160, "keep_largest": True, "name": "lesion"})
    assert again.status_code == 200 and again.json()["volume_id"] == labels_id
    listed = {v["volume_id"]: v for v in client.get(base).json()}
    assert listed[labels_id]["modality"] == "SEG" and listed[labels_id]["study_id"] == listed[vid]["study_id"]

    stats = client.get(f"{base}/{labels_id}/statistics").json()
    s = stats["statistics"][0]
    assert stats["frame"] == "RAS" and s["surface_area_mm2"] == pytest.approx(SPHERE.area_mm2, rel=0.02)
    assert np.allclose(s["centroid_mm"], SPHERE.centre_mm, atol=0.1)

    stl = client.get(f"{base}/{labels_id}/mesh", params={"label": "lesion", "format": "stl", "faces": 3000})
    assert stl.status_code == 200 and stl.headers["x-mesh-units"] == "mm" and stl.headers["x-mesh-frame"] == "RAS"
    mesh = trimesh.load(io.BytesIO(stl.content), file_type="stl")
    assert mesh.is_watertight and len(mesh.faces) <= 3300
    assert mesh.area == pytest.approx(float(stl.headers["x-mesh-area-mm2"]), rel=1e-4)
    assert np.allclose(mesh.centroid, SPHERE.centre_mm, atol=0.2)
    as_json = client.get(f"{base}/{labels_id}/mesh", params={"format": "json", "faces": 500}).json()
    assert as_json["units"] == "mm" and len(as_json["faces"]) <= 550 and as_json["watertight"]


def test_bad_input_is_named(stored: tuple[TestClient, str]) -> None:
    client, vid = stored
    base = f"/api/v1/patients/pat-seg/images/{vid}"
    r = client.post(f"{base}/segmentations", json={"seed_mm": [900, 0, 0], "tolerance": 10})
    assert r.status_code == 422 and r.json()["field"] == "seed_mm"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post(f"{base}/segmentations", json={"seed_mm": [2, -3, 4]})
    assert r.status_code == 422 and r.json()["field"] == "tolerance"
    r = client.get(f"{base}/statistics")  # an intensity image, not a label map
    assert r.status_code == 422 and r.json()["field"] == "data"
    labels_id = client.post(f"{base}/segmentations", json={"lower": 160}).json()["volume_id"]
    r = client.get(f"/api/v1/patients/pat-seg/images/{labels_id}/mesh", params={"label": "9"})
    assert r.status_code == 422 and r.json()["field"] == "label"


def test_out_of_reach_looks_missing(stored: tuple[TestClient, str], api_store: Store) -> None:
    client, vid = stored
    doc = other_clinician(client, api_store)
    for path in (f"/api/v1/patients/pat-seg/images/{vid}/statistics", f"/api/v1/patients/pat-seg/images/{vid}/mesh"):
        out_of_reach = client.get(path, headers=doc)
        missing = client.get(path.replace("pat-seg", "pat-nobody"), headers=doc)
        assert out_of_reach.status_code == missing.status_code == 404
    write = client.post(f"/api/v1/patients/pat-seg/images/{vid}/segmentations", json={"lower": 1}, headers=doc)
    assert write.status_code == 404
    # the volume under the other patient's id is not a way in either
    assert client.get(f"/api/v1/patients/pat-other/images/{vid}/statistics", headers=doc).status_code == 404
    assert client.post(f"/api/v1/patients/pat-other/images/{vid}/segmentations", json={"lower": 1},
                       headers=doc).status_code == 404


def test_implant_sizing_and_cranial_plate(client: TestClient) -> None:
    _patient(client, "pat-imp")
    head = ph.Sphere([0.0, 0.0, 0.0], 24.0)
    g = ph.grid_around([head], (1.0, 1.0, 1.0))
    up = client.post("/api/v1/patients/pat-imp/images",
                     files={"file": ("hip.nii.gz", write_nifti(ph.label_volume([(head, 5)], g, {5: "femoral head"})))})
    assert up.status_code == 201, up.text
    base = f"/api/v1/patients/pat-imp/images/{up.json()['volume_id']}"
    r = client.post(f"{base}/implant-sizing", json={"catalogue": "acetabular-cup", "measure": "femoral-head",
                                                     "label": 5})
    assert r.status_code == 200, r.text
    assert r.json()["measurement"]["value_mm"] == pytest.approx(48.0, abs=0.3)
    assert r.json()["sizing"]["callable"] and r.json()["sizing"]["size_mm"] in (54.0, 56.0)
    bad = client.post(f"{base}/implant-sizing", json={"catalogue": "aortic-stent-graft", "measure": "vessel",
                                                       "label": 5})
    assert bad.status_code == 422 and bad.json()["field"] == "point_mm"

    phantom = ph.skull_phantom(2.0, turn_deg=3.0)
    skull = phantom.skull
    up = client.post("/api/v1/patients/pat-imp/images", files={"file": ("skull.nii.gz", write_nifti(skull))})
    plate = client.get(f"/api/v1/patients/pat-imp/images/{up.json()['volume_id']}/cranial-plate")
    assert plate.status_code == 200, plate.text
    mesh = trimesh.load(io.BytesIO(plate.content), file_type="stl")
    assert mesh.is_watertight and mesh.volume / 1000 == pytest.approx(float(plate.headers["x-plate-volume-ml"]),
                                                                      rel=0.1)
    normal = np.array([float(v) for v in plate.headers["x-plane-normal"].split(",")])
    assert abs(float(normal @ phantom.plane_normal)) > 0.9999
