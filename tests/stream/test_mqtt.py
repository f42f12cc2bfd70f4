"""The MQTT entrance against the real broker (scripts/services.sh: MEDTWIN_TEST_MQTT_URL, medtwin.conf).

Each test uses its own topic prefix and client ids, and deletes its persistent sessions afterwards."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import event, select

from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.live_tables import quarantine
from medtwin.store.samples import SampleRepository
from medtwin.store.schema import samples
from medtwin.stream.mqtt import (
    InboundMessage,
    MqttConfigError,
    MqttIngest,
    MqttPublisher,
    MqttSubscriber,
    drop_session,
    parse_broker_url,
    sample_topic,
)
from medtwin.stream.pipeline import IngestPipeline
from medtwin.stream.ratelimit import TokenBucketLimiter
from medtwin.vocab import Sample

sys.path.insert(0, str(Path(__file__).parent))
from mqtt_support import (  # noqa: E402
    add_device,
    add_patient,
    quarantine_reasons,
    revoke_device,
    sample_counts,
    shared_broker_url,
    wait_for,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def hr(i: int, *, sample_id: str | None = None, part: int = 0) -> dict[str, object]:
    """Heart-rate sample ``i`` (10 s apart; ``part`` 0-9 for further samples within those 10 s)."""
    sample: dict[str, object] = {"time": (T0 + timedelta(seconds=10 * i + part)).isoformat(),
                                 "value": 60 + i % 40, "unit": "/min"}
    if sample_id is not None:
        sample["id"] = sample_id
    return sample


@pytest.fixture
def broker() -> str:
    return shared_broker_url()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sessions(broker: str) -> Iterator[list[str]]:
    """Client ids of persistent sessions the test created: deleted from the shared broker afterwards."""
    created: list[str] = []
    yield created
    for client_id in created:
        drop_session(broker, client_id)


@contextmanager
def subscriber(handler: object, broker: str, prefix: str, sessions: list[str], client_id: str | None = None,
               **options: object) -> Iterator[MqttSubscriber]:
    client_id = client_id or f"{prefix}-ingest"
    if client_id not in sessions:
        sessions.append(client_id)
    sub = MqttSubscriber(handler, broker_url=broker, client_id=client_id, topic_prefix=prefix,  # type: ignore[arg-type]
                         **options)  # type: ignore[arg-type]
    sub.start()
    try:
        assert sub.wait_connected(30), "the subscriber did not connect and subscribe"
        yield sub
    finally:
        sub.stop()


def test_broker_url_and_topic_checks() -> None:
    address = parse_broker_url("mqtt://u%40x:p%3Aw@broker.example:1884")
    assert (address.username, address.password, address.port, address.tls) == ("u@x", "p:w", 1884, False)
    address = parse_broker_url("mqtts://dev:s3cret@broker.example")
    assert (address.host, address.port, address.tls, address.username, address.password) == \
        ("broker.example", 8883, True, "dev", "s3cret")
    assert "s3cret" not in repr(address) and "dev" in repr(address)  # the password stays out of logs
    assert parse_broker_url("mqtt://127.0.0.1").port == 1883
    with pytest.raises(MqttConfigError, match="broker_url"):
        parse_broker_url("http://127.0.0.1:1883")
    with pytest.raises(MqttConfigError, match="device"):
        sample_topic("medtwin", "p1", "a/b", "glucose")
    with pytest.raises(MqttConfigError, match="metric"):
        sample_topic("medtwin", "p1", "d1", "#")
    assert sample_topic("medtwin", "p1", "d1", "glucose") == "medtwin/p1/d1/glucose"


def test_qos1_messages_stored_exactly_once(store: Store, broker: str, prefix: str, sessions: list[str]) -> None:
    """On SQLite and PostgreSQL (the ``store`` fixture)."""
    patients = [f"{prefix}-p{i}" for i in range(4)]
    devices = {}
    for patient in patients:
        add_patient(store, patient)
        devices[patient] = add_device(store, patient)
    pipeline = IngestPipeline(store)
    notified: list[str] = []
    uncommitted: list[str] = []

    def listener(batch: list[Sample]) -> None:  # as the alert engine and the event hub are told
        notified.extend(s.idempotency_key for s in batch)
        with store.connect() as connection:  # another connection sees them: committed before the call
            found = {k for (k,) in connection.execute(select(samples.c.idempotency_key).where(
                samples.c.idempotency_key.in_([s.idempotency_key for s in batch])))}
        uncommitted.extend(s.idempotency_key for s in batch if s.idempotency_key not in found)

    pipeline.add_listener(listener)
    ingest = MqttIngest(pipeline, topic_prefix=prefix)
    n_messages = 1200
    expected_samples = 0
    with subscriber(ingest, broker, prefix, sessions) as sub, MqttPublisher(broker, topic_prefix=prefix) as pub:
        for i in range(n_messages):
            patient = patients[i % len(patients)]
            if i % 10 == 0:  # every tenth message carries three samples
                pub.publish(patient, devices[patient], "heart_rate", [hr(i, part=m) for m in range(3)])
                expected_samples += 3
            else:
                pub.publish(patient, devices[patient], "heart_rate", hr(i))
                expected_samples += 1
        pub.publish(patients[0], devices[patients[0]], "glucose",
                    {"time": T0.isoformat(), "value": 5.5, "unit": "mmol/L"})
        expected_samples += 1
        assert pub.wait_all(30), "the broker did not acknowledge every publish"
        assert wait_for(lambda: sub.stats["acked"] == n_messages + 1, 30), sub.stats
    assert sample_counts(store) == (expected_samples, expected_samples)
    assert ingest.stats["accepted"] == expected_samples and ingest.stats["duplicates"] == 0
    assert len(notified) == len(set(notified)) == expected_samples and uncommitted == []
    assert sub.stats["handler_errors"] == 0 and sub.stats["stale_acks_skipped"] == 0
    assert sub.stats["batches"] < n_messages / 5, "messages were not batched"
    with store.connect() as connection:
        glucose = SampleRepository(connection).latest(patients[0], ["glucose"])["glucose"]
    assert glucose.value == pytest.approx(5.5 * 180.156 / 10, rel=1e-6)  # mg/dL
    assert (glucose.original_value, glucose.original_unit, glucose.source, glucose.device) == \
        (5.5, "mmol/L", "mqtt", "cgm")  # stored under the key's name, as over HTTP


def test_device_retries_and_broker_redeliveries_are_stored_once(sqlite_store: Store, broker: str, prefix: str,
                                                                sessions: list[str]) -> None:
    store = sqlite_store
    patient = f"{prefix}-p"
    add_patient(store, patient)
    device = add_device(store, patient)
    ingest = MqttIngest(IngestPipeline(store), topic_prefix=prefix)
    client_id = f"{prefix}-ingest"
    topic = sample_topic(prefix, patient, device, "heart_rate")

    # 1. A subscriber that commits and then "crashes" before acknowledging: a raw paho client on the same
    #    persistent session, manual acks that it never sends.
    received: list[InboundMessage] = []
    subscribed, got_all = threading.Event(), threading.Event()
    crashed = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True)
    sessions.append(client_id)
    crashed.on_connect = lambda c, *_: c.subscribe(f"{prefix}/+/+/+", qos=1)
    crashed.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        received.append(InboundMessage(message.topic, bytes(message.payload), message.mid, message.qos,
                                       bool(message.dup), 1, time.monotonic()))
        if len(received) == 50:
            got_all.set()

    crashed.on_message = on_message
    address = parse_broker_url(broker)
    crashed.connect(address.host, address.port)
    crashed.loop_start()
    assert subscribed.wait(30)
    with MqttPublisher(broker, topic_prefix=prefix) as pub:
        for i in range(50):
            pub.publish_raw(topic, orjson.dumps(hr(i, sample_id=f"s{i}")))
        assert pub.wait_all(30)
        assert got_all.wait(30)
        ingest(received)  # committed ...
        crashed.disconnect()  # ... but never acknowledged
        crashed.loop_stop()
        assert sample_counts(store) == (50, 50)

        # 2. The device retries 20 of them (same ids, new messages) and sends 10 new ones.
        for i in range(30, 60):
            pub.publish_raw(topic, orjson.dumps(hr(i, sample_id=f"s{i}")))
        assert pub.wait_all(30)

    # 3. The real subscriber takes over the session: the broker redelivers the 50 unacknowledged messages
    #    (DUP set), then the 30 new ones.
    redelivered: list[bool] = []

    def counting(batch: list[InboundMessage]) -> None:
        redelivered.extend(m.dup for m in batch)
        ingest(batch)

    with subscriber(counting, broker, prefix, sessions, client_id=client_id) as sub:
        assert wait_for(lambda: sub.stats["acked"] == 80, 30), sub.stats
    assert sum(redelivered) == 50, "the broker should have redelivered every unacknowledged message"
    assert sample_counts(store) == (60, 60)
    assert ingest.stats["accepted"] == 60 and ingest.stats["duplicates"] == 70  # 50 redelivered + 20 retried


def test_out_of_order_samples_are_all_stored_in_time_order(sqlite_store: Store, broker: str, prefix: str,
                                                           sessions: list[str]) -> None:
    store = sqlite_store
    patient = f"{prefix}-p"
    add_patient(store, patient)
    device = add_device(store, patient)
    ingest = MqttIngest(IngestPipeline(store), topic_prefix=prefix)
    order = [7, 3, 9, 0, 5, 1, 8, 2, 6, 4]
    with subscriber(ingest, broker, prefix, sessions) as sub, MqttPublisher(broker, topic_prefix=prefix) as pub:
        for i in order:
            pub.publish(patient, device, "glucose", {"time": (T0 + timedelta(minutes=5 * i)).isoformat(),
                                                     "value": 100 + i, "unit": "mg/dL"})
        assert pub.wait_all(30)
        assert wait_for(lambda: sub.stats["acked"] == len(order), 30), sub.stats
    with store.connect() as connection:
        arrival = [row[0] for row in connection.execute(select(samples.c.value).order_by(samples.c.pk))]
        series = SampleRepository(connection).series(patient, "glucose")
    assert arrival == [100.0 + i for i in order]  # stored as they came ...
    assert series.values == [100.0 + i for i in range(10)]  # ... and read back in time order
    assert series.times == [T0 + timedelta(minutes=5 * i) for i in range(10)]


@pytest.fixture
def sealed_store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store that seals PHI columns with AES-GCM, as `medtwin serve` does."""
    instance = Store(f"sqlite:///{tmp_path / 'sealed.db'}", AesGcmCodec(KeyRing.generate()))
    instance.migrate()
    yield instance
    instance.dispose()


