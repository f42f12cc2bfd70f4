"""Consent, research export and audit over HTTP (``medtwin.api.routers.security_admin``), against the real
app: AES-GCM store, synthetic patients, users per role, tokens from the token endpoint."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.security import accounts, audit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.security_tables import audit_log
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units

PW = "security admin password"


@dataclass
class World:
    client: TestClient
    store: Store
    own: str  # the patient user's patient; the clinician's care team
    other: str
    third: str
    own_mrn: str
    names: dict[str, set[str]]  # patient id -> family and given names
    tokens: dict[str, str]

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _token(client: TestClient, username: str, scope: str | None = None) -> str:
    data = {"grant_type": "password", "username": username, "password": PW}
    if scope:
        data["scope"] = scope
    r = client.post("/api/v1/auth/token", data=data)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("secadmin")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'sa.db'}", AesGcmCodec(ring))
    store.migrate()
    units = [RawUnit(f"p{i}.json", "json", b) for i, b in enumerate(generate_bundles(n_patients=3))]
    assert import_units(store, units, actor="test").ok
    names: dict[str, set[str]] = {}
    with store.begin() as conn:
        repo = RecordRepository(conn, store.codec)
        own, other, third = repo.patient_ids()[:3]
        for pid in (own, other, third):
            patient = repo.get("Patient", pid)
            assert patient is not None
            names[pid] = {n["family"] for n in patient["name"]} | {g for n in patient["name"] for g in n["given"]}
            if pid == own:
                own_mrn = next(i["value"] for i in patient["identifier"] if i.get("value"))
        for role in ("admin", "clinician", "patient", "researcher"):
            accounts.create_user(conn, role, PW, role, patient_id=own if role == "patient" else None)
        accounts.add_to_care_team(conn, "clinician", own)
        _, device = accounts.create_api_key(conn, "cgm", own, "admin", ring.index_key)
    settings = Settings(data_dir=tmp, rate_limit_per_minute=100_000, login_attempts_per_minute=1000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        tokens = {role: _token(client, role) for role in ("admin", "clinician", "patient", "researcher")}
        tokens["device"] = device
        tokens["patient-read-only"] = _token(client, "patient", "patient/Consent.rs patient/Patient.rs")
        yield World(client, store, own, other, third, own_mrn, names, tokens)
    store.dispose()


def _last_audit(world: World) -> audit.AuditRecord:
    with world.store.connect() as conn:
        head = audit.verify(conn).head_seq
        return next(audit.records(conn, since_seq=head - 1))


# --- consent -----------------------------------------------------------------------------------------
def test_patient_grants_and_withdraws_their_own_consent(world: World) -> None:
    c, url = world.client, f"/api/v1/patients/{world.own}/consent"
    before = c.get(url, headers=world.h("patient")).json()
    r = c.put(url, json={"decision": "permit"}, headers=world.h("patient"))
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "permit" and len(r.json()["history"]) == len(before["history"]) + 1
    assert r.json()["history"][-1]["recorded_by"] == "patient"
    r = c.put(url, json={"decision": "deny"}, headers=world.h("patient"))
    assert r.json()["decision"] == "deny"
    assert [h["decision"] for h in r.json()["history"]][-2:] == ["permit", "deny"]
    record = _last_audit(world)
    assert (record.action, record.resource_type, record.patient_id, record.outcome, record.status) == (
        "consent", "Consent", world.own, "success", 200)
    assert json.loads(record.detail or "{}")["decision"] == "deny"
    # the admin sees the same state, also by MRN
    r = c.get(f"/api/v1/patients/{world.own_mrn}/consent", headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["patient_id"] == world.own and r.json()["decision"] == "deny"


def test_consent_outside_reach_is_404_and_wrong_roles_are_403(world: World) -> None:
    c = world.client
    for role in ("patient", "clinician"):
        for method in ("GET", "PUT"):
            r = c.request(method, f"/api/v1/patients/{world.other}/consent", json={"decision": "permit"},
                          headers=world.h(role))
            assert r.status_code == 404 and r.json()["field"] == "patient_id", (role, method, r.text)
    for role in ("researcher", "device"):
        r = c.put(f"/api/v1/patients/{world.own}/consent", json={"decision": "permit"}, headers=world.h(role))
        assert r.status_code == 403, (role, r.text)
    r = c.get("/api/v1/patients/no-such-patient/consent", headers=world.h("admin"))
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


def test_consent_write_needs_update_scope(world: World) -> None:
    c, url = world.client, f"/api/v1/patients/{world.own}/consent"
    assert c.get(url, headers=world.h("patient-read-only")).status_code == 200
    r = c.put(url, json={"decision": "permit"}, headers=world.h("patient-read-only"))
    assert r.status_code == 403 and "scopes" in r.json()["detail"]


def test_consent_body_errors_name_the_field(world: World) -> None:
    r = world.client.put(f"/api/v1/patients/{world.own}/consent", json={"decision": "maybe"},
                         headers=world.h("clinician"))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["body", "decision"]
    r = world.client.put(f"/api/v1/patients/{world.own}/consent", json={"decision": "permit", "purpose": "ads"},
                         headers=world.h("clinician"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "purpose"]


# --- research export ---------------------------------------------------------------------------------
def _consent(world: World, patient_id: str, decision: str) -> None:
    r = world.client.put(f"/api/v1/patients/{patient_id}/consent", json={"decision": decision},
                         headers=world.h("admin"))
    assert r.status_code == 200, r.text


def _unzip(content: bytes) -> dict[str, list[dict[str, Any]] | dict[str, Any]]:
    out: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        for name in zf.namelist():
            text = zf.read(name).decode("utf-8")
            out[name] = json.loads(text) if name.endswith(".json") else [json.loads(x) for x in text.splitlines()]
    return out


def test_research_export_holds_only_consenting_patients_de_identified(world: World) -> None:
    _consent(world, world.own, "permit")
    _consent(world, world.other, "deny")
    _consent(world, world.third, "permit")
    r = world.client.post("/api/v1/research/export", headers=world.h("researcher"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert (r.headers["x-medtwin-patients"], r.headers["x-medtwin-excluded"]) == ("2", "1")
    files = _unzip(r.content)
    patients = files["Patient.ndjson"]
    assert isinstance(patients, list) and len(patients) == 2
    exported_ids = {p["id"] for p in patients}
    assert not exported_ids & {world.own, world.other, world.third}  # pseudonyms, not the stored ids
    assert all(len(p.get("birthDate", "1900")) == 4 for p in patients)  # year only (Safe Harbor)
    assert all("name" not in p and "identifier" not in p and "telecom" not in p for p in patients)
    raw = r.content.decode("latin-1") + json.dumps(files)
    for pid in (world.own, world.other, world.third):
        assert pid not in raw
        for name in world.names[pid]:
            assert name not in json.dumps(files), name
    manifest = files["manifest.json"]
    assert isinstance(manifest, dict) and manifest["patients"] == 2 and manifest["date_mode"] == "year"
    record = _last_audit(world)
    assert (record.action, record.resource_type, record.role, record.outcome) == (
        "research", "cohort", "researcher", "success")
    assert json.loads(record.detail or "{}")["patients"] == 2


def test_research_export_withdrawal_takes_effect_and_pseudonyms_are_stable(world: World) -> None:
    _consent(world, world.own, "permit")
    _consent(world, world.third, "permit")
    first = _unzip(world.client.post("/api/v1/research/export", headers=world.h("admin")).content)
    _consent(world, world.third, "deny")
    second = _unzip(world.client.post("/api/v1/research/export", json={"date_mode": "shift"},
                                      headers=world.h("admin")).content)
    first_ids = {p["id"] for p in first["Patient.ndjson"]}  # type: ignore[union-attr]
    second_ids = {p["id"] for p in second["Patient.ndjson"]}  # type: ignore[union-attr]
    assert len(first_ids) == 2 and len(second_ids) == 1 and second_ids < first_ids
    assert second["manifest.json"]["date_mode"] == "shift"  # type: ignore[call-overload]


def test_research_export_refuses_other_roles_and_bad_options(world: World) -> None:
    for role in ("clinician", "patient", "device"):
        assert world.client.post("/api/v1/research/export", headers=world.h(role)).status_code == 403, role
    r = world.client.post("/api/v1/research/export", json={"date_mode": "exact"}, headers=world.h("researcher"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "date_mode"]


# --- audit -------------------------------------------------------------------------------------------
def test_audit_verify_reports_the_chain_and_names_tampering(world: World) -> None:
    c = world.client
    r = c.get("/api/v1/audit/verify", headers=world.h("admin"))
    assert r.status_code == 200, r.text
    body = r.json()
    with world.store.connect() as conn:
        truth = audit.verify(conn)
    # the verify request itself is audited after it answered, so the chain had one record fewer
    assert body["ok"] is True and body["count"] == truth.count - 1 and body["head_seq"] == truth.head_seq - 1
    assert len(body["head_hash"]) == 64 and body["first_bad_seq"] is None
    with world.store.begin() as conn:
        original = conn.execute(select(audit_log.c.actor).where(audit_log.c.seq == 3)).scalar_one()
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="someone else"))
    try:
        body = c.get("/api/v1/audit/verify", headers=world.h("admin")).json()
        assert (body["ok"], body["first_bad_seq"], body["problem"]) == (False, 3, "modified")
    finally:
        with world.store.begin() as conn:
            conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor=original))
    assert c.get("/api/v1/audit/verify", headers=world.h("admin")).json()["ok"] is True
    for role in ("clinician", "patient", "researcher", "device"):
        assert c.get("/api/v1/audit/verify", headers=world.h(role)).status_code == 403, role


def test_audit_events_bundle_filters_by_patient_and_pages(world: World) -> None:
    c = world.client
    c.get(f"/api/v1/patients/{world.other}", headers=world.h("admin"))
    r = c.get("/api/v1/audit/events", params={"patient_id": world.other, "limit": 1000}, headers=world.h("admin"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    events = [e["resource"] for e in bundle["entry"]]
    assert events and bundle["total"] == len(events)
    assert all(e["resourceType"] == "AuditEvent" for e in events)
    assert all({"reference": f"Patient/{world.other}"} in [x["what"] for x in e["entity"]] for e in events)
    with world.store.connect() as conn:
        expected = [rec.seq for rec in audit.records(conn, patient_id=world.other)]
    seqs = [next(x["valueInteger"] for x in e["extension"][0]["extension"] if x["url"] == "seq") for e in events]
    assert seqs == expected
    # by MRN: the same patient
    by_mrn = c.get("/api/v1/audit/events", params={"patient_id": world.own_mrn}, headers=world.h("admin")).json()
    assert by_mrn["entry"] and all({"reference": f"Patient/{world.own}"} in [x["what"] for x in e["resource"]["entity"]]
                                   for e in by_mrn["entry"])
    # paging: limit 2, then follow since_seq
    page = c.get("/api/v1/audit/events", params={"limit": 2}, headers=world.h("admin")).json()
    assert page["total"] == 2 and [lk["relation"] for lk in page["link"]] == ["self", "next"]
    assert "since_seq=2" in page["link"][1]["url"]
    nxt = c.get("/api/v1/audit/events", params={"limit": 2, "since_seq": 2}, headers=world.h("admin")).json()
    first_seq = next(x["valueInteger"] for x in nxt["entry"][0]["resource"]["extension"][0]["extension"]
                     if x["url"] == "seq")
    assert first_seq == 3


def test_audit_events_refuse_non_admins_and_bad_limits(world: World) -> None:
    c = world.client
    for role in ("clinician", "patient", "researcher", "device"):
        assert c.get("/api/v1/audit/events", headers=world.h(role)).status_code == 403, role
    r = c.get("/api/v1/audit/events", params={"limit": 0}, headers=world.h("admin"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "limit"]
