"""ADT over HTTP when the journal cannot keep a message: 503 problem+json with the AR acknowledgement and
nothing applied (the sender sends it again), never a 422 "refused" that a sender would not retry; once the
journal is back, the resend is taken (200, AA)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.hospital_journal import hospital_adt_journal

PW = "a long enough password"
WHEN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).strftime("%Y%m%d%H%M%S")
MESSAGE = "\r".join([f"MSH|^~\\&|EPIC|GEN|MEDTWIN|GEN|{WHEN}||ADT^A04|R1|P|2.5", f"EVN|A04|{WHEN}",
                     "PID|1||MRN-7001^^^GEN^MR||ROCINANTE^HORSE", "PV1|1|E|ed_treatment^1^1"])


def _state(client: TestClient, auth: dict[str, str]) -> dict[str, object]:
    census = client.get("/api/v1/hospital/census", headers=auth).json()
    return {k: census[k] for k in ("units", "total_patients", "quarantine", "version")}


def test_adt_not_journalled_is_503_with_ar_and_taken_on_resend(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp_path / 'h.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as conn:
        accounts.create_user(conn, "admin", PW, "admin")
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=100_000)
    try:
        with TestClient(create_app(settings, store=store, keyring=ring)) as client:
            r = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                        "password": PW})
            auth = {"Authorization": f"Bearer {r.json()['access_token']}", "Content-Type": "text/plain"}
            census = _state(client, auth)
            with store.begin() as conn:  # the journal goes away (a full disk, a lost table: it cannot keep it)
                conn.execute(text(f"ALTER TABLE {hospital_adt_journal.name} RENAME TO journal_away"))
            r = client.post("/api/v1/hospital/adt", content=MESSAGE, headers=auth)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            body = r.json()
            assert body["control_id"] == "R1" and "MSA|AR|R1" in body["ack"]
            assert _state(client, auth) == census  # nothing applied, nothing quarantined
            with store.begin() as conn:
                conn.execute(text(f"ALTER TABLE journal_away RENAME TO {hospital_adt_journal.name}"))
            r = client.post("/api/v1/hospital/adt", content=MESSAGE, headers=auth)
            assert r.status_code == 200 and r.json()["accepted"] and "MSA|AA|R1" in r.json()["ack"], r.text
            after = _state(client, auth)
            assert after["total_patients"] == census["total_patients"] + 1 and after["quarantine"] == []
    finally:
        store.dispose()
