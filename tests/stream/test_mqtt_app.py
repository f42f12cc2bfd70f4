"""`medtwin serve` with MEDTWIN_MQTT_ENABLED: the app's lifespan runs the subscriber on the app's pipeline."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medtwin.api.app import create_app
from medtwin.api.services import services_of
from medtwin.config import Settings
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.schema import samples
from medtwin.stream.mqtt import MqttIngest, MqttPublisher, drop_session
from medtwin.vocab import Sample

sys.path.insert(0, str(Path(__file__).parent))
from mqtt_support import (  # noqa: E402
    add_device,
    add_device_key,
    add_patient,
    sample_counts,
    shared_broker_url,
    wait_for,
)


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def app_store(tmp_path: Path, keyring: KeyRing) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'app.db'}", AesGcmCodec(keyring))
    store.migrate()
    yield store
    store.dispose()


def test_serve_runs_the_subscriber_when_enabled(app_store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    broker = shared_broker_url()
    prefix = f"app{uuid.uuid4().hex[:8]}"
    add_patient(app_store, "app-p")
    device = add_device(app_store, "app-p")
    settings = Settings(data_dir=tmp_path, broker_url=broker, mqtt_enabled=True, mqtt_topic_prefix=prefix,
                        mqtt_client_id=f"{prefix}-ingest")
    app = create_app(settings, store=app_store, keyring=keyring)
    seen: list[Sample] = []
    try:
        with TestClient(app):
            subscriber = services_of(app).mqtt
            assert subscriber is not None and subscriber.wait_connected(30)
            services_of(app).ingest.add_listener(seen.extend)  # what the alert engine and the hub get
            with MqttPublisher(broker, topic_prefix=prefix) as pub:
                for i in range(50):
                    pub.publish("app-p", device, "spo2",
                                {"time": f"2026-04-01T10:{i:02d}:00+02:00", "value": 97 - i % 5, "unit": "%"})
                assert pub.wait_all(30)
            assert wait_for(lambda: sample_counts(app_store)[0] == 50, 30)
        # leaving the app stopped the subscriber after storing and acknowledging everything it had received
        assert subscriber.stats["received"] == subscriber.stats["acked"] == 50
        assert not subscriber.connected
    finally:
        drop_session(broker, f"{prefix}-ingest")
    assert len(seen) == 50 and {s.source for s in seen} == {"mqtt"}
    assert seen[0].time.isoformat() == "2026-04-01T08:00:00+00:00"


def test_serve_without_mqtt_enabled_starts_no_subscriber(app_store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), store=app_store, keyring=keyring)
    with TestClient(app):
        assert services_of(app).mqtt is None
    assert Settings().mqtt_enabled is False  # off unless asked for


def test_a_sample_sent_over_http_and_mqtt_is_stored_once(app_store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    """The same device key over both entrances: same stored device (the key's name), same idempotency
    keys, same canonical values, same rate bucket. MQTT stores most batches without a pipeline call per
    device, so this pins it to what the pipeline does."""
    broker = shared_broker_url()
    prefix = f"app{uuid.uuid4().hex[:8]}"
    add_patient(app_store, "both-p")
    key_id, token = add_device_key(app_store, "both-p", keyring.index_key, "libre")
    settings = Settings(data_dir=tmp_path, broker_url=broker, mqtt_enabled=True, mqtt_topic_prefix=prefix,
                        mqtt_client_id=f"{prefix}-ingest", device_samples_per_minute=5)
    by_id = {"time": "2026-03-01T09:00:00.5+01:00", "value": 7.2, "unit": "mmol/L", "id": "reading-17"}
    by_time = {"time": "2026-03-01T08:05:00Z", "value": 130, "unit": "mg/dL"}
    app = create_app(settings, store=app_store, keyring=keyring)
    try:
        with TestClient(app) as client:
            response = client.post("/api/v1/patients/both-p/samples", headers={"Authorization": f"Bearer {token}"},
                                   json=[{**by_id, "metric": "glucose"}, {**by_time, "metric": "glucose"}])
            assert response.status_code == 200 and response.json()["accepted"] == 2, response.text
            subscriber = services_of(app).mqtt
            assert subscriber is not None and subscriber.wait_connected(30)
            with MqttPublisher(broker, topic_prefix=prefix) as pub:
                pub.publish("both-p", key_id, "glucose", [by_id, by_time, {**by_time, "time": "2026-03-01T08:10:00Z"}])
                pub.publish("both-p", key_id, "glucose", {**by_time, "time": "2026-03-01T08:15:00Z"})  # 6th: over
                assert pub.wait_all(30)
            assert wait_for(lambda: subscriber.stats["acked"] == 2, 30)
            ingest = subscriber.handler
            assert isinstance(ingest, MqttIngest)
    finally:
        drop_session(broker, f"{prefix}-ingest")
    assert (ingest.stats["accepted"], ingest.stats["duplicates"]) == (1, 2)
    assert ingest.quarantined_by_reason() == {"rate-limit": 1}  # the bucket of 5 is the key's, both ways
    with app_store.connect() as connection:
        rows = connection.execute(select(samples.c.idempotency_key, samples.c.value, samples.c.device,
                                         samples.c.source).order_by(samples.c.time)).all()
    assert [(r.idempotency_key, r.device, r.source) for r in rows] == [
        ("both-p|libre|id:reading-17", "libre", "http"),
        ("both-p|libre|glucose|2026-03-01T08:05:00.000000Z", "libre", "http"),
        ("both-p|libre|glucose|2026-03-01T08:10:00.000000Z", "libre", "mqtt")]
    assert rows[0].value == pytest.approx(7.2 * 18.0156)
