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
