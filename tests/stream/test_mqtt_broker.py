"""The MQTT entrance when the broker misbehaves: restarts mid-stream, and what its queue limits do to a
burst for a disconnected subscriber. Each test runs a mosquitto of its own (it stops or reconfigures it)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from medtwin.store.database import Store
from medtwin.stream.mqtt import MqttIngest, MqttPublisher, MqttSubscriber, sample_topic
from medtwin.stream.pipeline import IngestPipeline

sys.path.insert(0, str(Path(__file__).parent))
from mqtt_support import (  # noqa: E402
    LocalBroker,
    add_device,
    add_patient,
    free_port,
    medtwin_config,
    sample_counts,
    wait_for,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
STOCK = "allow_anonymous true\n"  # mosquitto's defaults: max_queued_messages 1000, no persistence


def payload(i: int) -> bytes:
    return orjson.dumps({"time": (T0 + timedelta(seconds=i)).isoformat(), "value": 60 + i % 50, "unit": "/min"})


@pytest.fixture
def patient_device(sqlite_store: Store) -> tuple[str, str]:
    add_patient(sqlite_store, "p-broker")
    return "p-broker", add_device(sqlite_store, "p-broker")


def _subscriber(store: Store, broker: LocalBroker) -> MqttSubscriber:
    return MqttSubscriber(MqttIngest(IngestPipeline(store)), broker_url=broker.url, client_id="medtwin-ingest")


@pytest.fixture
def medtwin_broker() -> Iterator[LocalBroker]:
    broker = LocalBroker(medtwin_config())
    yield broker
    broker.close()


def _burst_to_a_disconnected_session(store: Store, broker: LocalBroker, patient: str, device: str, n: int,
                                     restart_in_between: bool) -> int:
    """Create the subscriber's session, disconnect it, publish n QoS 1 messages (every one acknowledged by
    the broker), optionally restart the broker, reconnect: how many samples were stored?"""
    sub = _subscriber(store, broker)
    sub.start()
    assert sub.wait_connected(30)
    sub.stop()
    topic = sample_topic("medtwin", patient, device, "heart_rate")
    with MqttPublisher(broker.url) as pub:
        for i in range(n):
            pub.publish_raw(topic, payload(i))
        assert pub.wait_all(30), "the broker did not acknowledge every publish"
    if restart_in_between:
        broker.restart()
    sub = _subscriber(store, broker)
    sub.start()
    try:
        assert sub.wait_connected(30)
        # stock limits keep at most ~1000 of the n: no point waiting long for those
        wait_for(lambda: sample_counts(store)[0] >= n, 60 if restart_in_between else 2)
        settled: float = -1
        while settled != sub.stats["acked"]:  # nothing more arrives
            settled = sub.stats["acked"]
            time.sleep(0.5)
    finally:
        sub.stop()
    return sample_counts(store)[0]


def test_stock_limits_drop_a_burst_that_medtwin_conf_keeps(tmp_path: Path, patient_device: tuple[str, str]) -> None:
    n = 3000
    patient, device = patient_device
    stock = LocalBroker(STOCK)
    try:
        stock_store = Store(f"sqlite:///{tmp_path / 'stock.db'}")
        stock_store.migrate()
        add_patient(stock_store, patient)
        stock_device = add_device(stock_store, patient)
        stored_stock = _burst_to_a_disconnected_session(stock_store, stock, patient, stock_device, n, False)
        assert "Outgoing messages are being dropped" in stock.log()
    finally:
        stock.close()
    ours = LocalBroker(medtwin_config())
    try:
        ours_store = Store(f"sqlite:///{tmp_path / 'ours.db'}")
        ours_store.migrate()
        add_patient(ours_store, patient)
        ours_device = add_device(ours_store, patient)
        # and a broker restart between the burst and the reconnect: the queue is persisted
        stored_ours = _burst_to_a_disconnected_session(ours_store, ours, patient, ours_device, n, True)
        assert "dropped" not in ours.log()
    finally:
        ours.close()
    print(f"burst of {n} QoS 1 messages to a disconnected session: stock mosquitto delivered {stored_stock}, "
          f"medtwin.conf {stored_ours} (after a broker restart)")
    assert stored_stock <= 1000 + 20, f"stock mosquitto kept {stored_stock} of {n}"  # its queue + in-flight
    assert stored_ours == n
    assert sample_counts(ours_store) == (n, n)


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(sqlite_store: Store, medtwin_broker: LocalBroker,
                                                                patient_device: tuple[str, str]) -> None:
    """SIGTERM the broker while a QoS 1 publisher keeps publishing, start it again on the same port and
    data folder: both clients reconnect (the publisher resends what was not acknowledged) and every message
    is stored exactly once."""
    store, broker = sqlite_store, medtwin_broker
    patient, device = patient_device
    n = 3000
    topic = sample_topic("medtwin", patient, device, "heart_rate")
    sub = _subscriber(store, broker)
    sub.start()
    assert sub.wait_connected(30)
    published = [0]
    pub = MqttPublisher(broker.url, window=500).connect()
    restarting = threading.Event()

    def publish_all() -> None:
        for i in range(n):
            if i == n // 2:  # the second half goes out during and after the restart, however slow the test
                restarting.wait(60)
            pub.publish_raw(topic, payload(i))  # blocks while 500 are unacknowledged (broker down)
            published[0] = i + 1
            if i % 100 == 99:
                time.sleep(0.01)  # ~ a steady stream rather than one burst

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    try:
        # some stored before the restart (a loaded machine may store the first batch late)
        assert wait_for(lambda: published[0] >= 800 and sample_counts(store)[0] > 0, 30)
        stored_before = sample_counts(store)[0]
        restarting.set()
        broker.restart()
        restarted_at = published[0]
        publisher.join(60)
        assert not publisher.is_alive()
        assert pub.wait_all(30), "the publisher's messages were never all acknowledged"
        assert wait_for(lambda: sample_counts(store)[0] >= n, 60), (sub.stats, sample_counts(store))
        time.sleep(0.3)  # a late redelivery would show up as an extra row (it must not)
    finally:
        pub.close()
        sub.stop()
    assert 0 < stored_before < n and restarted_at < n, "the restart was not mid-stream"
    assert sample_counts(store) == (n, n)
    assert sub.stats["connects"] >= 2 and pub.connects >= 2


def test_a_subscriber_started_before_the_broker_connects_when_it_comes_up(
        sqlite_store: Store, patient_device: tuple[str, str]) -> None:
    """`medtwin serve` must not need the broker at start (nor die when it is late): it keeps trying."""
    patient, device = patient_device
    port = free_port()
    sub = MqttSubscriber(MqttIngest(IngestPipeline(sqlite_store)), broker_url=f"mqtt://127.0.0.1:{port}",
                         client_id="medtwin-ingest")
    sub.start()
    broker = None
    try:
        assert not sub.wait_connected(1.5)
        broker = LocalBroker(medtwin_config(), port=port)
        assert sub.wait_connected(40), "the subscriber never connected to the late broker"
        with MqttPublisher(broker.url) as pub:
            pub.publish_raw(sample_topic("medtwin", patient, device, "heart_rate"), payload(1))
            assert pub.wait_all(30)
        assert wait_for(lambda: sample_counts(sqlite_store)[0] == 1, 30)
    finally:
        sub.stop()
        if broker is not None:
            broker.close()
