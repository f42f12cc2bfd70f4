"""GET /api/v1/dashboard/patients over HTTP: order, latest state, care-team filtering, search, validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import insert

from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.store.database import Store
from medtwin.store.live_tables import alerts
from medtwin.store.records import RecordRepository
from medtwin.store.schema import samples
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units

PW = "a long enough password"


def add_samples(store: Store, patient_id: str, metric: str, unit: str, points: list[tuple[datetime, float]]) -> None:
    with store.begin() as connection:
        connection.execute(insert(samples), [
            {"patient_id": patient_id, "metric": metric, "time": t, "value": v, "unit": unit, "source": "http",
             "idempotency_key": f"{patient_id}:{metric}:{t.isoformat()}"} for t, v in points])


def add_alert(store: Store, patient_id: str, rule: str, severity: str, message: str = "test alert") -> None:
    now = datetime.now(UTC)
    with store.begin() as connection:
        connection.execute(insert(alerts).values(
            id=str(uuid.uuid4()), patient_id=patient_id, rule=rule, severity=severity, status="open",
            dedupe_key=f"{patient_id}:{rule}", opened_at=now, updated_at=now, last_seen_at=now, occurrences=1,
            message=message, details=store.codec.seal(b"{}")))


def test_dashboard_patients(client: TestClient, api_store: Store) -> None:
    units = [RawUnit(f"p{i}.json", "json", orjson.loads(orjson.dumps(b)))
             for i, b in enumerate(generate_bundles(n_patients=4))]
    assert import_units(api_store, units, actor="test").ok
    with api_store.connect() as connection:
        ids = RecordRepository(connection, api_store.codec).patient_ids()
    now = datetime.now(UTC)
    add_samples(api_store, ids[2], "glucose", "mg/dL", [(now - timedelta(minutes=5), 112.0), (now, 110.0)])
    add_alert(api_store, ids[2], "hypo-l2", "critical", message="glucose 50 mg/dL")
    add_alert(api_store, ids[3], "hyper-l1", "medium")
    with api_store.begin() as connection:
        accounts.create_user(connection, "carol", PW, "clinician")
        accounts.add_to_care_team(connection, "carol", ids[1])
        accounts.add_to_care_team(connection, "carol", ids[3])

    r = client.get("/api/v1/dashboard/patients")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 4
    assert [p["id"] for p in body["items"][:2]] == [ids[2], ids[3]]
    top = body["items"][0]
    assert top["urgency_rank"] == 1 and top["alerts"]["top_severity"] == "critical"
    assert top["alerts"]["top_message"] == "glucose 50 mg/dL"
    assert top["glucose"]["value"] == 110.0 and top["glucose"]["trend"] == "steady"
    assert top["glucose"]["trend_mg_dl_per_min"] == -0.4 and top["glucose"]["stale"] is False

    token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "carol",
                                                     "password": PW}).json()["access_token"]
    mine = client.get("/api/v1/dashboard/patients", headers={"Authorization": f"Bearer {token}"}).json()
    assert [p["id"] for p in mine["items"]] == [ids[3], ids[1]]  # care team only, the alerted one first

    name = body["items"][-1]["name"]
    found = client.get("/api/v1/dashboard/patients", params={"q": name.split()[-1]}).json()
    assert body["items"][-1]["id"] in {p["id"] for p in found["items"]}
    assert client.get("/api/v1/dashboard/patients", params={"limit": 0}).status_code == 422
