"""Samples over HTTP and WebSocket: ingest in every format, series/latest/quarantine reads, and each kind of
bad input (malformed, unknown patient, another patient's device key, wrong unit, duplicates, out-of-order,
rate limit burst and retry, impossible values, naive times). One test runs a real uvicorn server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
import websockets
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from medtwin.api import realtime
from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.samples import SampleRepository
from medtwin.stream.client import SampleClient, make_batch
from medtwin.stream.ratelimit import TokenBucketLimiter
from medtwin.twin.build import import_units

T0 = datetime(2024, 6, 1, 6, 0, tzinfo=UTC)
PROBLEM = "application/problem+json"


def _iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def hr(minute: float, value: float = 70, **extra: Any) -> dict[str, Any]:
    return {"metric": "heart_rate", "time": _iso(minute), "value": value, "unit": "/min", **extra}


ADMIN_PW = "samples admin password"


@dataclass
class World:
    client: TestClient
    store: Store
    keyring: KeyRing
    tmp: Path


@dataclass
class Devices:
    own: str  # device key "watch" bound to the test's patient
    other: str  # device key "cuff" bound to another patient
    patient: str
    other_patient: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One app and store for the module (sign-in hashing is slow); each test gets its own patients."""
    tmp = tmp_path_factory.mktemp("samples-api")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'api.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as conn:
        accounts.create_user(conn, "admin", ADMIN_PW, "admin")
    settings = Settings(data_dir=tmp, max_upload_bytes=5 * 1024 * 1024, rate_limit_per_minute=100_000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as test_client:
        token = test_client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                              "password": ADMIN_PW})
        assert token.status_code == 200, token.text
        test_client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield World(test_client, store, ring, tmp)
    store.dispose()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    pipeline = world.client.app.state.services.ingest  # type: ignore[attr-defined]
    limiter = pipeline.rate_limiter
    yield world.client
    pipeline.rate_limiter = limiter


@pytest.fixture
def api_store(world: World) -> Store:
    return world.store


@pytest.fixture
def devices(world: World) -> Devices:
    """Two fresh patients (``<id>`` with MRN ``MRN-<id>``) and a device key for each."""
    own, other = f"p-{uuid.uuid4().hex[:10]}", f"p-{uuid.uuid4().hex[:10]}"
    units = [RawUnit(f"{pid}.json", "json", {"resourceType": "Patient", "id": pid,
                                             "identifier": [{"system": "urn:mrn", "value": f"MRN-{pid}"}]})
             for pid in (own, other)]
    assert import_units(world.store, units, actor="test").ok
    with world.store.begin() as conn:
        _, own_key = accounts.create_api_key(conn, "watch", own, "admin", world.keyring.index_key)
        _, other_key = accounts.create_api_key(conn, "cuff", other, "admin", world.keyring.index_key)
    return Devices(own_key, other_key, own, other)


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _post(client: TestClient, patient: str, body: Any, *, token: str | None = None,
          content_type: str = "application/json") -> Any:
    headers = {"content-type": content_type, **(_as(token) if token else {})}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(f"/api/v1/patients/{patient}/samples", content=content, headers=headers)


def _count(store: Store, patient: str) -> int:
    with store.connect() as conn:
        return SampleRepository(conn).count(patient)


