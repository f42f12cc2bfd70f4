"""Writes authorised against what is stored as well as what is written (issue 13, defects 1-3, 6).

A stored world of three patients (P1 and P2 in the clinician's care team, P3 outside it), their
Observations, and a shared Organization, on SQLite and PostgreSQL. Every refusal of a resource outside the
caller's reach must look exactly like the refusal of a missing one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.security.scopes import parse_scopes
from medtwin.security.tokens import TokenService
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.schema import resources
from medtwin.twin.build import import_units

PW = "a long enough password"
SSN = "http://hl7.org/fhir/sid/us-ssn"
P1, P2, P3 = "wp-p1", "wp-p2", "wp-p3"
P3_SSN = "999-28-9483"
PROBLEM = "application/problem+json"


def observation(oid: str | None, subject: Any, value: float = 70.0, code: str = "8867-4") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": "2024-05-01T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    if oid is not None:
        resource["id"] = oid
    if subject is not None:
        resource["subject"] = subject if isinstance(subject, dict) else {"reference": subject}
    return resource


def put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def post_entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def patient(pid: str, ssn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid.upper()}], "gender": "female",
            "birthDate": "1970-01-01", "identifier": [{"system": SSN, "value": ssn},
                                                      {"system": "urn:mrn", "value": f"MRN-{pid}"}]}


def seed_bundle() -> dict[str, Any]:
    return transaction(
        put(patient(P1, "111-11-1111")), put(patient(P2, "222-22-2222")), put(patient(P3, P3_SSN)),
        put(observation("obs-p1", f"Patient/{P1}", 61)), put(observation("obs-p2", f"Patient/{P2}", 62)),
        put(observation("obs-p3", f"Patient/{P3}", 63)), put(observation("obs-move", f"Patient/{P1}", 64)),
        put(observation("obs-m1", f"Patient/{P1}", 81)), put(observation("obs-m3", f"Patient/{P3}", 83)),
        put({"resourceType": "Organization", "id": "org-1", "name": "General Hospital"}),
    )


@dataclass
class World:
    client: TestClient
    store: Store
    tokens: dict[str, str]

    def write(self, role: str | None, body: Any, media: str = "application/fhir+json") -> Any:
        headers = {"content-type": media}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post("/api/v1/record", content=content, headers=headers)

    def stored(self, rtype: str, rid: str) -> tuple[str | None, dict[str, Any] | None]:
        """(patient id, content) of a stored resource; (None, None) if it is not stored."""
        with self.store.connect() as conn:
            row = conn.execute(select(resources.c.patient_id).where(
                resources.c.resource_type == rtype, resources.c.id == rid)).first()
            content = RecordRepository(conn, self.store.codec).get(rtype, rid)
        return (None if row is None else row[0]), content

    def count(self) -> int:
        with self.store.connect() as conn:
            return len(conn.execute(select(resources.c.pk)).all())


def _database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'writes.db'}"
        return
    base = os.environ.get("MEDTWIN_TEST_POSTGRES_URL")
    if base is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("PostgreSQL is required in CI (MEDTWIN_TEST_POSTGRES_URL)")
        pytest.skip("PostgreSQL not available (MEDTWIN_TEST_POSTGRES_URL)")
    url = make_url(base)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


ROLES = ("admin", "clinician", "patient", "researcher", "integration")
WRONG_SCOPE = "system/Immunization.rs user/Immunization.rs patient/Immunization.rs"
NARROW_SCOPE = "user/Bundle.c user/Observation.c system/Bundle.c system/Organization.c"  # create, never update


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("writes")
    for url in _database(request.param, tmp):
        ring = KeyRing.generate()
        store = Store(url, AesGcmCodec(ring))
        store.migrate()
        report = import_units(store, [RawUnit("seed.json", "json", seed_bundle())], actor="test")
        assert report.ok, report.as_dict()
        past = TokenService(ring.token_key, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
        expired: dict[str, str] = {}
        with store.begin() as conn:
            for role in ROLES:
                user = accounts.create_user(conn, role, PW, role, patient_id=P1 if role == "patient" else None)
                expired[f"expired:{role}"] = past.issue(conn, user, parse_scopes("user/*.cruds")).access_token
            accounts.add_to_care_team(conn, "clinician", P1)
            accounts.add_to_care_team(conn, "clinician", P2)
            _, device = accounts.create_api_key(conn, "cgm-1", P1, "admin", ring.index_key)
        settings = Settings(data_dir=tmp, rate_limit_per_minute=100_000, login_attempts_per_minute=1000)
        with TestClient(create_app(settings, store=store, keyring=ring)) as client:
            tokens = {"device": device, **expired}
            for role in ROLES:
                for label, scope in ((role, None), (f"wrong:{role}", WRONG_SCOPE), (f"narrow:{role}", NARROW_SCOPE)):
                    form = {"grant_type": "password", "username": role, "password": PW}
                    if scope is not None:
                        form["scope"] = scope
                    r = client.post("/api/v1/auth/token", data=form)
                    assert r.status_code == 200 or (scope is not None and r.status_code == 400), r.text
                    if r.status_code == 200:  # 400: none of the scopes is within the role (no such token)
                        tokens[label] = r.json()["access_token"]
            head, body, signature = tokens["clinician"].split(".")
            tokens["tampered"] = ".".join((head, body, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))
            yield World(client, store, tokens)
        store.dispose()


def _without(body: dict[str, Any], *values: str) -> str:
    """The problem body as text with the given values blanked (the parts the caller wrote themselves)."""
    out = json.dumps(body, sort_keys=True)
    for value in values:
        out = out.replace(value, "<X>")
    return out


# --- defect 1: the stored version's patient is authorised too ------------------------------------------

def test_clinician_cannot_overwrite_another_patients_observation(world: World) -> None:
    before = world.stored("Observation", "obs-p3")
    count = world.count()
    hijack = observation("obs-p3", f"Patient/{P1}", 12345)
    response = world.write("clinician", transaction(put(observation("obs-p1", f"Patient/{P1}", 99)), put(hijack)))
    missing = world.write("clinician", transaction(put(observation("obs-p1", f"Patient/{P1}", 99)),
                                                   put(dict(hijack, id="obs-nowhere"))))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM
    # indistinguishable from an id that does not exist: same status, same body but for the id itself
    assert missing.status_code == 404
    assert _without(response.json(), "obs-p3") == _without(missing.json(), "obs-nowhere")
    assert response.json()["field"] == "Bundle.entry.request.url" and response.json()["entry"] == 2
    # all or nothing: neither entry stored, P3's observation untouched and still P3's
    assert world.stored("Observation", "obs-p3") == before and before[0] == P3
    assert world.stored("Observation", "obs-p1")[1]["valueQuantity"]["value"] == 61  # type: ignore[index]
    assert world.count() == count


def test_clinician_updates_their_own_patients_observation(world: World) -> None:
    response = world.write("clinician", transaction(put(observation("obs-p2", f"Patient/{P2}", 72))))
    assert response.status_code == 201 and response.json()["totals"]["updated"] == 1, response.text
    assert world.stored("Observation", "obs-p2")[1]["valueQuantity"]["value"] == 72  # type: ignore[index]


def test_a_single_resource_or_ndjson_line_with_an_id_outside_reach_is_refused_like_a_missing_one(world: World) -> None:
    single = world.write("clinician", observation("obs-p3", f"Patient/{P1}", 1))
    single_missing = world.write("clinician", observation("obs-gone", f"Patient/{P1}", 1))
    assert single.status_code == single_missing.status_code == 404
    assert _without(single.json(), "obs-p3") == _without(single_missing.json(), "obs-gone")
    line = json.dumps(observation("obs-p3", f"Patient/{P1}", 2)).encode() + b"\n"
    ndjson = world.write("clinician", line, "application/fhir+ndjson")
    assert ndjson.status_code == 404
    assert world.stored("Observation", "obs-p3")[0] == P3


def test_moving_a_resource_between_patients_is_for_admins_only(world: World) -> None:
    moved = observation("obs-move", f"Patient/{P2}", 64)
    refused = world.write("clinician", transaction(put(moved)))
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["field"] == "Observation.subject" and "admin" in problem["detail"]
    assert world.stored("Observation", "obs-move")[0] == P1
    allowed = world.write("admin", transaction(put(moved)))
    assert allowed.status_code == 201 and allowed.json()["totals"]["updated"] == 1
    assert world.stored("Observation", "obs-move")[0] == P2
    assert world.write("admin", transaction(put(observation("obs-move", f"Patient/{P1}", 64)))).status_code == 201
    assert world.stored("Observation", "obs-move")[0] == P1


# --- defect 2: shared and orphan resources ---------------------------------------------------------------

def test_shared_resources_are_written_by_admin_or_integration_only(world: World) -> None:
    renamed = {"resourceType": "Organization", "id": "org-1", "name": "Renamed by a clinician"}
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("Organization", transaction(put(renamed))),
        ("Practitioner", transaction(post_entry({"resourceType": "Practitioner", "name": [{"family": "Who"}]},
                                                "urn:uuid:x"))),
        ("Location", {"resourceType": "Location", "name": "Ward 9"})]
    for rtype, body in bodies:
        refused = world.write("clinician", body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == rtype and "integration" in refused.json()["detail"]
    assert world.stored("Organization", "org-1")[1]["name"] == "General Hospital"  # type: ignore[index]
    by_integration = world.write("integration", transaction(put(dict(renamed, name="Renamed by integration"))))
    assert by_integration.status_code == 201, by_integration.text
    assert world.stored("Organization", "org-1")[1]["name"] == "Renamed by integration"  # type: ignore[index]
    assert world.write("admin", transaction(put(dict(renamed, name="General Hospital")))).status_code == 201


def test_integration_role_writes_no_patient_data(world: World) -> None:
    # it reaches no patient: a stored one is not there for it, a new one is not its to create
    response = world.write("integration", transaction(put(observation("obs-int", f"Patient/{P1}"))))
    assert response.status_code == 422 and response.json()["type"] == "urn:medtwin:problem:unresolved-reference"
    new_patient = world.write("integration", transaction(post_entry(patient("wp-int", "333-33-3333"), "urn:uuid:np"),
                                                         post_entry(observation(None, "urn:uuid:np"), "urn:uuid:no")))
    assert new_patient.status_code == 403, new_patient.text
    assert world.stored("Observation", "obs-int") == (None, None) and world.stored("Patient", "wp-int") == (None, None)


@pytest.mark.parametrize("role", ["admin", "clinician"])
@pytest.mark.parametrize("subject", [None, {"identifier": {"system": SSN, "value": "111-11-1111"}},
                                     {"display": "somebody"}])
def test_patient_data_without_a_resolvable_patient_is_refused(world: World, role: str, subject: Any) -> None:
    count = world.count()
    response = world.write(role, transaction(post_entry(observation(None, subject), "urn:uuid:orphan")))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "Observation.subject" and problem["type"] == "urn:medtwin:problem:no-patient"
    assert world.count() == count


def test_a_posted_entry_whose_derived_id_is_another_patients_gets_a_fresh_id(world: World) -> None:
    """A POSTed entry's id is derived from its fullUrl: reusing the fullUrl another patient's resource was
    imported with creates a new resource, exactly as an unused fullUrl does (no collision to observe)."""
    taken = world.write("admin", transaction(post_entry(observation(None, f"Patient/{P3}", 90), "urn:uuid:reused")))
    assert taken.status_code == 201
    before = world.count()
    reused = world.write("clinician", transaction(post_entry(observation(None, f"Patient/{P1}", 91), "urn:uuid:reused")))
    fresh = world.write("clinician", transaction(post_entry(observation(None, f"Patient/{P1}", 92), "urn:uuid:unused")))
    assert reused.status_code == fresh.status_code == 201, reused.text
    assert reused.json()["totals"] == fresh.json()["totals"] == {"created": 1, "updated": 0, "unchanged": 0,
                                                                  "failed_units": 0}
    assert world.count() == before + 2
    again = world.write("clinician", transaction(post_entry(observation(None, f"Patient/{P1}", 91), "urn:uuid:reused")))
    assert again.status_code == 200 and again.json()["totals"]["unchanged"] == 1  # still idempotent


# --- defect 3: no existence oracle ------------------------------------------------------------------------

@pytest.mark.parametrize(("present", "absent"), [
    (f"Patient?identifier={SSN}|{P3_SSN}", f"Patient?identifier={SSN}|000-00-0000"),
    (f"Patient/{P3}", "Patient/wp-nobody"),
])
def test_a_patient_outside_reach_answers_like_a_missing_one(world: World, present: str, absent: str) -> None:
    outside = world.write("clinician", transaction(post_entry(observation(None, present), "urn:uuid:o1")))
    missing = world.write("clinician", transaction(post_entry(observation(None, absent), "urn:uuid:o1")))
    assert outside.status_code == missing.status_code == 422
    assert _without(outside.json(), present) == _without(missing.json(), absent)
    assert world.write("admin", transaction(post_entry(observation(None, present, 65), f"urn:uuid:{len(present)}"))
                       ).status_code == 201


def test_a_conditional_create_does_not_match_a_resource_outside_reach(world: World) -> None:
    """ifNoneExist matching a resource of another patient creates a new one, as if nothing matched."""
    tagged = dict(observation(None, f"Patient/{P3}", 66), identifier=[{"system": "urn:lab", "value": "L-1"}])
    assert world.write("admin", transaction(post_entry(tagged, "urn:uuid:lab1"))).status_code == 201
    mine = dict(tagged, subject={"reference": f"Patient/{P1}"})
    entry = post_entry(mine, "urn:uuid:lab2")
    entry["request"]["ifNoneExist"] = "identifier=urn:lab|L-1"
    response = world.write("clinician", transaction(entry))
    assert response.status_code == 201 and response.json()["totals"]["created"] == 1, response.text


# --- defect 6: bounded paging -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [f"/api/v1/patients/{P1}/observations", f"/api/v1/patients/{P1}/quarantine",
                                  "/api/v1/patients", "/api/v1/dashboard/patients", "/api/v1/alerts",
                                  f"/api/v1/patients/{P1}/alerts"])
@pytest.mark.parametrize(("name", "value"), [("offset", "9223372036854775808"), ("offset", "1000001"),
                                             ("limit", "9223372036854775808")])
def test_paging_parameters_are_bounded(world: World, path: str, name: str, value: str) -> None:
    response = world.client.get(path, params={name: value},
                                headers={"Authorization": f"Bearer {world.tokens['admin']}"})
    assert response.status_code == 422, (path, response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["loc"] == ["query", name]


# --- defect 5: a person cannot speak for a device; one key never holds two values silently --------------

def _samples(world: World, role: str, body: Any) -> Any:
    return world.client.post(f"/api/v1/patients/{P1}/samples", content=json.dumps(body).encode(),
                             headers={"content-type": "application/json",
                                      "Authorization": f"Bearer {world.tokens[role]}"})


def _glucose_series(world: World) -> dict[str, Any]:
    with world.store.connect() as conn:
        rows = conn.execute(text("SELECT device, source, value FROM samples WHERE patient_id = :p AND metric = "
                                 "'glucose' ORDER BY value"), {"p": P1}).all()
    return {"rows": [tuple(r) for r in rows]}


def _user_id(world: World, username: str) -> str:
    with world.store.connect() as conn:
        return str(conn.execute(text("SELECT id FROM users WHERE username = :u"), {"u": username}).scalar_one())


def test_a_persons_samples_are_manual_entries_never_a_devices(world: World) -> None:
    at = "2024-06-01T06:00:00Z"
    spoof = _samples(world, "clinician", {"metric": "glucose", "value": 45, "unit": "mg/dL", "device": "cgm-1",
                                          "time": at})
    assert spoof.status_code == 200 and spoof.json()["accepted"] == 1, spoof.text
    real = _samples(world, "device", {"metric": "glucose", "value": 140, "unit": "mg/dL", "time": at})
    assert real.status_code == 200, real.text
    assert real.json()["accepted"] == 1 and real.json()["duplicates"] == 0  # not dropped as a duplicate
    manual = f"manual:{_user_id(world, 'clinician')}"
    assert _glucose_series(world)["rows"] == [(manual, "manual", 45.0), ("cgm-1", "http", 140.0)]


def test_a_different_value_under_one_key_is_quarantined_not_a_silent_duplicate(world: World) -> None:
    first = {"metric": "heart_rate", "value": 70, "unit": "/min", "time": "2024-06-01T07:00:00Z", "id": "hr-1"}
    assert _samples(world, "device", first).json()["accepted"] == 1
    resent = _samples(world, "device", first).json()
    assert (resent["accepted"], resent["duplicates"], resent["quarantined"]) == (0, 1, [])
    changed = _samples(world, "device", dict(first, value=95)).json()
    assert (changed["accepted"], changed["duplicates"]) == (0, 0), changed
    assert [(q["reason"], q["field"]) for q in changed["quarantined"]] == [("conflict", "[0].value")]
    assert "70" in changed["quarantined"][0]["detail"] and "95" in changed["quarantined"][0]["detail"]
    within = _samples(world, "device", [dict(first, id="hr-2", value=80), dict(first, id="hr-2", value=81)]).json()
    assert within["accepted"] == 1 and [q["reason"] for q in within["quarantined"]] == ["conflict"], within
    listed = world.client.get(f"/api/v1/patients/{P1}/quarantine",
                              headers={"Authorization": f"Bearer {world.tokens['admin']}"}).json()
    assert sorted(i["reason"] for i in listed["items"] if i["reason"] == "conflict") == ["conflict", "conflict"]


# --- the write matrix: every write operation x caller x target ------------------------------------------

MISSING_ID, NOBODY = "obs-absent", "wp-nobody"


def _record_targets() -> dict[str, tuple[dict[str, Any], dict[str, Any] | None, tuple[str, ...]]]:
    """target -> (body, the same request naming only what does not exist or None, values to blank)."""
    return {
        "own": (transaction(put(observation("obs-m1", f"Patient/{P1}", 81))), None, ()),
        "other": (transaction(put(observation("obs-m3", f"Patient/{P3}", 12345))),
                  transaction(put(observation(MISSING_ID, f"Patient/{NOBODY}", 12345))), ("obs-m3", P3)),
        "other-into-own": (transaction(put(observation("obs-m3", f"Patient/{P1}", 12345))),
                           transaction(put(observation(MISSING_ID, f"Patient/{P1}", 12345))), ("obs-m3",)),
        "shared": (transaction(put({"resourceType": "Organization", "id": "org-1", "name": "General Hospital"})),
                   None, ()),
        "orphan": (transaction(post_entry(observation(None, {"identifier": {"system": SSN, "value": P3_SSN}}),
                                          "urn:uuid:orphan")), None, ()),
    }


#: caller -> target -> expected: "2xx", or (status, problem kind, must look like the missing twin).
_DENY_ALL = {t: (403, "forbidden", False) for t in _record_targets()}
_ORPHAN = (422, "no-patient", False)
RECORD_EXPECTED: dict[str, dict[str, Any]] = {
    "admin": {"own": "2xx", "other": "2xx", "other-into-own": "2xx", "shared": "2xx", "orphan": _ORPHAN},
    "clinician": {"own": "2xx", "other": (422, "unresolved-reference", True),
                  "other-into-own": (404, "not-found", True), "shared": (403, "forbidden", False), "orphan": _ORPHAN},
    "narrow:clinician": {"own": (403, "forbidden", False), "other": (422, "unresolved-reference", True),
                         "other-into-own": (404, "not-found", True), "shared": (403, "forbidden", False),
                         "orphan": _ORPHAN},
    "integration": {"own": (422, "unresolved-reference", False), "other": (422, "unresolved-reference", True),
                    "other-into-own": (422, "unresolved-reference", False), "shared": "2xx", "orphan": _ORPHAN},
    "patient": _DENY_ALL, "researcher": _DENY_ALL, "device": _DENY_ALL,
    **{f"wrong:{r}": _DENY_ALL for r in ("admin", "clinician", "patient", "researcher")},
    **{c: {t: (401, "not-authenticated", False) for t in _record_targets()}
       for c in ("none", "tampered", *(f"expired:{r}" for r in ROLES))},
}


def _as(world: World, caller: str) -> str | None:
    return None if caller == "none" else caller


def _restore(world: World) -> None:
    assert world.write("admin", transaction(put(observation("obs-m3", f"Patient/{P3}", 83)))).status_code in (200, 201)


def test_record_write_matrix(world: World) -> None:
    failures: list[str] = []
    cases = unauthorised_2xx = 0
    for caller, expected_by_target in RECORD_EXPECTED.items():
        if caller != "none" and caller not in world.tokens:
            continue
        for target, (body, twin, blanks) in _record_targets().items():
            before = world.stored("Observation", "obs-m3")
            response = world.write(_as(world, caller), body)
            cases += 1
            expected = expected_by_target[target]
            if expected == "2xx":
                if not 200 <= response.status_code < 300:
                    failures.append(f"{caller} {target}: {response.status_code} {response.text[:200]}")
                _restore(world)
                continue
            status, kind, like_missing = expected
            if 200 <= response.status_code < 300:
                unauthorised_2xx += 1
            if response.status_code != status or response.json().get("type") != f"urn:medtwin:problem:{kind}":
                failures.append(f"{caller} {target}: {response.status_code} {response.text[:200]}, expected {status} "
                                f"{kind}")
            elif like_missing and twin is not None:
                missing = world.write(_as(world, caller), twin)
                cases += 1
                missing_values = (MISSING_ID, NOBODY)[:len(blanks)]
                if (missing.status_code != response.status_code or
                        _without(response.json(), *blanks) != _without(missing.json(), *missing_values)):
                    failures.append(f"{caller} {target}: tells an existing resource from a missing one:\n"
                                    f"{response.text}\n{missing.text}")
            if world.stored("Observation", "obs-m3") != before:
                failures.append(f"{caller} {target}: a refused write changed P3's observation")
    print(f"record write matrix: {cases} requests, {unauthorised_2xx} unauthorised 2xx")
    assert cases >= 90 and not failures, "\n".join(failures)
    assert unauthorised_2xx == 0


def _write_routes(world: World) -> list[tuple[str, str]]:
    from medtwin.api.deps import route_policies

    return sorted({(r.method, r.path) for r in route_policies(world.client.app) if r.policy is not None
                   and r.method in ("POST", "PUT", "PATCH", "DELETE") and "{patient_id}" in r.path})


@pytest.mark.parametrize("caller", ["clinician", "patient", "device", "narrow:clinician"])
def test_every_write_route_answers_another_patient_like_a_missing_one(world: World, caller: str) -> None:
    """Every write route with a patient in its path, for every patient-scoped caller: another patient (by id
    or by SSN) gets the very answer a patient who does not exist gets."""
    routes = _write_routes(world)
    assert len(routes) >= 5, routes
    failures = []
    for method, path in routes:
        answers = []
        for key in (P3, P3_SSN, NOBODY, "000-00-0000"):
            r = world.client.request(method, path.replace("{patient_id}", key), content=b"{}",
                                     headers={"content-type": "application/json",
                                              "Authorization": f"Bearer {world.tokens[caller]}"})
            answers.append((r.status_code, _without(r.json(), key)))
            if 200 <= r.status_code < 300:
                failures.append(f"{caller} {method} {path} {key}: {r.status_code}")
        if len(set(answers)) != 1:
            failures.append(f"{caller} {method} {path}: answers differ {answers}")
    print(f"{caller}: {len(routes) * 4} write-route requests for other/missing patients")
    assert not failures, "\n".join(failures)