def test_bad_messages_are_quarantined_with_a_reason_and_acknowledged(sealed_store: Store, broker: str,
                                                                      prefix: str, sessions: list[str]) -> None:
    store = sealed_store
    patient, other = f"{prefix}-p", f"{prefix}-q"
    add_patient(store, patient)
    add_patient(store, other)
    device = add_device(store, patient)
    others_device = add_device(store, other)
    revoked = add_device(store, patient, "old cgm")
    revoke_device(store, revoked)
    ghost_patient_device = add_device(store, f"{prefix}-nobody")  # a key for a patient with no record
    ingest = MqttIngest(IngestPipeline(store), topic_prefix=prefix)
    good = orjson.dumps(hr(1))
    messages = [
        (sample_topic(prefix, patient, device, "heart_rate"), b"{not json"),  # malformed
        (sample_topic(prefix, patient, device, "heart_rate"), b"{not json"),  # redelivered: quarantined once
        (sample_topic(prefix, patient, device, "heart_rate"), b'"a string"'),  # malformed (shape)
        (sample_topic(prefix, patient, "nosuchdevice", "heart_rate"), good),  # unknown-device
        (sample_topic(prefix, patient, revoked, "heart_rate"), good),  # revoked-device
        (sample_topic(prefix, patient, others_device, "heart_rate"), good),  # device-patient-mismatch
        (sample_topic(prefix, f"{prefix}-nobody", ghost_patient_device, "heart_rate"), good),  # unknown-patient
        (sample_topic(prefix, patient, device, "heart_rate"),
         orjson.dumps({"metric": "glucose", **hr(2)})),  # topic-mismatch
        (f"{prefix}/{patient}//heart_rate", good),  # topic (empty device level)
        (sample_topic(prefix, patient, device, "heart_rate"),  # one good, one wrong unit, one impossible
         orjson.dumps([hr(3), {**hr(4), "unit": "mg/dL"}, {**hr(5), "value": 900}])),
        (sample_topic(prefix, patient, device, "no_such_metric"), good),  # unknown-metric (pipeline)
    ]
    with subscriber(ingest, broker, prefix, sessions) as sub, MqttPublisher(broker, topic_prefix=prefix) as pub:
        for topic, payload in messages:
            pub.publish_raw(topic, payload)
        assert pub.wait_all(30)
        assert wait_for(lambda: sub.stats["acked"] == len(messages), 30), sub.stats  # every one acknowledged
    assert sample_counts(store) == (1, 1)
    assert quarantine_reasons(store) == {
        "malformed": 2, "unknown-device": 1, "revoked-device": 1, "device-patient-mismatch": 1,
        "unknown-patient": 1, "topic-mismatch": 1, "topic": 1, "unit": 1, "out-of-range": 1,
        "unknown-metric": 1}
    with store.connect() as connection:
        rows = {r.reason: r for r in connection.execute(select(quarantine))}
    unknown = rows["unknown-device"]
    assert (unknown.patient_id, unknown.device, unknown.metric, unknown.source, unknown.field) == \
        (patient, "nosuchdevice", "heart_rate", "mqtt", "topic")
    assert b"heart_rate" not in unknown.payload  # sealed at rest
    kept = orjson.loads(store.codec.open(unknown.payload))
    assert kept == {"topic": sample_topic(prefix, patient, "nosuchdevice", "heart_rate"),
                    "payload": good.decode()}
    assert rows["unit"].field == "[1].unit" and rows["out-of-range"].field == "[2].value"


