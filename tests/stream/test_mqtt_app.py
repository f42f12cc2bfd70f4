"""`medtwin serve` with MEDTWIN_MQTT_ENABLED: the app's lifespan runs the subscriber on the app's pipeline."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.stream.model import Sample
from medtwin.stream.mqtt import MqttPublisher, drop_session

sys.path.insert(0, str(Path(__file__).parent))
from mqtt_support import add_device, add_patient, sample_counts, shared_broker_url, wait_for  # noqa: E402


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
            subscriber = app.state.mqtt
            assert subscriber is not None and subscriber.wait_connected(10)
            app.state.ingest.add_listener(seen.extend)  # what the alert engine and the hub get
            with MqttPublisher(broker, topic_prefix=prefix) as pub:
                for i in range(50):
                    pub.publish("app-p", device, "spo2",
                                {"time": f"2026-04-01T10:{i:02d}:00+02:00", "value": 97 - i % 5, "unit": "%"})
                assert pub.wait_all(10)
            assert wait_for(lambda: sample_counts(app_store)[0] == 50, 20)
        # leaving the app stopped the subscriber after storing and acknowledging everything it had received
        assert subscriber.stats.received == subscriber.stats.acked == 50
        assert not subscriber.connected
    finally:
        drop_session(broker, f"{prefix}-ingest")
    assert len(seen) == 50 and {s.source for s in seen} == {"mqtt"}
    assert seen[0].time.isoformat() == "2026-04-01T08:00:00+00:00"


def test_serve_without_mqtt_enabled_starts_no_subscriber(app_store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), store=app_store, keyring=keyring)
    with TestClient(app):
        assert app.state.mqtt is None
    assert Settings().mqtt_enabled is False  # off unless asked for
