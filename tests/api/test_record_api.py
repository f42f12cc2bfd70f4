"""The record API: import over HTTP, list/search, summary, record bundle, observations; errors as
RFC 7807 problem+json naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def bundle(n_obs: int = 3) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [{
        "fullUrl": "urn:uuid:p", "request": {"method": "POST", "url": "Patient"},
        "resource": {"resourceType": "Patient", "name": [{"family": "Rivera", "given": ["Ana"]}], "gender": "female",
                     "birthDate": "1990-06-01", "identifier": [{"system": "urn:mrn", "value": "MRN-77", "type": {"coding": [{
                         "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}]}}]
    for i in range(n_obs):
        entries.append({"fullUrl": f"urn:uuid:o{i}", "request": {"method": "POST", "url": "Observation"},
                        "resource": {"resourceType": "Observation", "status": "final",
                                     "category": [{"coding": [{"code": "vital-signs"}]}],
                                     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                                          "display": "Heart rate"}]},
                                     "subject": {"reference": "urn:uuid:p"},
                                     "effectiveDateTime": f"2024-03-{i % 28 + 1:02d}T08:{i // 28:02d}:00Z",
                                     "valueQuantity": {"value": 60 + i, "unit": "/min",
                                                       "system": "http://unitsofmeasure.org", "code": "/min"}}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post(client: TestClient, body: Any, media: str = "application/fhir+json") -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/v1/record", content=content, headers={"content-type": media})


def test_import_then_read_everything(client: TestClient) -> None:
    response = post(client, bundle(5))
    assert response.status_code == 201
    assert response.json()["totals"]["created"] == 6
    again = post(client, bundle(5))
    assert again.status_code == 200 and again.json()["totals"]["unchanged"] == 6

    listing = client.get("/api/v1/patients", params={"name": "rivera"}).json()
    assert listing["total"] == 1
    patient_id = listing["items"][0]["id"]
    assert client.get("/api/v1/patients", params={"name": "nobody"}).json()["total"] == 0
    assert client.get("/api/v1/patients", params={"identifier": "MRN-77"}).json()["items"][0]["id"] == patient_id

    summary = client.get(f"/api/v1/patients/{patient_id}").json()
    assert summary["summary"]["name"] == "Ana Rivera"
    assert summary["summary"]["vitals"][0]["value"] == 64.0  # the latest of 60..64
    assert client.get("/api/v1/patients/MRN-77").json()["patient_id"] == patient_id

    page = client.get(f"/api/v1/patients/{patient_id}/observations",
                      params={"code": "8867-4", "limit": 2, "start": "2024-03-02T00:00:00Z"}).json()
    assert page["total"] == 4 and page["next_offset"] == 2
    assert [item["value"] for item in page["items"]] == [64.0, 63.0]
    last = client.get(f"/api/v1/patients/{patient_id}/observations",
                      params={"code": "8867-4", "limit": 2, "offset": 4}).json()
    assert last["next_offset"] is None and [i["value"] for i in last["items"]] == [60.0]

    record = client.get(f"/api/v1/patients/{patient_id}/record")
    assert record.headers["content-type"].startswith("application/fhir+json")
    assert record.json()["type"] == "searchset" and record.json()["total"] == 6


def test_ndjson_import(client: TestClient) -> None:
    lines = b'{"resourceType":"Patient","id":"nd1"}\n{"resourceType":"Observation","id":"ndo","status":"final",' \
            b'"code":{"text":"x"},"subject":{"reference":"Patient/nd1"}}\n'
    response = post(client, lines, "application/fhir+ndjson")
    assert response.status_code == 201 and response.json()["by_type"] == {"Observation": 1, "Patient": 1}


@pytest.mark.parametrize(
    ("body", "kind", "field"),
    [
        (b"{not json", "malformed-json", None),
        (b'{"name": "not fhir"}', "not-fhir", "resourceType"),
        (b'{"resourceType": "Starship"}', "unknown-resource-type", "resourceType"),
        (b'{"resourceType": "Observation", "status": "final"}', "missing-field", "Observation.code"),
        (b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
         b'"subject": {"reference": "Patient/ghost"}}', "unresolved-reference", "Observation.subject.reference"),
    ],
)
def test_bad_input_is_problem_json(client: TestClient, body: bytes, kind: str, field: str | None) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == f"urn:medtwin:problem:{kind}" and problem["status"] == 422
    assert problem.get("field") == field
    assert client.get("/api/v1/patients").json()["total"] == 0


def test_bad_500th_entry_names_it_and_stores_nothing(client: TestClient) -> None:
    big = bundle(600)
    big["entry"][499]["resource"]["subject"] = {"reference": "urn:uuid:missing"}
    response = post(client, big)
    assert response.status_code == 422 and response.json()["entry"] == 500
    assert client.get("/api/v1/patients").json()["total"] == 0


def test_wrong_media_type_and_query_validation(client: TestClient) -> None:
    response = client.post("/api/v1/record", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and response.json()["field"] == "content-type"
    response = client.get("/api/v1/patients", params={"limit": 0})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["loc"] == ["query", "limit"]
    missing = client.get("/api/v1/patients/nope/observations")
    assert missing.status_code == 404 and missing.json()["field"] == "patient_id"


def test_oversized_upload_is_413_and_server_stays_up(client: TestClient) -> None:
    # declared size over the limit: refused before the body is read
    huge = client.post("/api/v1/record", content=b"{" + b" " * (6 * 1024 * 1024) + b"}",
                       headers={"content-type": "application/fhir+json"})
    assert huge.status_code == 413 and huge.headers["content-type"] == PROBLEM

    # no declared size (chunked): refused while streaming
    def chunks() -> Any:
        for _ in range(200):
            yield b" " * 65536

    streamed = client.post("/api/v1/record", content=chunks(), headers={"content-type": "application/fhir+json"})
    assert streamed.status_code == 413

    # the 200 MB upload of the issue: refused from its declared size, nothing read, nothing stored
    two_hundred_mb = b"[" + b" " * (200 * 1024 * 1024) + b"]"
    response = client.post("/api/v1/record", content=two_hundred_mb, headers={"content-type": "application/fhir+json"})
    assert response.status_code == 413 and response.json()["status"] == 413
    del two_hundred_mb
    assert client.get("/api/v1/health").json()["status"] == "ok"
    assert client.get("/api/v1/patients").json()["total"] == 0


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/patients", "/api/v1/patients/{patient_id}", "/api/v1/patients/{patient_id}/record",
                 "/api/v1/patients/{patient_id}/observations", "/api/v1/record"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_synthea_bundle_over_http(client: TestClient, synthea_dir: Path) -> None:
    for name in ("hospitalInformation.json", "practitionerInformation.json"):
        assert post(client, (synthea_dir / name).read_bytes()).status_code == 201
    response = post(client, (synthea_dir / "Rosa195_Kerluke267_5eb10682-8a75-58cf-2b96-f5a41e8dc0d5.json").read_bytes())
    assert response.status_code == 201, response.text
    assert response.json()["units"][0]["patients"]


def test_clinician_cannot_import_into_another_teams_patient(client: TestClient, api_store: Any) -> None:
    from medtwin.security import accounts

    assert post(client, bundle(1)).status_code == 201  # the admin creates the patient
    with api_store.begin() as connection:
        accounts.create_user(connection, "dr-who", "a long enough password", "clinician")
    token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "dr-who",
                                                     "password": "a long enough password"}).json()["access_token"]
    changed = bundle(2)
    response = client.post("/api/v1/record", content=json.dumps(changed).encode(),
                           headers={"content-type": "application/fhir+json", "Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and response.json()["type"] == "urn:medtwin:problem:forbidden"
    patient_id = client.get("/api/v1/patients").json()["items"][0]["id"]
    # nothing of the refused bundle was stored: still one observation
    assert client.get(f"/api/v1/patients/{patient_id}/observations").json()["total"] == 1
