"""The live census survives a restart: ADT sent over the app's real MLLP listener (and a FHIR Encounter and
equipment telemetry over HTTP) is journalled before it is acknowledged; a new app on the same store rebuilds
the same census (who is where since when), the same quarantine and the same equipment twin; a message sent
again is a duplicate (AA, nothing counted twice); the journal holds no clear-text PID; a message the
journal cannot take is answered AR and applied nowhere. On SQLite and PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.hospital.hl7_support import msa

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.hospital.adt import CensusTracker, census_key
from medtwin.hospital.equipment_ingest import EquipmentMqtt
from medtwin.hospital.live import LiveHospital
from medtwin.hospital.mllp import MllpThread, send_mllp
from medtwin.hospital.model import demo_model
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing, sealed_columns
from medtwin.store.database import Store
from medtwin.store.hospital_journal import HospitalJournal, hospital_adt_journal, hospital_equipment_samples
from medtwin.store.schema import metadata
from medtwin.stream.mqtt import InboundMessage

PW = "a long enough password"
MRNS = ("MRN-8830071", "MRN-8830072", "MRN-8830073", "MRN-8830074")
NAMES = ("ZEBEDEE^PERPETUA", "QUINCEY^ARCHIBALD", "VOLKONSKY^NATASHA", "BEZUKHOV^PIERRE")
T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
UNITS = ["ed_treatment", "ward", "icu"]


def adt(control: str, event: str, hours: float, who: int, unit: str = "") -> str:
    stamp = (T0 + timedelta(hours=hours)).strftime("%Y%m%d%H%M%S")
    return "\r".join([f"MSH|^~\\&|EPIC|GEN|MEDTWIN|GEN|{stamp}||ADT^{event}|{control}|P|2.5", f"EVN|{event}|{stamp}",
                      f"PID|1||{MRNS[who]}^^^GEN^MR||{NAMES[who]}", f"PV1|1|I|{unit}^1^1"])


FEED = [
    adt("C1", "A01", 0, 0, "ed_treatment"),
    adt("C2", "A01", 1, 1, "ed_treatment"),
    adt("C3", "A02", 5, 1, "icu"),  # patient 1: ED 01:00, ICU 05:00 ...
    adt("C4", "A02", 3, 1, "ward"),  # ... and the ward at 03:00, sent late: placed between them
    adt("C5", "A03", 4, 2),  # patient 2 discharged before any admission: refused (live)
    adt("C6", "A01", 2, 2, "ward"),  # then admitted at 02:00: in the ward (a replay of C5 would discharge)
    adt("C7", "A01", 2, 3, "nowhere"),  # unknown unit: refused
    "MSH|^~\\&|EPIC|GEN|MEDTWIN|GEN|20261207090000||ADT^A01|C8|P|2.5\rPID 1||MRN-8830074^^^GEN^MR||X",  # garbled
]
ENCOUNTER = {"resourceType": "Encounter", "id": "enc-41", "status": "in-progress",
             "meta": {"versionId": "2", "lastUpdated": "2026-12-07T08:00:00Z"},
             "subject": {"reference": "Patient/p-41", "display": "BEZUKHOV PIERRE"},
             "location": [{"location": {"reference": "Location/icu"}, "status": "active",
                           "period": {"start": "2026-12-07T07:30:00Z"}}]}


@dataclass
class App:
    client: TestClient
    live: LiveHospital
    port: int
    headers: dict[str, str]

    def state(self) -> dict[str, Any]:
        """Who is where since when (by keyed hash), the quarantine, the message counts, the equipment."""
        snap = self.live.snapshot()
        devices = self.client.get("/api/v1/hospital/equipment", headers=self.headers).json()["devices"]
        return {"stays": {k: (s.unit, s.since) for k, s in self.live.tracker._stays.items() if s.unit},
                "units": {u["unit"]: (u["patients"], u["since"]) for u in snap["units"]},
                "quarantine": [(q["control_id"], q["field"], q["reason"]) for q in self.live.tracker.quarantine],
                "accepted": snap["messages"]["accepted"], "refused": snap["messages"]["refused"],
                "devices": devices, "equipment_quarantine": list(self.live.equipment.quarantine)}


@pytest.fixture
def open_app(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """``open_app()``: a new app (a new process's store objects) on the same database; one at a time."""
    ring = KeyRing.generate()
    store = Store(database_url, AesGcmCodec(ring))
    store.migrate()
    with store.begin() as connection:
        accounts.create_user(connection, "admin", PW, "admin")
    store.dispose()
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=100_000, hospital_mllp_port=0)
    opened: list[Store] = []

    @contextmanager
    def open_app() -> Iterator[App]:
        fresh = Store(database_url, AesGcmCodec(ring))
        opened.append(fresh)
        with TestClient(create_app(settings, store=fresh, keyring=ring)) as client:
            token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                            "password": PW}).json()["access_token"]
            services = client.app.state.services  # type: ignore[attr-defined]
            listener = next(x for x in services.listeners if isinstance(x, MllpThread))
            yield App(client, services.hospital, int(listener.port), {"Authorization": f"Bearer {token}"})

    yield open_app, ring
    for s in opened:
        s.dispose()