def test_device_posts_out_of_order_samples_and_reads_come_back_in_time_order(
        client: TestClient, devices: Devices, api_store: Store) -> None:
    r = _post(client, devices.patient, [hr(20, 90), hr(0, 60), hr(10, 75)], token=devices.own)
    assert r.status_code == 200, r.text
    assert r.json() == {"patient_id": devices.patient, "source": "http", "format": "samples", "received": 3, "accepted": 3,
                        "duplicates": 0, "quarantined": []}
    series = client.get(f"/api/v1/patients/{devices.patient}/samples", params={"metric": "heart_rate"})
    assert series.status_code == 200
    assert series.json() == {"metric": "heart_rate", "unit": "/min", "total": 3, "values": [60.0, 75.0, 90.0],
                             "times": ["2024-06-01T06:00:00Z", "2024-06-01T06:10:00Z", "2024-06-01T06:20:00Z"]}
    window = client.get(f"/api/v1/patients/MRN-{devices.patient}/samples", params={
        "metric": "heart_rate", "start": "2024-06-01T08:05:00+02:00", "end": "2024-06-01T06:20:00Z"})
    assert window.json()["values"] == [75.0]  # start inclusive (offset honoured), end exclusive; by MRN
    latest = client.get(f"/api/v1/patients/{devices.patient}/samples/latest").json()
    assert latest["latest"]["heart_rate"]["value"] == 90.0
    assert latest["latest"]["heart_rate"]["device"] == "watch"  # the device is the key's name


def test_duplicates_are_reported_and_count_unchanged(client: TestClient, devices: Devices, api_store: Store) -> None:
    batch = [hr(i, 60 + i) for i in range(5)]
    assert _post(client, devices.patient, batch, token=devices.own).json()["accepted"] == 5
    again = _post(client, devices.patient, batch, token=devices.own).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)
    assert _count(api_store, devices.patient) == 5


def test_fhir_bundle_and_open_mhealth_posts(client: TestClient, devices: Devices) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "id": "bp-1", "status": "final", "effectiveDateTime": _iso(0),
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 16, "unit": "kPa", "system": "http://unitsofmeasure.org", "code": "kPa"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 80, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}}]}}]}
    r = _post(client, devices.patient, bundle, content_type="application/fhir+json")
    assert r.status_code == 200 and r.json()["format"] == "fhir" and r.json()["accepted"] == 2
    systolic = client.get(f"/api/v1/patients/{devices.patient}/samples", params={"metric": "systolic_bp"}).json()
    assert systolic["values"] == [pytest.approx(120.0102)] and systolic["unit"] == "mm[Hg]"
    omh = {"header": {"id": "g-1", "schema_id": {"namespace": "omh", "name": "blood-glucose", "version": "3.0"}},
           "body": {"blood_glucose": {"value": 6.1, "unit": "mmol/L"},
                    "effective_time_frame": {"date_time": _iso(5)}}}
    r = _post(client, devices.patient, omh, token=devices.own)
    assert r.json()["format"] == "omh" and r.json()["accepted"] == 1
    glucose = client.get(f"/api/v1/patients/{devices.patient}/samples/latest").json()["latest"]["glucose"]
    assert glucose["value"] == pytest.approx(6.1 * 18.0156) and glucose["original_unit"] == "mmol/L"


@pytest.mark.parametrize(("body", "field"), [(b"this is not json", "$"), (b'{"unexpected": true}', "$"),
                                             (b'"a string"', "$"), (b"", "$")])
def test_malformed_payload_is_422_naming_the_field_and_kept_in_quarantine(
        client: TestClient, devices: Devices, api_store: Store, body: bytes, field: str) -> None:
    r = _post(client, devices.patient, body, token=devices.own)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["field"] == field and r.json()["errors"][0]["loc"] == ["body", field]
    assert _count(api_store, devices.patient) == 0
    listed = client.get(f"/api/v1/patients/{devices.patient}/quarantine").json()
    assert listed["total"] == 1 and listed["items"][0]["reason"] == "malformed"
    assert listed["items"][0]["payload"] is not None or body == b""


def test_unknown_patient_is_404(client: TestClient, devices: Devices) -> None:
    r = _post(client, "no-such-patient", [hr(0)])
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM and r.json()["field"] == "patient_id"
    assert client.get("/api/v1/patients/no-such-patient/samples", params={"metric": "glucose"}).status_code == 404
    assert client.get("/api/v1/patients/no-such-patient/quarantine").status_code == 404