def test_rate_limited_messages_are_quarantined_not_lost(sqlite_store: Store, broker: str, prefix: str,
                                                         sessions: list[str]) -> None:
    store = sqlite_store
    patient = f"{prefix}-p"
    add_patient(store, patient)
    device = add_device(store, patient)
    frozen = [0.0]  # the limiter's clock does not move: exactly its burst of 60 samples fits
    ingest = MqttIngest(IngestPipeline(store, rate_limiter=TokenBucketLimiter(60, monotonic=lambda: frozen[0])),
                        topic_prefix=prefix)
    with subscriber(ingest, broker, prefix, sessions) as sub, MqttPublisher(broker, topic_prefix=prefix) as pub:
        for i in range(100):
            pub.publish(patient, device, "heart_rate", hr(i))
        pub.publish(patient, device, "heart_rate", [hr(1000 + i) for i in range(61)])  # > a minute's worth
        assert pub.wait_all(30)
        assert wait_for(lambda: sub.stats["acked"] == 101, 30), sub.stats
    stored, _ = sample_counts(store)
    reasons = quarantine_reasons(store)
    assert stored == 60
    assert reasons == {"rate-limit": 40, "too-large": 1}
    assert ingest.quarantined_by_reason() == {"rate-limit": 40, "too-large": 1}


