"""Acceptance: after importing the 10 shared Synthea patients, no name, street address, phone, MRN or SSN
appears in the raw database bytes (SQLite file, PostgreSQL dump); the research export contains none of
them, no exact dates (other than the year) and no narrative."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from medtwin.record.sources import read_units
from medtwin.security import consent
from medtwin.security.crypto import KeyRing
from medtwin.security.deid import Deidentifier, export_research
from medtwin.store.database import Store
from medtwin.store.schema import resources
from medtwin.twin.build import import_units

PG_DUMP = Path("/usr/lib/postgresql/15/bin/pg_dump")


def _files(synthea_dir: Path) -> list[Path]:
    patients = sorted(p for p in synthea_dir.glob("*.json")
                      if p.name not in ("hospitalInformation.json", "practitionerInformation.json", "MANIFEST.json"))
    assert len(patients) == 10
    return [synthea_dir / "hospitalInformation.json", synthea_dir / "practitionerInformation.json", *patients]


def _phi(files: list[Path]) -> dict[str, set[str]]:
    """Direct identifiers of the 10 patients, by kind, from the bundles themselves."""
    found: dict[str, set[str]] = {"name": set(), "address": set(), "phone": set(), "id": set(), "date": set()}
    for path in files[2:]:
        bundle = json.loads(path.read_text())
        for entry in bundle["entry"]:
            r = entry["resource"]
            if r["resourceType"] != "Patient":
                continue
            for n in r.get("name", []):
                found["name"].update([n["family"], *n.get("given", [])])
            for a in r.get("address", []):
                found["address"].update(a.get("line", []))
            found["phone"].update(t["value"] for t in r.get("telecom", []))
            found["id"].update(i["value"] for i in r.get("identifier", []))
            found["date"].add(r["birthDate"])
    return found


@pytest.fixture(scope="module")
def synthea_files(synthea_dir: Path) -> list[Path]:
    return _files(synthea_dir)


def _import(store: Store, files: list[Path]) -> None:
    report = import_units(store, list(read_units(files)), actor="test")
    assert report.ok, [str(u.error) for u in report.errors]


def _scan(blob: bytes, phi: dict[str, set[str]]) -> list[str]:
    hits = []
    for kind in ("name", "address", "phone", "id"):
        for value in phi[kind]:
            if value.encode() in blob:
                hits.append(f"{kind}: {value}")
    return hits


def test_no_identifier_in_raw_database(store: Store, synthea_files: list[Path], tmp_path: Path) -> None:
    _import(store, synthea_files)
    phi = _phi(synthea_files)
    assert len(phi["name"]) >= 20 and len(phi["id"]) >= 30
    with store.connect() as conn:  # the data are there and readable through the codec
        n = conn.execute(select(resources.c.id).where(resources.c.resource_type == "Patient")).all()
    assert len(n) == 10
    if store.is_sqlite:
        store.dispose()
        path = Path(store.url.split("///", 1)[1])
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # db, -wal, -shm
    else:
        assert PG_DUMP.exists()
        from sqlalchemy import make_url
        url = make_url(store.url)
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        raw = subprocess.run([str(PG_DUMP), "--data-only", dsn], check=True, capture_output=True).stdout
    assert len(raw) > 1_000_000
    hits = _scan(raw, phi)
    assert not hits, f"plaintext identifiers in the database: {hits[:10]}"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_research_export_is_deidentified(sqlite_store: Store, synthea_files: list[Path], keyring: KeyRing,
                                         tmp_path: Path, clock) -> None:  # type: ignore[no-untyped-def]
    _import(sqlite_store, synthea_files)
    phi = _phi(synthea_files)
    originals = [json.loads(p.read_text()) for p in synthea_files[2:]]
    exact_dates = {s[:10] for b in originals for s in _strings(b) if re.match(r"^\d{4}-\d{2}-\d{2}", s)}
    with sqlite_store.begin() as conn:
        ids = [r[0] for r in conn.execute(select(resources.c.id).where(resources.c.resource_type == "Patient")
                                          .order_by(resources.c.id))]
        for pid in ids:
            consent.record_consent(conn, pid, "permit", "test", clock)
        consent.record_consent(conn, ids[0], "deny", "test", clock)  # withdrawn
    out = tmp_path / "export"
    with sqlite_store.connect() as conn:
        report = export_research(conn, sqlite_store.codec, Deidentifier(keyring.pseudonym_key), out)
    assert report.patients == 9 and report.excluded_without_consent == 1
    lines = [json.loads(line) for f in sorted(out.glob("*.ndjson")) for line in f.read_text().splitlines()]
    assert sum(report.resources.values()) == len(lines) > 3000
    assert report.resources["Patient"] == 9 and report.resources["Observation"] > 1000
    strings = _strings(lines)
    blob = "\n".join(strings)
    for kind in ("name", "address", "phone", "id"):
        leaked = [v for v in phi[kind] if v in blob]
        assert not leaked, f"{kind} leaked: {leaked[:5]}"
    assert ids[0] not in blob  # no source ids either: pseudonyms only
    leaked_dates = [s for s in strings if re.match(r"^\d{4}-\d{2}", s)]
    assert not leaked_dates, leaked_dates[:5]
    assert not exact_dates & set(strings)
    assert not [r for r in lines if "text" in r and isinstance(r["text"], dict)]  # no narrative
    assert not any("data" in json.dumps(r) and r["resourceType"] == "DocumentReference" and "attachment" in
                   json.dumps(r) for r in lines)
    patients = [r for r in lines if r["resourceType"] == "Patient"]
    for p in patients:
        assert set(p) <= {"resourceType", "id", "meta", "extension", "gender", "birthDate", "address",
                          "maritalStatus", "communication", "multipleBirthBoolean", "deceasedDateTime",
                          "deceasedBoolean", "multipleBirthInteger"}
        assert "birthDate" not in p or re.fullmatch(r"\d{4}", p["birthDate"])
        for a in p.get("address", []):
            assert set(a) <= {"state", "country", "postalCode"} and len(a.get("postalCode", "000")) == 3
    # pseudonyms are stable: a second export gives the same ids
    with sqlite_store.connect() as conn:
        export_research(conn, sqlite_store.codec, Deidentifier(keyring.pseudonym_key), tmp_path / "again")
    again = (tmp_path / "again" / "Patient.ndjson").read_text()
    assert again == (out / "Patient.ndjson").read_text()
    shutil.rmtree(tmp_path / "again")


# --- issue 13, defect 4: no identifier in the database after API use by every role ---------------
def _identifiers(files: list[Path]) -> list[dict[str, str]]:
    """Per patient, its identifier values by HL7 v2-0203 type (MR, SS, DL, PPN) and its names."""
    out = []
    for path in files[2:]:
        patient = next(e["resource"] for e in json.loads(path.read_text())["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        by_type = {c["code"]: i["value"] for i in patient["identifier"] for c in i.get("type", {}).get("coding", [])}
        out.append({**by_type, "family": patient["name"][0]["family"]})
    return out


def _raw_database(store: Store) -> bytes:
    """Every byte the database holds: the SQLite file and its WAL (read while open, before a checkpoint
    folds the WAL in, and again after), or a data-only pg_dump of PostgreSQL."""
    if store.is_sqlite:
        path = Path(store.url.split("///", 1)[1])
        live = b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
        assert Path(str(path) + "-wal").exists()
        store.dispose()
        return live + b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    from sqlalchemy import make_url

    dsn = make_url(store.url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([str(PG_DUMP), "--data-only", dsn], check=True, capture_output=True).stdout


def _api_session(client: Any, tokens: dict[str, str], patients: list[dict[str, str]], ids: list[str]) -> dict[str, int]:
    """Ordinary use by every role, naming patients by id, MRN and (wrongly) SSN, licence and passport."""
    statuses: dict[str, int] = {}
    for role, token in tokens.items():
        h = {"Authorization": f"Bearer {token}"}
        client.get("/api/v1/auth/me", headers=h)
        client.get("/api/v1/patients", headers=h, params={"name": patients[0]["family"]})
        client.get("/api/v1/alerts", headers=h, params={"patient": patients[0]["MR"]})
        for k in (0, 2):  # in the clinician's care team / not
            for kind, value in (("id", ids[k]), ("MR", patients[k]["MR"]), ("SS", patients[k]["SS"]),
                                ("DL", patients[k].get("DL", "")), ("PPN", patients[k].get("PPN", ""))):
                if not value:
                    continue
                for tail in ("", "/observations", "/consent", "/alerts", "/samples/latest"):
                    r = client.get(f"/api/v1/patients/{value}{tail}", headers=h)
                    statuses[f"{role} {kind} {k}{tail}"] = r.status_code
                r = client.post(f"/api/v1/patients/{value}/samples", headers=h, json=[
                    {"metric": "heart_rate", "value": 71, "unit": "/min", "time": "2026-01-15T11:00:00Z",
                     "id": f"{role}-{kind}-{k}"}])
                statuses[f"{role} {kind} {k} POST samples"] = r.status_code
                client.get("/api/v1/audit/events", headers=h, params={"patient_id": value})
    client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin", "password": "wrong!"})
    for k in (1, 3):  # an identifier typed as a user name (no such account): not kept in the audit log
        client.post("/api/v1/auth/token", data={"grant_type": "password", "username": patients[k]["MR"],
                                                 "password": "whatever it is"})
    for role, k, kind in (("device", 0, "MR"), ("admin", 2, "SS"), ("clinician", 2, "DL")):  # sample sockets
        with client.websocket_connect(f"/api/v1/patients/{patients[k][kind]}/stream",
                                      headers={"Authorization": f"Bearer {tokens[role]}"}) as ws:
            first = ws.receive_json()
            statuses[f"{role} {kind} {k}/stream"] = 101 if first.get("ready") else first["error"]["status"]
    return statuses


def test_no_identifier_in_database_after_api_use_by_every_role(store: Store, synthea_files: list[Path],
                                                               keyring: KeyRing, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medtwin.api.app import create_app
    from medtwin.config import Settings
    from medtwin.security import accounts, audit
    from medtwin.store.security_tables import audit_log

    _import(store, synthea_files)
    patients = _identifiers(synthea_files)
    pw = "privacy scan password"
    with store.begin() as conn:
        from medtwin.store.records import RecordRepository

        repo = RecordRepository(conn, store.codec)
        ids = [repo.resolve_patient(p["MR"]) or "" for p in patients]
        assert all(ids) and len(set(ids)) == 10
        for role in ("admin", "clinician", "patient", "researcher"):
            accounts.create_user(conn, role, pw, role, patient_id=ids[0] if role == "patient" else None)
        accounts.add_to_care_team(conn, "clinician", ids[0])
        _, device = accounts.create_api_key(conn, "cgm", ids[0], "admin", keyring.index_key)
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=1_000_000, login_attempts_per_minute=1_000_000)
    with TestClient(create_app(settings, store=store, keyring=keyring)) as client:
        tokens = {role: client.post("/api/v1/auth/token", data={"grant_type": "password", "username": role,
                                                                 "password": pw}).json()["access_token"]
                  for role in ("admin", "clinician", "patient", "researcher")}
        tokens["device"] = device
        statuses = _api_session(client, tokens, patients, ids)
    # MRN lookup in a path is a feature; an SSN, licence or passport number in a URL resolves to nothing
    assert statuses["admin MR 2"] == statuses["admin id 2"] == statuses["clinician MR 0"] == 200
    assert statuses["admin SS 2"] == statuses["admin DL 2"] == statuses["admin PPN 2"] == 404
    assert statuses["clinician MR 2"] == statuses["clinician SS 0"] == 404
    assert statuses["device MR 0 POST samples"] == statuses["admin id 2/samples/latest"] == 200
    assert statuses["admin SS 2 POST samples"] == statuses["admin PPN 2/samples/latest"] == 404
    assert (statuses["device MR 0/stream"], statuses["admin SS 2/stream"], statuses["clinician DL 2/stream"]) == (
        101, 404, 404)
    with store.connect() as conn:
        records = list(audit.records(conn))
        assert audit.verify(conn).ok
        roles = {r.role for r in records}
        routes = {json.loads(r.detail)["route"] for r in records if r.detail and "route" in json.loads(r.detail)}
        patient_ids = {r.patient_id for r in records if r.patient_id}
        n = conn.execute(select(audit_log.c.seq)).all()
    assert {"admin", "clinician", "patient", "researcher", "device"} <= roles and len(n) > 300
    assert "/api/v1/patients/{patient_id}/observations" in routes
    assert all(p in ids or p.startswith("blind:") for p in patient_ids), patient_ids - set(ids)
    raw = _raw_database(store)
    phi = _phi(synthea_files)
    values = {kind: {p[kind] for p in patients if kind in p} for kind in ("MR", "SS", "DL", "PPN")}
    assert len(values["SS"]) == 10 and len(values["MR"]) == 10
    hits = _scan(raw, phi) + [f"{kind}: {v}" for kind, vs in values.items() for v in vs if v.encode() in raw]
    assert not hits, f"plaintext identifiers in the database after API use: {hits[:10]}"
