"""Issue #15 item 6 for FHIR: every time the server stamps on what it returns (Bundle.timestamp of searchsets,
history and $everything, the patient export, the CapabilityStatement's date) reads the server's one clock
(``medtwin.clock.ServerClock``: the demo's simulated time when it accelerates), not the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi.testclient import TestClient

from medtwin.api.services import services_of

#: far ahead of any wall clock (the server's clock is never earlier than the wall clock)
SIMULATED = datetime(2091, 3, 4, 5, 6, 7, tzinfo=UTC)
STAMP = "2091-03-04T05:06:07Z"

PATIENT = {"resourceType": "Patient", "id": "clock-p1", "gender": "female", "birthDate": "1970-01-01"}
OBSERVATION = {"resourceType": "Observation", "id": "clock-o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
               "subject": {"reference": "Patient/clock-p1"}, "effectiveDateTime": "2024-01-02T08:00:00Z",
               "valueQuantity": {"value": 101, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                 "code": "mg/dL"}}


def _seeded(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": PATIENT}, {"resource": OBSERVATION}]}
    answer = client.post("/api/v1/record", content=orjson.dumps(bundle),
                         headers={"content-type": "application/fhir+json"})
    assert answer.status_code in (200, 201), answer.text


def test_fhir_bundles_and_the_export_are_stamped_by_the_server_clock(client: TestClient) -> None:
    _seeded(client)
    clock = services_of(client.app).clock
    before = {path: client.get(path).json() for path in ("/fhir/Observation?patient=clock-p1", "/fhir/metadata")}
    assert before["/fhir/Observation?patient=clock-p1"]["timestamp"] != STAMP  # the wall clock while not simulated
    clock.simulate(lambda: SIMULATED, rate=lambda: 60.0, note="test")
    try:
        bundles = {path: client.get(path) for path in (
            "/fhir/Observation?patient=clock-p1", "/fhir/Observation/_history", "/fhir/Observation/clock-o1/_history",
            "/fhir/Patient/clock-p1/$everything", "/api/v1/patients/clock-p1/record")}
        for path, answer in bundles.items():
            assert answer.status_code == 200, (path, answer.text)
            body = answer.json()
            assert body["resourceType"] == "Bundle" and body["timestamp"] == STAMP, (path, body.get("timestamp"))
            assert body["entry"], path
        capability = client.get("/fhir/metadata").json()
        assert capability["date"] == STAMP
        # a resource's meta.lastUpdated stays when it was stored (the record's time, which _since and
        # _lastUpdated compare with), so it is before the bundle's timestamp, never after it
        search = bundles["/fhir/Observation?patient=clock-p1"].json()
        stored = search["entry"][0]["resource"]["meta"]["lastUpdated"]
        assert stored < STAMP
    finally:
        clock.reset()
    assert client.get("/fhir/Observation?patient=clock-p1").json()["timestamp"] != STAMP