def test_messages_published_while_the_subscriber_is_stopped_wait_in_its_session(
        sqlite_store: Store, broker: str, prefix: str, sessions: list[str]) -> None:
    store = sqlite_store
    patient = f"{prefix}-p"
    add_patient(store, patient)
    device = add_device(store, patient)
    ingest = MqttIngest(IngestPipeline(store), topic_prefix=prefix)
    with MqttPublisher(broker, topic_prefix=prefix) as pub:
        with subscriber(ingest, broker, prefix, sessions) as sub:
            for i in range(200):
                pub.publish(patient, device, "heart_rate", hr(i))
            assert pub.wait_all(30)
        # stop() stored and acknowledged everything it had received
        assert sub.stats["acked"] == sub.stats["received"]
        for i in range(200, 1700):  # more than stock mosquitto would queue (1000)
            pub.publish(patient, device, "heart_rate", hr(i))
        assert pub.wait_all(30)
    assert sample_counts(store)[0] == sub.stats["received"]
    with subscriber(ingest, broker, prefix, sessions) as again:
        assert wait_for(lambda: sample_counts(store)[0] == 1700, 30), (again.stats, sample_counts(store))
    assert sample_counts(store) == (1700, 1700)


def test_a_failing_store_acknowledges_nothing_and_is_retried(sqlite_store: Store, broker: str, prefix: str,
                                                             sessions: list[str]) -> None:
    """A handler that raises (the database is unreachable) must not let anything be acknowledged; the
    subscriber retries the same batch until it commits."""
    store = sqlite_store
    patient = f"{prefix}-p"
    add_patient(store, patient)
    device = add_device(store, patient)
    ingest = MqttIngest(IngestPipeline(store), topic_prefix=prefix)
    failures = [3]
    acked_while_failing: list[float] = []

    def database_down_three_times(batch: list[InboundMessage]) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            acked_while_failing.append(sub.stats["acked"])
            raise ConnectionError("database unreachable")
        ingest(batch)

    with subscriber(database_down_three_times, broker, prefix, sessions) as sub, \
            MqttPublisher(broker, topic_prefix=prefix) as pub:
        for i in range(20):
            pub.publish(patient, device, "heart_rate", hr(i))
        assert pub.wait_all(30)
        assert wait_for(lambda: sub.stats["acked"] == 20, 30), sub.stats
    assert sub.stats["handler_errors"] == 3
    assert acked_while_failing == [0, 0, 0]
    assert sample_counts(store) == (20, 20)


