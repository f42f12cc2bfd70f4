"""Equipment telemetry into the live equipment twin: health and remaining life on generated run-to-failure
telemetry with known failure times, units converted, bad samples refused naming the field; over HTTP and
MQTT (the ingest's subscriber, real broker); maintenance alerts from the ``equipment-maintenance`` plug-in
rule through the alert engine; predicted downtime as the model's capacity outages."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from medtwin.alerts import registry
from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.hospital.equipment import EquipmentInputError, generate_fleet
from medtwin.hospital.equipment_ingest import equipment_topic, readings_from_payload
from medtwin.hospital.equipment_live import EquipmentTwin, load_assets
from medtwin.hospital.model import demo_model
from medtwin.hospital.whatif import Scenario
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PW = "a long enough password"


def run_to_failure(share: float, seed: int = 5) -> tuple[list[tuple[str, datetime, float, str]], float, float]:
    """A ventilator's flow-sensor offset (threshold 2 L/min) up to ``share`` of its life; (readings, true
    remaining life in hours, the time of the last sample in hours)."""
    fail, series = generate_fleet(1, np.random.default_rng(seed), threshold=2.0, noise_sd=0.05, sample_every_h=12.0)
    t, y = series[0]
    keep = t <= share * fail[0]
    rows = [("flow_sensor_offset", T0 + timedelta(hours=float(h)), float(v), "L/min") for h, v in zip(t[keep], y[keep],
                                                                                                    strict=True)]
    return rows, float(fail[0] - t[keep][-1]), float(t[keep][-1])


def test_remaining_life_on_run_to_failure_telemetry() -> None:
    errors = []
    for seed in range(8):
        rows, true_rul, _ = run_to_failure(0.6, seed)
        twin = EquipmentTwin(load_assets(), lambda: T0)
        assert twin.ingest("vent-1", rows, "test") == len(rows)
        row = next(d for d in twin.status()["devices"] if d["device"] == "vent-1")
        errors.append(row["rul_h"] - true_rul)
        assert 0 < row["health"] < 1
    rmse = float(np.sqrt(np.mean(np.square(errors))))
    print(f"equipment twin RUL RMSE at 60 % of life, 8 ventilators: {rmse:.0f} h")
    assert rmse < 200  # lives are ~2,000 h; the Weibull population median alone is off by ~600 h here


def test_units_converted_duplicates_once_and_too_few_is_not_callable() -> None:
    rows, _, _ = run_to_failure(0.6)
    twin = EquipmentTwin(load_assets(), lambda: T0)
    twin.ingest("vent-1", rows, "test")
    other = EquipmentTwin(load_assets(), lambda: T0)
    other.ingest("vent-1", [(m, t, v * 1000, "mL/min") for m, t, v, _ in rows], "test")
    a, b = (next(d for d in x.status()["devices"] if d["device"] == "vent-1") for x in (twin, other))
    assert a["rul_h"] == pytest.approx(b["rul_h"], rel=1e-6)
    assert twin.ingest("vent-1", rows[:5], "test") == 0  # the same (asset, time) again: kept once
    assert next(d for d in twin.status()["devices"] if d["device"] == "ct-1")["status"] == "unknown"
    with pytest.raises(EquipmentInputError) as bad:
        twin.ingest("vent-1", [("occlusion_baseline", T0, 1.0, "mm[Hg]")], "test")
    assert bad.value.field == "[0].metric"
    with pytest.raises(EquipmentInputError) as bad:
        twin.ingest("vent-1", [("flow_sensor_offset", T0, 1.0, "kg")], "test")
    assert bad.value.field == "[0].unit"
    with pytest.raises(EquipmentInputError) as bad:
        readings_from_payload(b'[{"metric": "flow_sensor_offset", "value": 1, "unit": "L/min", "time": "yesterday"}]')
    assert bad.value.field.startswith("[0]")


def test_predicted_downtime_becomes_capacity_outages() -> None:
    rows, true_rul, _ = run_to_failure(0.99)
    twin = EquipmentTwin(load_assets(), lambda: T0)
    twin.ingest("vent-2", rows, "test")
    status = twin.status()
    row = next(d for d in status["devices"] if d["device"] == "vent-2")
    assert row["status"] == "urgent" and row["rul_h"] < 48
    (outage,) = status["outages"]
    assert outage == {"unit": "icu", "start_h": row["rul_h"], "duration_h": 12.0, "beds": 1}
    model = demo_model()
    scenario = Scenario(name="equipment", outages=status["outages"])
    ((unit, start, end, beds),) = scenario.outage_tuples(model)
    assert model.units[unit].name == "icu" and end - start == 12.0 and beds == 1


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TestClient]:
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp_path / 'e.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as conn:
        for role in ("admin", "operations", "integration"):
            accounts.create_user(conn, role, PW, role)
    broker = os.environ.get("MEDTWIN_TEST_MQTT_URL")
    extra = {"mqtt_enabled": True, "broker_url": broker, "mqtt_client_id": f"t-{uuid.uuid4().hex[:8]}",
             "mqtt_topic_prefix": f"t{uuid.uuid4().hex[:8]}"} if broker else {}
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=100_000, **extra)  # type: ignore[arg-type]
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        yield client
    store.dispose()


def _token(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": user, "password": PW})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.slow
def test_http_telemetry_status_and_maintenance_alert(app: TestClient) -> None:
    assert "equipment-maintenance" in registry.rule_names()  # the entry point
    rows, _, _ = run_to_failure(0.99)
    body = orjson.dumps([{"metric": m, "time": t.isoformat(), "value": v, "unit": u} for m, t, v, u in rows])
    r = app.post("/api/v1/hospital/equipment/vent-1/samples", content=body, headers=_token(app, "admin"))
    assert r.status_code == 200 and r.json()["accepted"] == len(rows), r.text
    ops = _token(app, "operations")
    for role in (ops, _token(app, "integration")):
        assert app.post("/api/v1/hospital/equipment/vent-1/samples", content=body, headers=role).status_code == 403
    bad = app.post("/api/v1/hospital/equipment/vent-1/samples", headers=_token(app, "admin"),
                   content=b'[{"metric": "flow_sensor_offset", "time": "2026-01-01T00:00:00Z", "value": 1, "unit": "kg"}]')
    assert bad.status_code == 422 and bad.json()["field"] == "[0].unit"
    assert app.post("/api/v1/hospital/equipment/mri-9/samples", content=body,
                    headers=_token(app, "admin")).status_code == 404
    status = app.get("/api/v1/hospital/equipment", headers=ops).json()
    vent = next(d for d in status["devices"] if d["device"] == "vent-1")
    assert vent["status"] == "urgent" and status["outages"][0]["unit"] == "icu"
    app.app.state.services.alerts.flush()  # type: ignore[attr-defined]
    alerts = app.get("/api/v1/alerts", headers=_token(app, "admin"), params={"status": "open"}).json()
    items = alerts.get("items", alerts) if isinstance(alerts, dict) else alerts
    mine = [a for a in items if a["rule"] == "equipment-maintenance"]
    assert len(mine) == 1 and mine[0]["severity"] == "high" and "vent-1" in mine[0]["message"], alerts


@pytest.mark.slow
def test_mqtt_telemetry_through_the_ingest_subscriber(app: TestClient) -> None:
    broker = os.environ.get("MEDTWIN_TEST_MQTT_URL")
    if not broker:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("MEDTWIN_TEST_MQTT_URL is required in CI")
        pytest.skip("no MQTT broker (MEDTWIN_TEST_MQTT_URL)")
    from medtwin.stream.mqtt import MqttPublisher, MqttSubscriber

    services = app.app.state.services  # type: ignore[attr-defined]
    # The subscriber connects in the background at startup: messages published before it has subscribed
    # have no session on the broker to wait in (QoS 1 keeps them only for a known session).
    subscriber = next(x for x in services.listeners if isinstance(x, MqttSubscriber)
                      and x.topic_prefix.endswith("-equipment"))
    assert subscriber.wait_connected(20), "the equipment subscriber did not connect and subscribe"
    prefix = services.settings.mqtt_topic_prefix
    rows, _, _ = run_to_failure(0.6)
    publisher = MqttPublisher(broker).connect()
    try:
        for _, t, v, _ in rows:
            publisher.publish_raw(equipment_topic(prefix, "ventilator", "vent-2", "flow_sensor_offset"),
                                  orjson.dumps({"time": t.isoformat(), "value": v, "unit": "L/min"}))
        publisher.publish_raw(equipment_topic(prefix, "ventilator", "ct-1", "flow_sensor_offset"), b"{}")
        assert publisher.wait_all(30)
    finally:
        publisher.close()
    twin = services.hospital.equipment
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = next(d for d in twin.status()["devices"] if d["device"] == "vent-2")
        if row["samples"] == len(rows) and twin.quarantine:
            break
        time.sleep(0.1)
    assert row["samples"] == len(rows) and row["status"] in ("ok", "plan")
    assert twin.quarantine[-1]["field"] == "topic"  # ct-1 is a CT scanner, not a ventilator