def _feed(app: App) -> None:
    answers = send_mllp("127.0.0.1", app.port, FEED, timeout_s=30)
    assert [msa(a)[1:3] for a in answers] == [["AA", "C1"], ["AA", "C2"], ["AA", "C3"], ["AA", "C4"], ["AE", "C5"],
                                         ["AA", "C6"], ["AE", "C7"], ["AE", "C8"]]
    r = app.client.post("/api/v1/hospital/encounter", json=ENCOUNTER, headers=app.headers)
    assert r.status_code == 200 and r.json()["accepted"], r.text
    samples = [{"metric": "tube_current_drift", "time": (T0 - timedelta(hours=12 * i)).isoformat(),
                "value": 5.0 - 0.05 * i, "unit": "%"} for i in range(8)]
    r = app.client.post("/api/v1/hospital/equipment/ct-1/samples", content=orjson.dumps(samples), headers=app.headers)
    assert r.status_code == 200 and r.json()["accepted"] == 8, r.text
    # telemetry the MQTT handler refuses (a CT scanner on a ventilator's topic): quarantined, then acknowledged
    EquipmentMqtt(app.live.equipment, "t-equipment")([InboundMessage(
        "t-equipment/ventilator/ct-1/flow_sensor_offset", b'{"value": 1}', 1, 1, False, 0, 0.0)])


def test_restart_keeps_census_quarantine_and_equipment(open_app: Any) -> None:
    open_app, ring = open_app
    with open_app() as first:
        _feed(first)
        before = first.state()
    # what the feed says, so the comparison below compares something right
    key = census_key(ring.pseudonym_key)
    assert before["stays"][key(MRNS[1])] == ("icu", T0 + timedelta(hours=5))
    assert before["stays"][key(MRNS[2])] == ("ward", T0 + timedelta(hours=2))
    assert before["units"]["icu"][0] == 2 and before["units"]["ward"][0] == 1  # patient 1 and the Encounter
    assert [q[:2] for q in before["quarantine"]] == [("C5", "MSH-9"), ("C7", "PV1-3"), ("C8", "segment 2")]
    ct = next(d for d in before["devices"] if d["device"] == "ct-1")
    assert ct["samples"] == 8 and ct["status"] != "unknown"
    assert [q["field"] for q in before["equipment_quarantine"]] == ["topic"]

    with open_app() as second:
        assert second.state() == before  # the same census, quarantine, counts and equipment twin
        again = send_mllp("127.0.0.1", second.port, [FEED[0], FEED[3]], timeout_s=30)
        assert [msa(a)[1:3] for a in again] == [["AA", "C1"], ["AA", "C4"]]  # duplicates: acknowledged
        r = second.client.post("/api/v1/hospital/encounter", json=ENCOUNTER, headers=second.headers)
        assert r.status_code == 200 and r.json()["duplicate"], r.text
        after = second.state()
        assert after["stays"] == before["stays"] and after["accepted"] == before["accepted"]
        assert second.live.snapshot()["messages"]["duplicates"] == 3
        with second.live.journal.store.connect() as connection:  # type: ignore[union-attr]
            t = hospital_adt_journal
            assert connection.execute(select(func.count()).select_from(t)).scalar() == 9  # 5 + Encounter + 3 refused
            assert connection.execute(select(func.count()).select_from(hospital_equipment_samples)).scalar() == 8