def test_a_revoked_device_key_is_refused_within_the_registry_ttl(sqlite_store: Store) -> None:
    store = sqlite_store
    add_patient(store, "p-rev")
    device = add_device(store, "p-rev")
    clock = [100.0]
    ingest = MqttIngest(IngestPipeline(store), registry_ttl=2.0, monotonic=lambda: clock[0])
    topic = sample_topic("medtwin", "p-rev", device, "heart_rate")

    def message(i: int) -> InboundMessage:
        return InboundMessage(topic, orjson.dumps(hr(i)), i, 1, False, 1, 0.0)

    ingest([message(1)])
    revoke_device(store, device)
    clock[0] += 1.0
    ingest([message(2)])  # the registry entry is 1 s old: still the cached (active) key
    clock[0] += 1.5
    ingest([message(3)])  # 2.5 s: read again, revoked
    assert sample_counts(store) == (2, 2)
    assert quarantine_reasons(store) == {"revoked-device": 1}


def test_a_batch_is_one_transaction_through_the_pipelines_own_checks(sqlite_store: Store) -> None:
    """Two patients, a bad value, a value conflicting with one stored over HTTP and an unknown device in one
    batch: one commit; the sample-level reasons are the pipeline's own (as over HTTP); the listeners hear of
    each (patient, device) after that commit."""
    store = sqlite_store
    add_patient(store, "p-a")
    add_patient(store, "p-b")
    dev_a, dev_b = add_device(store, "p-a"), add_device(store, "p-b")
    pipeline = IngestPipeline(store)
    http = pipeline.ingest([{**hr(0), "metric": "heart_rate"}], patient_id="p-a", device="cgm", source="http")
    assert http.accepted == 1
    commits = [0]
    event.listen(store.engine, "commit", lambda _connection: commits.__setitem__(0, commits[0] + 1))
    heard: list[tuple[str, int, int]] = []
    pipeline.add_listener(lambda stored: heard.append((stored[0].patient_id, len(stored), commits[0])))

    def message(device: str, patient: str, payload: object, mid: int) -> InboundMessage:
        return InboundMessage(sample_topic("medtwin", patient, device, "heart_rate"), orjson.dumps(payload), mid, 1,
                              False, 1, 0.0)

    ingest = MqttIngest(pipeline)
    ingest([message(dev_a, "p-a", [hr(1), {**hr(0), "value": 99}], 1),
            message(dev_b, "p-b", [hr(1), {**hr(2), "value": -5}], 2),
            message("no-such-key", "p-a", hr(3), 3)])
    assert commits[0] == 1
    assert quarantine_reasons(store) == {"conflict": 1, "out-of-range": 1, "unknown-device": 1}
    assert sorted(heard) == [("p-a", 1, 1), ("p-b", 1, 1)]
    assert sample_counts(store) == (3, 3)
    assert (ingest.stats["accepted"], ingest.stats["quarantined_samples"]) == (2, 2)
    assert ingest.quarantined_by_reason() == {"unknown-device": 1}