def test_device_key_of_another_patient_is_refused_and_stores_nothing(
        client: TestClient, devices: Devices, api_store: Store) -> None:
    r = _post(client, devices.patient, [hr(0)], token=devices.other)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert _count(api_store, devices.patient) == 0
    assert _post(client, devices.other_patient, [hr(0)], token=devices.other).json()["accepted"] == 1
    # a device key may not read
    assert client.get(f"/api/v1/patients/{devices.other_patient}/samples", params={"metric": "heart_rate"},
                      headers=_as(devices.other)).status_code == 403
    assert _post(client, devices.patient, [hr(0)], token="mtk_unknown_key").status_code == 401


def test_wrong_unit_impossible_values_and_naive_times_are_quarantined_others_stored(
        client: TestClient, devices: Devices, api_store: Store) -> None:
    batch = [hr(0, 70),
             {"metric": "spo2", "time": _iso(1), "value": 130, "unit": "%"},
             hr(2, -5),
             {"metric": "heart_rate", "time": _iso(3), "value": 80, "unit": "mg/dL"},
             {"metric": "heart_rate", "time": "2024-06-01T06:04:00", "value": 80, "unit": "/min"},
             {"metric": "spo2", "time": _iso(5), "value": 96, "unit": "%"}]
    report = _post(client, devices.patient, batch, token=devices.own).json()
    assert report["accepted"] == 2
    assert {(q["index"], q["field"], q["reason"]) for q in report["quarantined"]} == {
        (1, "[1].value", "out-of-range"), (2, "[2].value", "out-of-range"), (3, "[3].unit", "unit"),
        (4, "[4].time", "naive-time")}
    assert _count(api_store, devices.patient) == 2
    listed = client.get(f"/api/v1/patients/{devices.patient}/quarantine", params={"limit": 10}).json()
    assert listed["total"] == 4
    spo2 = next(i for i in listed["items"] if i["field"] == "[1].value")
    assert spo2["payload"] == batch[1] and spo2["metric"] == "spo2" and spo2["device"] == "watch"
    # retrying the same batch quarantines nothing twice
    _post(client, devices.patient, batch, token=devices.own)
    assert client.get(f"/api/v1/patients/{devices.patient}/quarantine").json()["total"] == 4


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_beyond_the_device_rate_is_429_stores_nothing_and_a_retry_after_refill_stores(
        client: TestClient, devices: Devices, api_store: Store) -> None:
    clock = FakeMonotonic()
    client.app.state.services.ingest.rate_limiter = TokenBucketLimiter(120, monotonic=clock)  # type: ignore[attr-defined]
    assert _post(client, devices.patient, [hr(i) for i in range(100)], token=devices.own).json()["accepted"] == 100
    burst = [hr(200 + i) for i in range(50)]
    r = _post(client, devices.patient, burst, token=devices.own)
    assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
    assert r.headers["retry-after"] == "15"  # 20 tokens left, 50 needed, 2 per second
    assert r.json()["retry_after"] == 15
    assert _count(api_store, devices.patient) == 100
    clock.now += 15
    assert _post(client, devices.patient, burst, token=devices.own).json()["accepted"] == 50
    assert _count(api_store, devices.patient) == 150
    too_big = _post(client, devices.patient, [hr(400 + i) for i in range(121)], token=devices.own)
    assert too_big.status_code == 413 and too_big.json()["limit"] == 120


