"""The live census over HTTP and the ``operations`` role: counts and flows on every hospital route, never a
patient identifier; patient routes answer it 403/404; patients are known inside by an HMAC, not their MRN."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medtwin.api.app import create_app
from medtwin.api.deps import route_policies
from medtwin.config import Settings
from medtwin.hospital.adt import census_key
from medtwin.hospital.mllp import send_mllp
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units

PW = "a long enough password"
MRNS = ("MRN-4417021", "MRN-4417022", "MRN-4417023")
NAMES = ("QUIXOTE^ALONSO", "PANZA^SANCHO", "DULCINEA^ALDONZA")


def adt(control: str, event: str, when: datetime, mrn: str, name: str, unit: str = "") -> str:
    stamp = when.strftime("%Y%m%d%H%M%S")
    return "\r".join([f"MSH|^~\\&|EPIC|GEN|MEDTWIN|GEN|{stamp}||ADT^{event}|{control}|P|2.5",
                      f"EVN|{event}|{stamp}", f"PID|1||{mrn}^^^GEN^MR||{name}", f"PV1|1|I|{unit}^1^1"])


@dataclass
class World:
    client: TestClient
    ring: KeyRing
    tokens: dict[str, str]
    patient_id: str
    secrets: list[str]  # what no operations answer may contain
    mllp_port: int

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _patient_secrets(bundle: dict[str, Any]) -> list[str]:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    out = [i["value"] for i in patient.get("identifier", [])]
    out += [n.get("family", "") for n in patient.get("name", [])]
    return [s for s in out if len(s) >= 4]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("hospital-live")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'h.db'}", AesGcmCodec(ring))
    store.migrate()
    bundles = generate_bundles(n_patients=1)
    assert import_units(store, [RawUnit("p.json", "json", bundles[0])], actor="test").ok
    with store.begin() as conn:
        patient_id = RecordRepository(conn, store.codec).patient_ids()[0]
        for role in ("admin", "clinician", "operations"):
            accounts.create_user(conn, role, PW, role)
        accounts.add_to_care_team(conn, "clinician", patient_id)
    settings = Settings(data_dir=tmp, rate_limit_per_minute=100_000, login_attempts_per_minute=1000,
                        hospital_mllp_port=0)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        tokens = {}
        for role in ("admin", "clinician", "operations"):
            r = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": role, "password": PW})
            assert r.status_code == 200, r.text
            tokens[role] = r.json()["access_token"]
        port = client.app.state.services.listeners[0].port  # type: ignore[attr-defined]
        secrets = [*MRNS, *(n.split("^")[0] for n in NAMES), *_patient_secrets(bundles[0]), patient_id]
        secrets += [census_key(ring.pseudonym_key)(m) for m in MRNS]
        yield World(client, ring, tokens, patient_id, secrets, port)
    store.dispose()


def _feed(world: World) -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    messages = [adt("L1", "A01", now - timedelta(hours=5), MRNS[0], NAMES[0], "ed_treatment"),
                adt("L2", "A01", now - timedelta(hours=2), MRNS[1], NAMES[1], "ed_treatment"),
                adt("L3", "A01", now - timedelta(hours=30), MRNS[2], NAMES[2], "ed_treatment"),
                adt("L4", "A02", now - timedelta(hours=20), MRNS[2], NAMES[2], "ward")]
    for text in messages:
        r = world.client.post("/api/v1/hospital/adt", content=text.encode(), headers=world.h("admin"))
        assert r.status_code == 200 and r.json()["accepted"], r.text
        assert "MSA|AA|" in r.json()["ack"]
    return now


def test_census_counts_and_time_in_place(world: World) -> None:
    _feed(world)
    body = world.client.get("/api/v1/hospital/census", headers=world.h("operations")).json()
    units = {u["unit"]: u for u in body["units"]}
    assert units["ed_treatment"]["patients"] == 2 and units["ward"]["patients"] == 1
    assert units["ed_treatment"]["hours_in_unit"] == pytest.approx([5.0, 2.0], abs=0.05)
    assert units["ward"]["longest_h"] == pytest.approx(20.0, abs=0.05)
    assert body["ed"]["in_department"] == 2 and body["ed"]["over_4h"] == 1
    assert body["ed"]["time_in_department"]["4-12 h"] == 1 and body["ed"]["time_in_department"]["2-4 h"] == 1
    assert body["flows_24h"]["admitted"] == 2 and body["flows_24h"]["transferred"] == 1  # L3 is 30 h old
    same = world.client.get(f"/api/v1/hospital/census?after_version={body['version']}", headers=world.h("operations"))
    assert same.json() == {"version": body["version"], "unchanged": True}


def test_adt_over_the_apps_mllp_listener_changes_the_census(world: World) -> None:
    before = world.client.get("/api/v1/hospital/census", headers=world.h("operations")).json()
    now = datetime.now(UTC)
    answers = send_mllp("127.0.0.1", world.mllp_port, [
        adt("M1", "A01", now - timedelta(hours=1), "MRN-9", "X^Y", "icu"),
        adt("M2", "A01", now, "MRN-10", "X^Y", "no_such_unit")])
    assert "MSA|AA|M1" in answers[0] and "MSA|AE|M2" in answers[1] and "PV1-3" in answers[1]
    after = world.client.get(f"/api/v1/hospital/census?after_version={before['version']}",
                             headers=world.h("operations")).json()
    assert after["version"] == before["version"] + 1
    assert {u["unit"]: u["patients"] for u in after["units"]}["icu"] == \
        {u["unit"]: u["patients"] for u in before["units"]}["icu"] + 1
    assert after["messages"]["refused"] == before["messages"]["refused"] + 1
    assert after["quarantine"][-1] == {"control_id": "M2", "field": "PV1-3"}


def test_patients_are_known_by_a_keyed_hash(world: World) -> None:
    _feed(world)
    keys = set(world.client.app.state.services.hospital.tracker._events)  # type: ignore[attr-defined]
    assert census_key(world.ring.pseudonym_key)(MRNS[0]) in keys
    assert hashlib.sha256(MRNS[0].encode()).hexdigest() not in keys and MRNS[0] not in keys


def test_refused_adt_is_problem_json_naming_the_field(world: World) -> None:
    r = world.client.post("/api/v1/hospital/adt", headers=world.h("clinician"),
                          content=adt("B1", "A03", datetime.now(UTC), "MRN-never", "A^B").encode())
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "MSH-9" and "before any admission" in r.json()["detail"]
    assert "MSA|AE|B1" in r.json()["ack"]


#: A body that passes validation for every POST hospital route (a route without one here fails the test)
POST_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/hospital/simulate": {"replications": 2, "weeks": 1, "warmup_weeks": 0.5},
    "/api/v1/hospital/compare": {"replications": 2, "weeks": 1, "warmup_weeks": 0.5,
                                 "scenarios": [{"name": "surge", "arrival_multiplier": 1.2}]},
    "/api/v1/hospital/forecast": {"replications": 10, "horizon_h": 6,
                                  "census": {"start_hour_of_week": 10, "patients": [
                                      {"unit": "ward", "esi": 3, "in_bed": True, "elapsed_h": 3.0}]}},
}
FEED_ROUTES = {"/api/v1/hospital/adt", "/api/v1/hospital/encounter", "/api/v1/hospital/equipment/{asset}/samples"}


def _hospital_routes(world: World) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in route_policies(world.client.app) if r.path.startswith("/api/v1/hospital")]


@pytest.mark.slow
def test_operations_reads_every_hospital_route_without_patient_identifiers(world: World) -> None:
    _feed(world)
    routes = _hospital_routes(world)
    assert len(routes) >= 7
    for method, path in routes:
        if path in FEED_ROUTES:
            r = world.client.post(path.replace("{asset}", "vent-1"), headers=world.h("operations"), content=b"MSH|")
            assert r.status_code == 403, (path, r.text)
            continue
        body = POST_BODIES[path] if method == "POST" else None
        r = world.client.request(method, path, headers=world.h("operations"), json=body)
        assert r.status_code == 200, (method, path, r.text)
        text = r.text.upper()
        leaked = [s for s in world.secrets if s.upper() in text]
        assert not leaked, (path, leaked)


def _patient_routes(world: World) -> list[tuple[str, str]]:
    out = [(r.method, r.path) for r in route_policies(world.client.app)
           if "{patient_id}" in r.path and r.method in ("GET", "POST")]
    return out + [("GET", "/api/v1/patients"), ("GET", "/fhir/Patient"), ("GET", "/fhir/Encounter"),
                  ("GET", f"/fhir/Patient/{world.patient_id}")]


@pytest.mark.slow
def test_patient_routes_answer_operations_403_or_404(world: World) -> None:
    routes = _patient_routes(world)
    assert len(routes) > 10
    for method, path in routes:
        url = re.sub(r"\{patient_id\}", world.patient_id, path)
        url = re.sub(r"\{[a-z_]+\}", "x", url)
        r = world.client.request(method, url, headers=world.h("operations") | {"content-type": "application/json"},
                                 content=json.dumps({}).encode() if method == "POST" else None)
        assert r.status_code in (403, 404), (method, path, r.status_code, r.text[:200])
        echoed = world.patient_id.upper()  # the caller's own URL comes back as the problem's instance
        assert not [s for s in world.secrets if s.upper() in r.text.upper() and s.upper() != echoed], path
    # the same routes do answer a clinician of the patient (the 403s are the role's, not a broken route)
    r = world.client.get(f"/api/v1/patients/{world.patient_id}", headers=world.h("clinician"))
    assert r.status_code == 200


def test_encounter_feed(world: World) -> None:
    now = datetime.now(UTC)
    resource = {"resourceType": "Encounter", "id": "enc-77", "status": "in-progress",
                "meta": {"versionId": "1", "lastUpdated": now.isoformat()},
                "location": [{"location": {"reference": "Location/theatre"}, "status": "active",
                              "period": {"start": (now - timedelta(hours=1)).isoformat()}}]}
    before = world.client.get("/api/v1/hospital/census", headers=world.h("operations")).json()
    r = world.client.post("/api/v1/hospital/encounter", json=resource, headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["accepted"], r.text
    after = world.client.get("/api/v1/hospital/census", headers=world.h("operations")).json()
    theatre = {u["unit"]: u["patients"] for u in after["units"]}["theatre"]
    assert theatre == {u["unit"]: u["patients"] for u in before["units"]}["theatre"] + 1
    bad = world.client.post("/api/v1/hospital/encounter", json={**resource, "id": "enc-78", "location": [
        {"location": {"reference": "Location/roof"}, "status": "active", "period": {"start": now.isoformat()}}]},
        headers=world.h("admin"))
    assert bad.status_code == 422 and bad.json()["field"] == "Encounter.location[0].location"
