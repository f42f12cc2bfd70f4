"""Authorisation generated from the app's own route table: every route x every role x (own patient,
other patient, no token, expired token, wrong scope). A route under /api/v1 without a declared policy
fails here, so do routes whose behaviour differs from the policy table below."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medtwin.api.app import create_app
from medtwin.api.deps import route_policies
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.security import accounts, audit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.security.scopes import parse_scopes
from medtwin.security.tokens import TokenService
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.security_tables import audit_log
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units

PW = "a long enough password"
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/token"), ("POST", "/api/v1/auth/revoke")}

# The policy table, stated independently of medtwin.security.policy: which actions each role may take.
MAY = {
    "admin": {"read", "write", "export", "simulate", "admin", "research", "consent", "identity"},
    "clinician": {"read", "write", "export", "simulate", "consent", "identity"},
    "patient": {"read", "export", "simulate", "consent", "identity"},
    "researcher": {"research", "identity"},
    "device": {"identity"},  # plus write on samples/Observation only
    "integration": {"identity"},  # plus write through the FHIR import (shared resources only) only
}
PATIENT_SCOPED = {"clinician", "patient", "device"}
WRONG_SCOPE = {"admin": "system/Immunization.rs", "clinician": "user/Immunization.rs",
               "patient": "patient/Immunization.rs", "researcher": "user/Immunization.rs",
               "integration": "system/Organization.c"}
USERS = ("admin", "clinician", "patient", "researcher", "integration")


def may(role: str, action: str, resource: str) -> bool:
    if role == "device" and action == "write":
        return resource == "samples"
    if role == "integration" and action == "write":
        return resource == "Bundle"
    return action in MAY[role]


@dataclass
class World:
    client: TestClient
    own: str
    other: str
    tokens: dict[str, str]
    wrong_scope: dict[str, str]
    expired: dict[str, str]
    revoked_device: str
    store: Store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("authz")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'authz.db'}", AesGcmCodec(ring))
    store.migrate()
    units = [RawUnit(f"p{i}.json", "json", b) for i, b in enumerate(generate_bundles(n_patients=2))]
    assert import_units(store, units, actor="test").ok
    with store.connect() as conn:
        own, other = RecordRepository(conn, store.codec).patient_ids()[:2]
    past = TokenService(ring.token_key, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    tokens: dict[str, str] = {}
    wrong: dict[str, str] = {}
    expired: dict[str, str] = {}
    with store.begin() as conn:
        for role in USERS:
            user = accounts.create_user(conn, role, PW, role, patient_id=own if role == "patient" else None)
            expired[role] = past.issue(conn, user, parse_scopes("user/*.rs")).access_token
        accounts.add_to_care_team(conn, "clinician", own)
        _, device = accounts.create_api_key(conn, "cgm", own, "admin", ring.index_key)
        _, revoked = accounts.create_api_key(conn, "old", own, "admin", ring.index_key)
        accounts.revoke_api_key(conn, revoked.split("_")[1])
    settings = Settings(data_dir=tmp, rate_limit_per_minute=100_000, login_attempts_per_minute=1000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        for role in USERS:
            r = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": role, "password": PW})
            assert r.status_code == 200, r.text
            tokens[role] = r.json()["access_token"]
            r = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": role,
                                                        "password": PW, "scope": WRONG_SCOPE[role]})
            assert r.status_code == 200 and r.json()["scope"] == WRONG_SCOPE[role], r.text
            wrong[role] = r.json()["access_token"]
        tokens["device"] = device
        yield World(client, own, other, tokens, wrong, expired, revoked, store)
    store.dispose()


#: Streaming routes answer until their (bounded) time runs out: ask for none of it here.
STREAMING_QUERY = {"/api/v1/events": "?timeout=0"}


def _url(path: str, patient: str) -> str:
    return re.sub(r"\{patient_id\}", patient, path) + STREAMING_QUERY.get(path, "")


def _call(world: World, method: str, path: str, token: str | None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "POST":
        headers["content-type"] = "application/fhir+json"
        return world.client.request(method, path, headers=headers, content=b"{}")
    return world.client.request(method, path, headers=headers)


def _last_outcome(world: World) -> str:
    """The outcome the audit middleware recorded for the latest request (denied: stopped by the guard)."""
    with world.store.connect() as conn:
        row = conn.execute(select(audit_log.c.outcome).order_by(audit_log.c.seq.desc()).limit(1)).first()
    assert row is not None
    return str(row[0])


def test_every_route_declares_a_policy(world: World) -> None:
    missing = [f"{r.method} {r.path}" for r in route_policies(world.client.app)
               if r.path.startswith("/api/v1") and r.policy is None and (r.method, r.path) not in PUBLIC]
    assert not missing, f"routes without a guard(action, resource): {missing}"


def test_route_table_is_not_empty(world: World) -> None:
    guarded = [r for r in route_policies(world.client.app) if r.policy is not None]
    assert len(guarded) >= 6 and any("{patient_id}" in r.path for r in guarded)


def _guarded(world: World) -> list[tuple[str, str, str, str]]:
    return [(r.method, r.path, *r.policy) for r in route_policies(world.client.app) if r.policy is not None]


@pytest.mark.parametrize("role", ["admin", "clinician", "patient", "researcher", "device", "integration"])
def test_matrix(world: World, role: str) -> None:
    failures = []
    for method, path, action, resource in _guarded(world):
        has_patient = "{patient_id}" in path
        for case, patient in (("own", world.own), ("other", world.other)):
            status = _call(world, method, _url(path, patient), world.tokens[role]).status_code
            if not may(role, action, resource):
                expected: set[int] | str = {403}
            elif case == "other" and has_patient and role in PATIENT_SCOPED:
                expected = {404}
            else:
                expected = "allowed"
            if isinstance(expected, set):
                ok = status in expected
            else:  # past the guard; a 404 here means "no such data yet" (no glucose twin, no PGx report)
                ok = status not in (401, 403) and status < 500 and _last_outcome(world) != "denied"
            if not ok:
                failures.append(f"{role} {case} {method} {path}: {status}, expected {expected}")
        if role != "device":
            status = _call(world, method, _url(path, world.own), world.wrong_scope[role]).status_code
            scoped = action not in {"admin", "research", "identity"}
            expected_wrong = 403 if (scoped or not may(role, action, resource)) else None
            if expected_wrong is not None and status != expected_wrong:
                failures.append(f"{role} wrong-scope {method} {path}: {status}, expected {expected_wrong}")
            if expected_wrong is None and status in (401, 403, 404):
                failures.append(f"{role} wrong-scope {method} {path}: {status}, expected allowed")
            status = _call(world, method, _url(path, world.own), world.expired[role]).status_code
            if status != 401:
                failures.append(f"{role} expired {method} {path}: {status}, expected 401")
    assert not failures, "\n".join(failures)


def test_no_token_and_revoked_device_key_get_401(world: World) -> None:
    for method, path, _action, _resource in _guarded(world):
        for token in (None, world.revoked_device, "garbage.token.value"):
            response = _call(world, method, _url(path, world.own), token)
            assert response.status_code == 401, (method, path, token)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_allowed_reads_return_data_and_lists_are_filtered(world: World) -> None:
    c = world.client
    for role in ("admin", "clinician", "patient"):
        r = c.get(f"/api/v1/patients/{world.own}", headers={"Authorization": f"Bearer {world.tokens[role]}"})
        assert r.status_code == 200 and r.json()["patient_id"] == world.own, (role, r.text)
    listed = {role: {p["id"] for p in c.get("/api/v1/patients", headers={
        "Authorization": f"Bearer {world.tokens[role]}"}).json()["items"]} for role in ("admin", "clinician", "patient")}
    assert listed["admin"] == {world.own, world.other}
    assert listed["clinician"] == {world.own} and listed["patient"] == {world.own}


def test_every_guarded_request_is_audited_with_client_and_outcome(world: World) -> None:
    with world.store.connect() as conn:
        before = audit.verify(conn).count
    c = world.client
    c.get(f"/api/v1/patients/{world.other}", headers={"Authorization": f"Bearer {world.tokens['clinician']}"})
    c.get(f"/api/v1/patients/{world.own}", headers={"Authorization": f"Bearer {world.tokens['clinician']}"})
    c.post("/api/v1/auth/token", data={"grant_type": "password", "username": "clinician", "password": "wrong pw!"})
    with world.store.connect() as conn:
        result = audit.verify(conn)
        new = list(audit.records(conn, since_seq=before))
    assert result.ok and result.count == before + 3
    denied, allowed, login = new
    assert (denied.actor, denied.role, denied.action, denied.outcome, denied.status, denied.patient_id) == (
        "clinician", "clinician", "read", "denied", 404, world.other)
    assert (allowed.outcome, allowed.status, allowed.patient_id, allowed.client) == (
        "success", 200, world.own, "testclient")
    assert (login.action, login.actor, login.outcome, login.status) == ("login", "clinician", "denied", 400)