def test_series_downsampling_and_query_validation(client: TestClient, devices: Devices) -> None:
    batch = [hr(i, 70 + (i % 5)) for i in range(1_000)]
    batch[321]["value"] = 210
    assert _post(client, devices.patient, batch, token=devices.own).json()["accepted"] == 1_000
    r = client.get(f"/api/v1/patients/{devices.patient}/samples", params={"metric": "heart_rate", "max_points": 50}).json()
    assert len(r["values"]) <= 50 and r["total"] == 1_000 and max(r["values"]) == 210
    assert r["times"] == sorted(r["times"])
    bad_metric = client.get(f"/api/v1/patients/{devices.patient}/samples", params={"metric": "mood"})
    assert bad_metric.status_code == 422 and bad_metric.json()["field"] == "metric"
    naive = client.get(f"/api/v1/patients/{devices.patient}/samples", params={"metric": "heart_rate",
                                                              "start": "2024-06-01T06:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "start"
    assert client.get(f"/api/v1/patients/{devices.patient}/samples").status_code == 422  # metric is required


# ------------------------------------------------------------------------------------------ WebSocket

def test_websocket_stream_with_header_token(client: TestClient, devices: Devices, api_store: Store) -> None:
    with client.websocket_connect(f"/api/v1/patients/{devices.patient}/stream", headers=_as(devices.own)) as ws:
        assert ws.receive_json() == {"ready": True, "patient_id": devices.patient, "device": "watch"}
        ws.send_text(orjson.dumps({"seq": 1, "samples": [hr(0), hr(1), hr(2, 500)]}).decode())
        reply = ws.receive_json()
        assert reply["seq"] == 1 and reply["accepted"] == 2 and reply["duplicates"] == 0
        assert reply["quarantined"][0]["field"] == "[2].value"
        ws.send_text(orjson.dumps({"seq": 2, "samples": [hr(0), hr(3)]}).decode())
        assert ws.receive_json() == {"seq": 2, "accepted": 1, "duplicates": 1, "quarantined": []}
        ws.send_text("not json")
        assert ws.receive_json()["error"]["field"] == "$"
        ws.send_text('{"samples": []}')
        assert ws.receive_json()["error"]["field"] == "seq"
        ws.send_text('{"seq": 3}')
        assert ws.receive_json() == {"seq": 3, "error": {"status": 422, "reason": "missing", "field": "samples",
                                                         "detail": "samples (any payload POST .../samples takes) "
                                                                   "is required"}}
        ws.send_text('{"seq": 4, "samples": {"what": 1}}')
        assert ws.receive_json()["error"]["field"] == "samples"
        ws.send_bytes(orjson.dumps({"seq": 5, "samples": {"metric": "glucose", "time": _iso(4), "value": 99,
                                                          "unit": "mg/dL"}}))
        assert ws.receive_json()["accepted"] == 1  # still open after the errors; binary frames too
    assert _count(api_store, devices.patient) == 4


def test_websocket_first_message_token_and_rate_limit(client: TestClient, devices: Devices) -> None:
    clock = FakeMonotonic()
    client.app.state.services.ingest.rate_limiter = TokenBucketLimiter(60, monotonic=clock)  # type: ignore[attr-defined]
    token = client.headers["Authorization"].split(" ", 1)[1]
    with client.websocket_connect(f"/api/v1/patients/MRN-{devices.patient}/stream",
                                  headers={"Authorization": ""}) as ws:
        ws.send_text(orjson.dumps({"token": token}).decode())
        assert ws.receive_json()["patient_id"] == devices.patient
        ws.send_text(orjson.dumps({"seq": "a", "samples": [hr(i) for i in range(50)]}).decode())
        assert ws.receive_json()["accepted"] == 50
        ws.send_text(orjson.dumps({"seq": "b", "samples": [hr(100 + i) for i in range(20)]}).decode())
        error = ws.receive_json()
        assert error["seq"] == "b" and error["error"]["status"] == 429 and error["error"]["retry_after"] == 10
        clock.now += 10
        ws.send_text(orjson.dumps({"seq": "c", "samples": [hr(100 + i) for i in range(20)]}).decode())
        assert ws.receive_json()["accepted"] == 20


@pytest.mark.parametrize("case", ["bad-token", "other-patient", "no-token"])
def test_websocket_refuses_bad_credentials(client: TestClient, devices: Devices, case: str) -> None:
    headers = {"Authorization": ""}
    if case == "other-patient":
        headers = _as(devices.other)
    with client.websocket_connect(f"/api/v1/patients/{devices.patient}/stream", headers=headers) as ws:
        if case == "bad-token":
            ws.send_text('{"token": "mtk_nope_nope"}')
        elif case == "no-token":
            ws.send_text('{"hello": 1}')
        error = ws.receive_json()["error"]
        assert error["status"] == {"bad-token": 401, "other-patient": 404, "no-token": 401}[case]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def test_websocket_oversized_message_is_refused_and_the_socket_stays_open(client: TestClient, devices: Devices) -> None:
    limit = client.app.state.services.settings.max_upload_bytes  # type: ignore[attr-defined]
    with client.websocket_connect(f"/api/v1/patients/{devices.patient}/stream", headers=_as(devices.own)) as ws:
        ws.receive_json()
        ws.send_text(" " * (limit + 1))
        assert ws.receive_json() == {"seq": None, "error": {"status": 413, "reason": "too-large", "field": None,
                                                            "detail": f"a message may hold {limit} bytes"}}
        ws.send_text(orjson.dumps({"seq": 1, "samples": [hr(0)]}).decode())
        assert ws.receive_json()["accepted"] == 1


def test_websocket_closes_when_its_device_key_is_revoked(client: TestClient, devices: Devices, world: World,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The credential is checked again (every ``RECHECK_S``; here on every message): a revoked key's socket
    gets a 401 error and is closed with 1008, and nothing of the message is stored."""
    monkeypatch.setattr(realtime, "RECHECK_S", 0.0)
    with client.websocket_connect(f"/api/v1/patients/{devices.patient}/stream", headers=_as(devices.own)) as ws:
        ws.receive_json()
        ws.send_text(orjson.dumps({"seq": 1, "samples": [hr(0)]}).decode())
        assert ws.receive_json()["accepted"] == 1
        with world.store.begin() as conn:
            (key,) = [k for k in accounts.list_api_keys(conn) if k.patient_id == devices.patient]
            accounts.revoke_api_key(conn, key.id)
        ws.send_text(orjson.dumps({"seq": 2, "samples": [hr(1)]}).decode())
        error = ws.receive_json()["error"]
        assert (error["status"], error["reason"]) == (401, "not-authenticated")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
    assert _count(world.store, devices.patient) == 1


# ------------------------------------------------------------------------------------------ real server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_uvicorn_server_http_batches_and_websocket(world: World, devices: Devices, tmp_path: Path) -> None:
    api_store = world.store
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=100_000)
    app = create_app(settings, store=api_store, keyring=world.keyring)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        with SampleClient(f"http://127.0.0.1:{port}", devices.own) as http:
            started = time.perf_counter()
            accepted = sum(http.post_samples(devices.patient, make_batch("heart_rate", T0 + timedelta(hours=k), 1_000))
                           ["accepted"] for k in range(5))
            elapsed = time.perf_counter() - started
            assert accepted == 5_000
            assert http.post_samples(devices.patient, make_batch("heart_rate", T0, 1_000))["duplicates"] == 1_000
        print(f"\nreal server: 5,000 samples in {elapsed:.2f} s ({5_000 / elapsed:,.0f} samples/s)")

        async def stream() -> list[dict[str, Any]]:
            async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/patients/{devices.patient}/stream") as ws:
                await ws.send(orjson.dumps({"token": devices.own}).decode())  # as a browser would
                replies = [orjson.loads(await ws.recv())]
                for seq in range(3):
                    await ws.send(orjson.dumps({"seq": seq, "samples": make_batch(
                        "glucose", T0 + timedelta(days=seq), 100, step_s=300, value=110)}).decode())
                    replies.append(orjson.loads(await ws.recv()))
                return replies

        replies = asyncio.run(stream())
        assert replies[0]["ready"] is True
        assert [(r["seq"], r["accepted"]) for r in replies[1:]] == [(0, 100), (1, 100), (2, 100)]
        assert _count(api_store, devices.patient) == 5_300
    finally:
        server.should_exit = True
        thread.join(timeout=20)