def test_journal_holds_no_clear_text_pid(open_app: Any) -> None:
    open_app, ring = open_app
    with open_app() as app:
        _feed(app)
        store = app.live.journal.store  # type: ignore[union-attr]
        with store.connect() as connection:
            rows = connection.execute(select(hospital_adt_journal)).mappings().all()
    assert len(rows) == 9
    raw = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for r in rows for v in r.values())
    for secret in [*MRNS, *(n.split("^")[0] for n in NAMES), "BEZUKHOV", "p-41"]:
        assert secret.encode() not in raw, secret
    # ... yet it is all there, sealed: the codec opens it, and the patient column is the census's keyed hash
    opened = b"".join(store.codec.open(r["content"]) for r in rows)
    assert all(m.encode() in opened for m in MRNS) and b"ZEBEDEE" in opened
    key = census_key(ring.pseudonym_key)
    assert {r["patient"] for r in rows if r["control_id"] == "C1"} == {key(MRNS[0])}
    sealed = {(t.name, c) for t, _, c in sealed_columns(metadata.tables.values())}
    assert ("hospital_adt_journal", "content") in sealed  # key rotation re-seals it with the rest


def test_a_message_the_journal_cannot_take_is_answered_ar_and_applied_nowhere(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no tables yet: every journal write fails
    journal = HospitalJournal(store, "test")
    live = LiveHospital(demo_model(), census_key(b"k" * 32), lambda: T0 + timedelta(hours=9), journal=journal)
    listener = MllpThread(live, "127.0.0.1", 0, live.clock)
    try:
        answer = send_mllp("127.0.0.1", int(listener.port), [FEED[0]], timeout_s=30)[0]
        assert msa(answer)[1:3] == ["AR", "C1"]
        assert live.tracker.counts()["ed_treatment"] == 0 and live.tracker.quarantine == [] and live.version == 0
        store.migrate()  # the store is back: the sender's resend is taken
        assert msa(send_mllp("127.0.0.1", int(listener.port), [FEED[0]], timeout_s=30)[0])[1:3] == ["AA", "C1"]
        assert live.tracker.counts()["ed_treatment"] == 1 and live.version == 1
    finally:
        listener.stop()
        store.dispose()
    assert [m.control_id for m in journal.accepted()] == ["C1"]


def test_replay_in_event_time_order_equals_live_handling(tmp_path: Path) -> None:
    """The tracker fed in the order received and a tracker restored from the journal (event-time order) hold
    the same stays; a refusal is restored as refused (C5 would be accepted if replayed after C6)."""
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    store.migrate()
    journal = HospitalJournal(store, "test")
    key = census_key(b"k" * 32)
    live = CensusTracker(UNITS, key, journal)
    for text in FEED:
        live.handle(text)
    restored = CensusTracker(UNITS, key, journal)
    assert restored.restore(journal.accepted(), journal.quarantined()) == []
    assert {k: (s.unit, s.since) for k, s in restored._stays.items()} == \
        {k: (s.unit, s.since) for k, s in live._stays.items()}
    assert restored.quarantine == live.quarantine and restored.counts() == {"ed_treatment": 1, "ward": 1, "icu": 1}
    assert [m.control_id for m in journal.accepted()] == ["C1", "C2", "C6", "C4", "C3"]  # by event time
    store.dispose()


# A feed: per message (patient, event, hour, unit, control id); hours from a small set so that times tie, control
# ids whose code-point order differs from a natural-language collation ("a-2" < "a1" < "B3" in some).
_feeds = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["A01", "A02", "A03", "A08", "A11", "A12", "A13"]),
                            st.integers(0, 4), st.sampled_from(UNITS), st.text("aB-1", min_size=1, max_size=3)),
                  min_size=1, max_size=14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(feed=_feeds)
def test_any_arrival_order_replays_to_the_same_census(store: Store, feed: list[tuple[int, str, int, str, str]]) -> None:
    """Whatever order messages arrive in (ties in time, duplicates, refusals), the census restored from the
    journal in event-time order is the one live handling built, and the quarantine is the same."""
    journal, key = HospitalJournal(store, uuid.uuid4().hex), census_key(b"k" * 32)
    live = CensusTracker(UNITS, key, journal)
    for who, event, hours, unit, control in feed:
        live.handle(adt(control, event, hours, who, unit if event in ("A01", "A02", "A08") else ""))
    restored = CensusTracker(UNITS, key, journal)
    assert restored.restore(journal.accepted(), journal.quarantined()) == []
    assert {k: (s.unit, s.since) for k, s in restored._stays.items()} == \
        {k: (s.unit, s.since) for k, s in live._stays.items()}
    assert restored.quarantine == live.quarantine and restored.moves_since(T0) == live.moves_since(T0)
