"""Bulk Data $export on a running server: async kick-off, status polling, manifest, one ndjson file per type,
download, cancel; system, Patient and Group level with _type and _since; a caller gets the patients in their
reach and their own jobs only; the files re-import into a fresh store identically (decimals byte-identical)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from sqlalchemy import select
from tests.api.test_fhir_server import P1, P2, Server, _serving, live_server, seeded_store

from medtwin.record import exactjson
from medtwin.record.sources import RawUnit, read_units
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.bulk_export import KEEP_FOR, BulkExports, ExportRequest
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.security_tables import audit_log
from medtwin.twin.build import import_units

DECIMALS = ("840.20", "0.00", "12345678901234567890.123")


def _resources() -> bytes:
    entries = [
        b'{"resourceType":"Organization","id":"org","name":"Clinic"}',
        b'{"resourceType":"Practitioner","id":"doc"}',
        b'{"resourceType":"Patient","id":"' + P1.encode() + b'","managingOrganization":{"reference":"Organization/org"}}',
        b'{"resourceType":"Patient","id":"' + P2.encode() + b'"}',
        b'{"resourceType":"Group","id":"g","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/'
        + P2.encode() + b'"}}]}',
        b'{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":'
        b'"Patient/' + P1.encode() + b'"},"participant":[{"individual":{"reference":"Practitioner/doc"}}]}',
    ]
    for n, (patient, value) in enumerate([(P1, DECIMALS[0]), (P1, DECIMALS[1]), (P2, DECIMALS[2])]):
        encounter = b',"encounter":{"reference":"Encounter/e1"}' if patient == P1 else b""
        entries.append(b'{"resourceType":"Observation","id":"o' + str(n).encode() + b'","status":"final","code":'
                       b'{"text":"x"},"subject":{"reference":"Patient/' + patient.encode() + b'"}' + encounter
                       + b',"valueQuantity":{"value":' + value.encode() + b',"unit":"USD"}}')
    return b'{"resourceType":"Bundle","type":"collection","entry":[' + b",".join(
        b'{"resource":' + e + b"}" for e in entries) + b"]}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Store]]:
    with live_server(tmp_path_factory, "fhir-bulk", _resources()) as served:
        yield served


def _auth(server: Server, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.tokens[user]}"}


def _kick_off(server: Server, path: str, user: str = "admin", **params: str) -> requests.Response:
    return requests.get(f"{server.base}/{path}", params=params, timeout=30,
                        headers={**_auth(server, user), "Prefer": "respond-async", "Accept": "application/fhir+json"})


def _manifest(server: Server, location: str, user: str = "admin") -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status = requests.get(location, headers=_auth(server, user), timeout=30)
        if status.status_code == 200:
            manifest: dict[str, Any] = status.json()
            return manifest
        assert status.status_code == 202 and "types" in status.headers["x-progress"], status.text
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _files(server: Server, manifest: dict[str, Any], user: str = "admin") -> dict[str, bytes]:
    out = {}
    for item in manifest["output"]:
        answer = requests.get(item["url"], headers=_auth(server, user), timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+ndjson")
        assert len(answer.content.splitlines()) == item["count"]
        out[item["type"]] = answer.content
    return out


def test_system_export_reimports_identically(live: tuple[Server, Store], tmp_path: Path) -> None:
    server, store = live
    kicked = _kick_off(server, "$export")
    assert kicked.status_code == 202, kicked.text
    manifest = _manifest(server, kicked.headers["content-location"])
    assert manifest["requiresAccessToken"] is True and manifest["request"].endswith("/fhir/$export")
    types = [item["type"] for item in manifest["output"]]
    assert types[:3] == ["Organization", "Practitioner", "Patient"]  # shared first, then patients: importable
    files = _files(server, manifest)
    assert {t: len(c.splitlines()) for t, c in files.items()} == {
        "Group": 1, "Organization": 1, "Practitioner": 1, "Patient": 2, "Encounter": 1, "Observation": 3}
    for text in DECIMALS:
        assert f'"value":{text}'.encode() in files["Observation"]
    line = orjson.loads(files["Patient"].splitlines()[0])
    assert line["meta"]["versionId"] == "1" and "lastUpdated" in line["meta"]
    first = requests.get(manifest["output"][0]["url"], timeout=30)
    assert first.status_code == 401  # the files need the token
    assert requests.get(manifest["output"][0]["url"], headers=_auth(server, "clinician"), timeout=30).status_code == 404

    assert _reimports_identically(store, files, types, tmp_path) == 9


def _reimports_identically(store: Store, files: dict[str, bytes], types: list[str], folder: Path) -> int:
    """Import the files (in manifest order, as one unit) into a fresh store; every resource must be stored
    byte for byte as in ``store``. Returns how many were compared."""
    fresh = Store(f"sqlite:///{folder / 'fresh.db'}", AesGcmCodec(KeyRing.generate()))
    fresh.migrate()
    lines = [exactjson.loads(raw) for t in types for raw in files[t].splitlines()]
    report = import_units(fresh, [RawUnit("bulk", "ndjson", lines)])
    assert report.ok, report.errors[0].error if report.errors else None
    compared = 0
    with store.connect() as a, fresh.connect() as b:
        old, new = RecordRepository(a, store.codec), RecordRepository(b, fresh.codec)
        assert new.count_by_type() == old.count_by_type()
        for rtype in files:
            for raw in files[rtype].splitlines():
                rid = orjson.loads(raw)["id"]
                before, after = old.current(rtype, rid), new.current(rtype, rid)
                assert before is not None and after is not None
                assert after.raw == before.raw, (rtype, rid)  # byte for byte, decimals included
                compared += 1
    fresh.dispose()
    return compared


@pytest.mark.slow
def test_synthea_export_reimports_identically(tmp_path_factory: pytest.TempPathFactory, synthea_dir: Path) -> None:
    """The shared Synthea patients (Claim/ExplanationOfBenefit amounts like 840.20 among them) out through
    a system-level $export and into a fresh store: every resource identical."""
    store, ring, folder = seeded_store(tmp_path_factory, "bulk-synthea", read_units([synthea_dir]))
    with _serving(store, ring, folder) as server:
        manifest = _manifest(server, _kick_off(server, "$export").headers["content-location"])
        files = _files(server, manifest)
    assert b'.20,' in files["Claim"] or b'.20}' in files["Claim"]  # amounts keep their trailing zero
    compared = _reimports_identically(store, files, [i["type"] for i in manifest["output"]], folder)
    assert compared > 7000


def test_patient_group_type_since_and_reach(live: tuple[Server, Store]) -> None:
    server, _ = live
    mine = _manifest(server, _kick_off(server, "Patient/$export", "clinician").headers["content-location"],
                     "clinician")
    files = _files(server, mine, "clinician")
    assert set(files) == {"Patient", "Encounter", "Observation"}  # compartment data only, P1's only
    assert all(P2.encode() not in content for content in files.values())
    assert len(files["Observation"].splitlines()) == 2
    group = _manifest(server, _kick_off(server, "Group/g/$export", _type="Observation").headers["content-location"])
    assert [(i["type"], i["count"]) for i in group["output"]] == [("Observation", 1)]
    assert P2.encode() in _files(server, group)["Observation"]
    outside = _kick_off(server, "Group/g/$export", "clinician", _type="Observation")  # P2's group: outside reach
    missing = _kick_off(server, "Group/nothing/$export", "clinician")
    assert outside.status_code == missing.status_code == 404
    later = _manifest(server, _kick_off(server, "$export", _since="2999-01-01T00:00:00Z").headers["content-location"])
    assert later["output"] == []
    earlier = _manifest(server, _kick_off(server, "$export", _since="2000-01-01T00:00:00Z", _type="Patient,Group")
                        .headers["content-location"])
    assert sorted(i["type"] for i in earlier["output"]) == ["Group", "Patient"]


def test_cancel_and_refusals(live: tuple[Server, Store]) -> None:
    server, _ = live
    location = _kick_off(server, "$export").headers["content-location"]
    assert requests.delete(location, headers=_auth(server, "clinician"), timeout=30).status_code == 404
    assert requests.delete(location, headers=_auth(server, "admin"), timeout=30).status_code == 202
    assert requests.get(location, headers=_auth(server, "admin"), timeout=30).status_code == 404
    no_prefer = requests.get(f"{server.base}/$export", headers=_auth(server, "admin"), timeout=30)
    assert no_prefer.status_code == 400 and no_prefer.json()["issue"][0]["expression"] == ["Prefer"]
    for params, field in (({"_type": "Nonsense"}, "_type"), ({"_elements": "id"}, "_elements"),
                          ({"_since": "yesterday"}, "_since"), ({"_outputFormat": "text/csv"}, "_outputFormat")):
        refused = _kick_off(server, "$export", **params)
        assert refused.status_code == 400 and refused.json()["issue"][0]["expression"] == [field], params
    patient_level = _kick_off(server, "Patient/$export", _type="Organization")
    assert patient_level.status_code == 400
    with live[1].connect() as connection:
        audited = connection.execute(select(audit_log.c.action, audit_log.c.actor, audit_log.c.outcome)
                                     .where(audit_log.c.action == "export")).all()
    assert ("export", "admin", "success") in audited and ("export", "clinician", "denied") in audited
    capability = requests.get(f"{server.base}/metadata", timeout=30).json()
    assert {"export", "patient-export", "group-export"} <= {o["name"] for o in capability["rest"][0]["operation"]}


def test_finished_jobs_expire(tmp_path: Path) -> None:
    """A job finished more than KEEP_FOR ago is gone (status and files) when the next one starts; so is a
    folder an earlier server process left."""
    store = Store(f"sqlite:///{tmp_path / 'e.db'}", AesGcmCodec(KeyRing.generate()))
    store.migrate()
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    exports = BulkExports(store, tmp_path / "bulk", lambda: now[0])
    request = ExportRequest("me", "http://x/fhir/$export", ("Patient",), None, True, None)
    first = exports.start(request)
    assert first.finished.wait(30) and first.status == "completed"
    left = tmp_path / "bulk" / "left-by-another-process"
    left.mkdir()
    os.utime(left, (0, 0))
    now[0] += KEEP_FOR / 2
    exports.start(request)
    assert exports.job(first.id, "me") is first and left.exists() is False
    now[0] += KEEP_FOR
    exports.start(request)
    assert exports.job(first.id, "me") is None and not first.folder.exists()
    store.dispose()
