"""The MQTT entrance of the live twin: a subscriber that stores device samples exactly once, and a small
publisher for devices, the simulated fleet, tests and benchmarks.

Topic ``<prefix>/<patient>/<device>/<metric>`` (prefix from ``Settings.mqtt_topic_prefix``, default
``medtwin``); payload one sample ``{"time": ISO-8601 with offset, "value": .., "unit": .., "id"?: ..}`` or a
JSON array of them.

Delivery guarantees (what the subscriber does and why):

* **QoS 1 on a persistent session.** A fixed client id (``Settings.mqtt_client_id``), MQTT 3.1.1 with
  ``clean_session`` off: while medtwin is down or reconnecting, the broker keeps queuing for it
  (deploy/mosquitto/medtwin.conf lifts mosquitto's stock limit of 1000 queued messages, past which it
  silently drops, and keeps sessions across broker restarts).
* **Acknowledged only after commit** (paho ``manual_ack``). A message's PUBACK is sent after the
  transaction holding its sample (or its quarantine row) has committed, so a crash between receipt and
  commit makes the broker redeliver rather than lose it. Redeliveries and a device's own retries are
  stored once: every sample has an idempotency key (the pipeline's) with a unique index.
* **Batched.** Messages are handed to the handler in batches, one transaction per batch: at most
  ``batch_max`` messages, what arrived within ``batch_interval`` (20 ms) of the first, cut short by a
  pause of ``batch_idle`` (2 ms) in the stream, so a quiet stream is stored at once and a busy one in full
  batches.
* **Acks from an old connection are never sent.** A PUBACK carries only the packet id, which the broker may
  reuse for another message after a reconnect; messages received on a connection that has since dropped
  are stored but not acknowledged: the broker redelivers them and the idempotency key makes that a no-op.
* **Flow control.** At most ``max_queue`` received messages wait for the store; beyond that the network
  thread stops reading and TCP holds the broker back, so a large backlog after an outage (or a database
  that is down) does not fill memory.
* **Reconnect** with exponential backoff (1 s doubling to 30 s) after the broker goes away, and subscribe
  again on every connect (a broker that lost its state has no subscription for us).
* **A handler failure** (the database is down) acknowledges nothing: the batch is retried with backoff
  until it commits, or left to the broker's redelivery if the subscriber is stopped first.
* **Clean shutdown** (:meth:`MqttSubscriber.stop`) stores and acknowledges what has been received, then
  disconnects without unsubscribing, so messages published while medtwin is down wait in the broker.

Where the samples go (:class:`MqttIngest`) is described there: device registry, quarantine, rate limits.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from sqlalchemy import Connection, select

from medtwin.config import Settings
from medtwin.counters import Counters
from medtwin.store.security_tables import api_keys
from medtwin.stream.parse import parse_samples
from medtwin.stream.pipeline import (
    BatchTooLargeError,
    IngestPipeline,
    Prepared,
    RateLimitedError,
    UnknownPatientError,
)

log = logging.getLogger("medtwin.stream.mqtt")

_TOPIC_FORBIDDEN = ("/", "+", "#", "\x00")
SLOW_COMMIT_S = 0.25  # a batch transaction longer than this is logged as a warning


class MqttConfigError(ValueError):
    """A broker URL or topic part that cannot be used; the message names the field."""


# --- broker address ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a repr lands in logs and tracebacks


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://...`` (TLS, 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise MqttConfigError(f"broker_url: scheme must be mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise MqttConfigError(f"broker_url: no host in {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise MqttConfigError(f"broker_url: bad port in {url!r}") from exc
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return BrokerAddress(parts.hostname, port, tls, username, password)


def _new_client(address: BrokerAddress, client_id: str, *, persistent: bool, manual_ack: bool) -> paho.Client:
    # MQTT 3.1.1: paho decodes MQTT 5 properties on every PUBLISH, which halves what one Python subscriber
    # can take (measured: ~14,000 vs ~30,000 messages/s on a 2-core machine).
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311,
                         clean_session=not persistent, manual_ack=manual_ack)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def check_topic_part(name: str, value: str) -> str:
    """A topic level must be non-empty and free of ``/ + #`` (it names a patient, device or metric)."""
    if not value or any(c in value for c in _TOPIC_FORBIDDEN):
        raise MqttConfigError(f"{name}: a topic level must be non-empty without '/', '+' or '#', got {value!r}")
    return value


def sample_topic(prefix: str, patient_id: str, device: str, metric: str) -> str:
    return "/".join((prefix, check_topic_part("patient_id", patient_id), check_topic_part("device", device),
                     check_topic_part("metric", metric)))


# --- subscriber ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT message as received (the handler parses it)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int  # which connection it arrived on (acks go only to the current one)
    received: float  # time.monotonic() at receipt


class BatchHandler(Protocol):
    """Stores a batch; returns only after everything in it is committed (stored or quarantined).
    Raising means nothing in the batch may be acknowledged."""

    def __call__(self, messages: Sequence[InboundMessage]) -> None: ...


#: What the subscriber counts (``subscriber.stats``): messages received and acknowledged, batches stored,
#: connections made, handler failures (each retried), acknowledgements not sent because the message came on a
#: connection since dropped (the broker redelivers it), the largest batch in messages.
SubscriberCount = Literal["received", "acked", "batches", "connects", "handler_errors", "stale_acks_skipped",
                          "largest_batch"]


@dataclass
class _Connection:
    generation: int = 0
    connected: bool = False
    event: threading.Event = field(default_factory=threading.Event)


class MqttSubscriber:
    """Subscribes ``<prefix>/+/+/+`` with QoS 1 on a persistent session and feeds batches to ``handler``,
    acknowledging each message after the handler returned (see the module docstring)."""

    def __init__(self, handler: BatchHandler, *, broker_url: str, client_id: str, topic_prefix: str = "medtwin",
                 batch_max: int = 500, batch_interval: float = 0.02, batch_idle: float = 0.002,
                 max_queue: int = 5000,
                 keepalive: int = 30, monotonic: Callable[[], float] = time.monotonic) -> None:
        if batch_max < 1:
            raise MqttConfigError("batch_max: must be at least 1")
        if max_queue < batch_max:
            raise MqttConfigError("max_queue: must be at least batch_max")
        check_topic_part("client_id", client_id)
        self.handler = handler
        self.address = parse_broker_url(broker_url)
        self.client_id = client_id
        self.topic_prefix = topic_prefix.rstrip("/")
        self.subscription = f"{self.topic_prefix}/+/+/+"
        self.batch_max = batch_max
        self.batch_interval = batch_interval
        self.batch_idle = batch_idle
        self.max_queue = max_queue
        self.keepalive = keepalive
        self.monotonic = monotonic
        self.stats: Counters[SubscriberCount] = Counters(SubscriberCount)
        self._queue: deque[InboundMessage] = deque()
        self._cond = threading.Condition()
        self._conn = _Connection()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._client = _new_client(self.address, client_id, persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # paho callbacks (network thread) ------------------------------------------------------------
    def _on_connect(self, client: paho.Client, _userdata: Any, flags: Any, reason_code: Any,
                    _properties: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.address.host, self.address.port,
                      reason_code)
            return
        with self._cond:
            self._conn.generation += 1
            self._conn.connected = True
            self.stats.inc("connects")
        client.subscribe(self.subscription, qos=1)
        log.info("MQTT connected to %s:%s as %s (session present: %s)", self.address.host, self.address.port,
                 self.client_id, flags.session_present)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int, reason_codes: list[Any],
                      _properties: Any) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("MQTT broker refused the subscription %s: %s", self.subscription, reason_codes)
            return
        log.info("MQTT subscribed %s (QoS 1)", self.subscription)
        self._conn.event.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: Any,
                       _properties: Any) -> None:
        with self._cond:
            self._conn.connected = False
            self._conn.event.clear()
        if not self._stopping:
            log.warning("MQTT connection to %s:%s lost (%s); reconnecting", self.address.host, self.address.port,
                        reason_code)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        item = InboundMessage(message.topic, bytes(message.payload), message.mid, message.qos, bool(message.dup),
                              self._conn.generation, self.monotonic())
        with self._cond:
            # Backpressure: while the store is behind, stop reading from the socket (TCP then holds the
            # broker back). The broker's own in-flight cap is not enough: mosquitto 2.0.11 was measured
            # sending far more than max_inflight_messages unacknowledged messages from a backlog.
            while len(self._queue) >= self.max_queue and not self._stopping:
                self._cond.wait(0.5)
            if self._stopping:
                return  # not acknowledged: the broker delivers it again to the next session
            self._queue.append(item)
            self.stats.inc("received")
            if len(self._queue) == 1 or len(self._queue) >= self.batch_max:
                self._cond.notify()

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in the background: a broker that is not up yet is retried) and start storing."""
        self._client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive)
        self._worker = threading.Thread(target=self._run, name="medtwin-mqtt-ingest", daemon=True)
        self._worker.start()
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed."""
        return self._conn.event.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._conn.connected

    def stop(self, timeout: float = 10.0) -> None:
        """Store and acknowledge what was received, then disconnect (the session stays on the broker)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("MQTT ingest did not drain within %.1f s; the broker will redeliver the rest", timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttSubscriber:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # worker -----------------------------------------------------------------------------------
    def _next_batch(self) -> list[InboundMessage] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait(0.5)
            # Gather until batch_max, batch_interval after the first message, or a pause of batch_idle in
            # the stream: a lone message is stored at once, a busy stream in full batches.
            deadline = self._queue[0].received + self.batch_interval
            while len(self._queue) < self.batch_max and not self._stopping:
                wake = min(deadline, self._queue[-1].received + self.batch_idle)
                remaining = wake - self.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            n = min(len(self._queue), self.batch_max)
            batch = [self._queue.popleft() for _ in range(n)]
            self._cond.notify_all()  # room again for a network thread held back by max_queue
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not self._store(batch):
                return  # stopping with a batch not stored: the broker redelivers it
            self._ack(batch)

    def _store(self, batch: list[InboundMessage]) -> bool:
        delay = 0.05
        while True:
            try:
                self.handler(batch)
                return True
            except Exception:
                self.stats.inc("handler_errors")
                log.exception("storing %d MQTT messages failed; nothing acknowledged, retrying in %.2f s",
                              len(batch), delay)
            if self._stopping:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _ack(self, batch: list[InboundMessage]) -> None:
        generation = self._conn.generation
        acked = skipped = 0
        for message in batch:
            if message.qos == 0:
                continue
            if message.generation != generation or not self._conn.connected:
                skipped += 1
                continue
            if self._client.ack(message.mid, message.qos) == MQTTErrorCode.MQTT_ERR_SUCCESS:
                acked += 1
            else:
                skipped += 1
        self.stats.inc("batches")
        self.stats.inc("acked", acked)
        self.stats.inc("stale_acks_skipped", skipped)
        self.stats.peak("largest_batch", len(batch))


def drop_session(broker_url: str, client_id: str, timeout: float = 10.0) -> None:
    """Delete a persistent session and the messages queued for it: connect with a clean session, then
    disconnect. For a subscriber that is decommissioned (or renamed): otherwise the broker keeps queuing
    for it forever."""
    address = parse_broker_url(broker_url)
    client = _new_client(address, client_id, persistent=False, manual_ack=False)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect_async(address.host, address.port)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError(f"no MQTT connection to {address.host}:{address.port} within {timeout} s")
    finally:
        client.disconnect()
        client.loop_stop()


# --- from MQTT messages to the pipeline ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceKey:
    id: str
    name: str  # what samples are stored under, as over HTTP (``api.routers.samples.device_name``)
    patient_id: str
    revoked: bool


def device_keys(connection: Connection, ids: Iterable[str]) -> dict[str, DeviceKey]:
    """The device registry: device API keys (``medtwin users device-key``) by public key id."""
    wanted = sorted(set(ids))
    found: dict[str, DeviceKey] = {}
    for start in range(0, len(wanted), 500):
        rows = connection.execute(select(api_keys.c.id, api_keys.c.name, api_keys.c.patient_id, api_keys.c.revoked_at)
                                  .where(api_keys.c.id.in_(wanted[start:start + 500])))
        for key_id, name, patient_id, revoked_at in rows:
            found[key_id] = DeviceKey(key_id, name, patient_id, revoked_at is not None)
    return found


_UNKNOWN = ("unknown-device", "topic", "not an active device key")


def _refusal(key: DeviceKey | None, patient_id: str, device: str) -> tuple[str, str, str] | None:
    """Why a message from this device key on this patient's topic is refused whole: (reason, field, detail)."""
    if key is None or key.revoked:
        return ("unknown-device" if key is None else "revoked-device", "topic",
                f"device {device[:64]!r} is not an active device key")
    if key.patient_id != patient_id:
        return ("device-patient-mismatch", "topic", f"device {device[:64]!r} is not registered for this patient")
    return None


@dataclass
class _Group:
    """The sample messages of one (patient, device key) in a batch: stored as one pipeline call would."""

    device: str  # the key's name: the stored device, as over HTTP
    rate_key: str  # "device:<key id>": the key's rate bucket, shared with HTTP and WebSocket
    messages: list[tuple[InboundMessage, list[Any]]] = field(default_factory=list)

    def items(self) -> list[Any]:
        return [item for _, items in self.messages for item in items]


#: What the ingest counts (``ingest.stats``): messages handled, samples stored, duplicates, samples quarantined
#: (messages quarantined whole are counted by reason: :meth:`MqttIngest.quarantined_by_reason`), the longest
#: batch transaction (mostly waiting for another writer's lock) and those over SLOW_COMMIT_S (250 ms).
IngestCount = Literal["messages", "accepted", "duplicates", "quarantined_samples", "slowest_commit_s",
                      "slow_commits"]


class MqttIngest:
    """The :class:`BatchHandler` that stores MQTT messages through the ingest pipeline.

    * The topic names the patient, the device and the metric. **The device must be a device key id**
      (``medtwin users device-key``: the public part of the key) that is not revoked and is bound to the
      topic's patient: the api_keys table is the device registry (each key id re-read after at most
      ``registry_ttl``, 2 s, so a revocation takes effect within that). As over HTTP,
      samples are stored under the key's name and share its rate bucket (``device:<key id>``), so a sample
      a device sends both ways is stored once. The broker
      should also authenticate publishers and restrict each to its own topics (deploy/mosquitto/medtwin.conf
      shows how); the check here means a device can never write for another patient.
    * The payload is one sample object or a JSON array of them, ``metric`` taken from the topic (a sample
      naming another metric is quarantined as ``topic-mismatch``).
    * **One transaction per batch**, whatever the number of patients in it (devices publish a sample or a
      few at a time, so a batch of 500 messages is typically hundreds of (patient, device) groups; a
      transaction and a pipeline call for each cost ~280 us of CPU per message). Each group is checked by
      ``IngestPipeline.prepare`` (the pipeline's parse, units, range, keys and rate limit; nothing written)
      and the whole batch, with the quarantine rows of refused messages, is stored by one
      ``IngestPipeline.write`` in one transaction: the same code HTTP runs, no copy of the checks here. The
      pipeline's listeners are told after the commit, one call per (patient, device) with its newly stored
      samples in time order, as ``ingest`` would. Field paths in quarantine rows index the samples of the
      group.
    * **Nothing is dropped.** A message is quarantined whole (sealed, with the reason; keyed by a hash of
      topic and payload so a redelivery is quarantined once) when its topic is malformed (``topic``), its
      device is unknown, revoked or bound to another patient (``unknown-device``, ``revoked-device``,
      ``device-patient-mismatch``), the patient does not exist (``unknown-patient``), it is not JSON or not
      samples (``malformed``), or the device is over its sample rate (``rate-limit``) or sent more samples
      in one message than it may per minute (``too-large``). Bad samples in a good message are quarantined
      by the pipeline, one row each. Rate-limited messages are quarantined rather than held unacknowledged:
      holding them would fill the broker's in-flight window and stall every other device behind one noisy
      one, while a quarantined sample keeps its payload and can be re-ingested by an operator.

    Every message of the batch is committed (stored, duplicate or quarantined) when ``__call__`` returns;
    a database error propagates, so the subscriber acknowledges nothing and retries.
    """

    def __init__(self, pipeline: IngestPipeline, *, topic_prefix: str = "medtwin", source: str = "mqtt",
                 registry_ttl: float = 2.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pipeline = pipeline
        self.registry_ttl = registry_ttl
        self.monotonic = monotonic
        self._registry: dict[str, tuple[float, DeviceKey | None]] = {}  # key id -> (looked up at, key)
        self.store = pipeline.store
        self.prefix = topic_prefix.rstrip("/") + "/"
        self.source = source
        self.stats: Counters[IngestCount] = Counters(IngestCount)
        self._quarantined: dict[str, int] = {}  # reason -> messages quarantined whole
        self._lock = threading.Lock()  # guards _quarantined

    def __call__(self, messages: Sequence[InboundMessage]) -> None:
        quarantine, groups = self._route(messages)
        now = self.pipeline.clock()
        prepared: list[Prepared] = []
        for (patient_id, _key_id), group in groups.items():
            self._prepare_group(patient_id, group, now, prepared, quarantine)
        started = time.perf_counter()
        with self.store.begin() as connection:
            self.pipeline.write(connection, prepared, quarantine)
        took = time.perf_counter() - started
        if took > SLOW_COMMIT_S:
            log.warning("storing %d MQTT messages took %.0f ms (waiting for the database, or for the CPU)",
                        len(messages), took * 1000)
        self._account(len(messages), prepared, quarantine, took)
        for p in prepared:  # committed: tell the listeners, one call per pipeline call
            if p.report.stored:
                self.pipeline.notify(p.report.stored)

    def _route(self, messages: Sequence[InboundMessage]) -> tuple[list[dict[str, Any]], dict[tuple[str, str], _Group]]:
        """Quarantine rows for the messages refused whole (topic, device, payload) and the others grouped by
        (patient, device key), in arrival order."""
        quarantine: list[dict[str, Any]] = []
        groups: dict[tuple[str, str], _Group] = {}
        topics: list[tuple[InboundMessage, tuple[str, str, str]]] = []
        for message in messages:
            parts = self._topic(message.topic)
            if parts is None:
                quarantine.append(self._row(message, None, "topic", "topic",
                                            f"expected {self.prefix}<patient>/<device>/<metric>"))
            else:
                topics.append((message, parts))
        keys = self._device_keys({device for _, (_, device, _) in topics})
        for message, parts in topics:
            patient_id, device, metric = parts
            key = keys.get(device)
            refused = _refusal(key, patient_id, device)
            if refused is not None or key is None:  # (key is None is always refused; said for the type checker)
                quarantine.append(self._row(message, parts, *(refused or _UNKNOWN)))
                continue
            items, problem = self._items(message.payload, metric)
            if problem is not None:
                quarantine.append(self._row(message, (patient_id, key.name, metric), *problem))
                continue
            group = groups.get((patient_id, device))
            if group is None:
                group = groups[(patient_id, device)] = _Group(key.name, f"device:{key.id}")
            group.messages.append((message, items))
        return quarantine, groups

    def _prepare_group(self, patient_id: str, group: _Group, now: datetime, prepared: list[Prepared],
                       quarantine: list[dict[str, Any]]) -> None:
        """The pipeline's checks for one (patient, device) group, as one pipeline call; the group is
        quarantined whole for an unknown patient, and message by message when over the device's rate."""
        try:
            prepared.append(self._prepare(patient_id, group, group.items(), now))
            return
        except UnknownPatientError:
            quarantine.extend(self._row(m, (patient_id, group.device, None), "unknown-patient", "topic",
                                        "no such patient") for m, _ in group.messages)
            return
        except (RateLimitedError, BatchTooLargeError):
            pass
        # the group as a whole is over the device's allowance: message by message, so what fits is stored
        for message, items in group.messages:
            try:
                prepared.append(self._prepare(patient_id, group, items, now))
            except RateLimitedError as exc:
                quarantine.append(self._row(message, (patient_id, group.device, None), "rate-limit", "$",
                                            f"device over its sample rate (retry after {exc.retry_after:.1f} s)"))
            except BatchTooLargeError as exc:
                quarantine.append(self._row(message, (patient_id, group.device, None), "too-large", "$", str(exc)))

    def _prepare(self, patient_id: str, group: _Group, items: list[Any], now: datetime) -> Prepared:
        return self.pipeline.prepare(parse_samples(items), patient_id=patient_id, device=group.device,
                                     source=self.source, rate_key=group.rate_key, now=now)

    # ---------------------------------------------------------------------------------------------
    def _device_keys(self, ids: set[str]) -> dict[str, DeviceKey]:
        """The registry entries of these key ids, each read at most ``registry_ttl`` seconds ago (a
        revocation or a new key takes effect within that; one query per batch was ~20 us per message)."""
        now = self.monotonic()
        registry = self._registry
        stale = {i for i in ids if (entry := registry.get(i)) is None or now - entry[0] > self.registry_ttl}
        if stale:
            with self.store.connect() as connection:
                found = device_keys(connection, stale)
            if len(registry) > 100_000:
                registry.clear()
            for key_id in stale:
                registry[key_id] = (now, found.get(key_id))
        out = {}
        for key_id in ids:
            key = registry[key_id][1]
            if key is not None:
                out[key_id] = key
        return out

    def _topic(self, topic: str) -> tuple[str, str, str] | None:
        if not topic.startswith(self.prefix):
            return None
        parts = topic[len(self.prefix):].split("/")
        if len(parts) != 3 or not all(parts):
            return None
        return parts[0], parts[1], parts[2]

    @staticmethod
    def _items(payload: bytes, metric: str) -> tuple[list[Any], tuple[str, str, str] | None]:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return [], ("malformed", "$", f"the payload is not JSON ({exc})")
        if isinstance(data, dict):
            data = [data]
        elif not isinstance(data, list):
            return [], ("malformed", "$", "expected one sample object or a JSON array of them")
        items: list[Any] = []
        for i, item in enumerate(data):
            if isinstance(item, dict):
                named = item.get("metric")
                if named is None:
                    item = {**item, "metric": metric}
                elif named != metric:
                    return [], ("topic-mismatch", f"[{i}].metric",
                                f"sample names metric {str(named)[:64]!r} on a {metric[:64]!r} topic")
            items.append(item)  # anything else: the pipeline quarantines it as malformed
        return items, None

    def _account(self, messages: int, prepared: list[Prepared], quarantine: list[dict[str, Any]],
                 took: float) -> None:
        stats = self.stats
        stats.inc("messages", messages)
        stats.inc("accepted", sum(p.report.accepted for p in prepared))  # one lock round-trip per counter
        stats.inc("duplicates", sum(p.report.duplicates for p in prepared))
        stats.inc("quarantined_samples", sum(len(p.report.quarantined) for p in prepared))
        stats.peak("slowest_commit_s", took)
        stats.inc("slow_commits", int(took > SLOW_COMMIT_S))
        with self._lock:
            for row in quarantine:
                self._quarantined[row["reason"]] = self._quarantined.get(row["reason"], 0) + 1

    def quarantined_by_reason(self) -> dict[str, int]:
        """Messages quarantined whole so far, by reason (e.g. ``{"rate-limit": 40, "too-large": 1}``)."""
        with self._lock:
            return dict(self._quarantined)

    def _row(self, message: InboundMessage, parts: tuple[str, str, str | None] | None, reason: str,
             field_path: str, detail: str) -> dict[str, Any]:
        digest = hashlib.sha256(message.topic.encode("utf-8", "replace") + b"\x00" + message.payload).hexdigest()
        patient_id, device, metric = parts if parts is not None else (None, None, None)
        return {"patient_id": patient_id[:64] if patient_id else None, "device": device[:128] if device else None,
                "metric": metric[:64] if metric else None, "time": None, "received_at": self.pipeline.clock(),
                "source": self.source, "reason": reason, "field": field_path, "detail": detail[:2000],
                "payload": orjson.dumps({"topic": message.topic, "payload": message.payload.decode("utf-8", "replace")}),
                "idempotency_key": f"q|{self.source}|{reason}|{digest}"}


def subscriber_from_settings(settings: Settings, pipeline: IngestPipeline) -> MqttSubscriber:
    """The subscriber ``medtwin serve`` (``mqtt_enabled``) and ``medtwin mqtt`` run: broker, client id,
    topic prefix and batching from settings, samples into ``pipeline``."""
    return MqttSubscriber(MqttIngest(pipeline, topic_prefix=settings.mqtt_topic_prefix),
                          broker_url=settings.broker_url, client_id=settings.mqtt_client_id,
                          topic_prefix=settings.mqtt_topic_prefix, batch_max=settings.mqtt_batch_size,
                          batch_interval=settings.mqtt_batch_ms / 1000)


# --- publisher -----------------------------------------------------------------------------------------
class MqttPublisher:
    """A small QoS 1 publisher: what a device (or the simulated fleet) does.

    Unacknowledged messages stay in the client and are sent again after a reconnect (with the DUP flag), so
    a broker restart delays them but loses none; :meth:`wait_all` waits until the broker has acknowledged
    every message published so far. ``client_id`` defaults to a random one.
    """

    def __init__(self, broker_url: str, *, client_id: str | None = None, topic_prefix: str = "medtwin",
                 window: int = 2000, keepalive: int = 30) -> None:
        if window < 1:
            raise MqttConfigError("window: must be at least 1")
        self.address = parse_broker_url(broker_url)
        self.topic_prefix = topic_prefix.rstrip("/")
        self.client_id = client_id or f"medtwin-pub-{secrets.token_hex(6)}"
        self.keepalive = keepalive
        self.window = window
        self._client = _new_client(self.address, self.client_id, persistent=False, manual_ack=False)
        # paho's own in-flight cap rescans every queued message on each PUBACK (quadratic in a backlog);
        # the window below does the same job in O(1).
        self._client.max_inflight_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._lock = threading.Condition()
        self._published = 0
        self._acked = 0
        self._connected = threading.Event()
        self.connects = 0

    def _on_connect(self, _c: paho.Client, _u: Any, _flags: Any, reason_code: Any, _p: Any) -> None:
        if not reason_code.is_failure:
            with self._lock:
                self.connects += 1
            self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _on_publish(self, _c: paho.Client, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
        with self._lock:
            self._acked += 1
            self._lock.notify_all()

    def connect(self, timeout: float = 10.0) -> MqttPublisher:
        self._client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"no MQTT connection to {self.address.host}:{self.address.port} within {timeout} s")
        return self

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish one message with QoS 1 (or 2). This waits while ``window`` messages are unacknowledged,
        and so while the broker is unreachable: a device buffers rather than drops."""
        if qos not in (1, 2):
            raise MqttConfigError("qos: 1 or 2 (QoS 0 may be lost)")
        with self._lock:
            while self._published - self._acked >= self.window:
                self._lock.wait(1.0)
            self._published += 1
        info = self._client.publish(topic, payload, qos=qos)
        # NO_CONN is fine: paho keeps the message and sends it after the reconnect
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._lock:
                self._published -= 1
            raise RuntimeError(f"MQTT publish failed: {paho.error_string(info.rc)}")

    def publish(self, patient_id: str, device: str, metric: str,
                samples: Mapping[str, Any] | Sequence[Mapping[str, Any]], qos: int = 1) -> None:
        """One sample (a mapping) or several (a list) as one message on the sample topic."""
        self.publish_raw(sample_topic(self.topic_prefix, patient_id, device, metric),
                         orjson.dumps(samples, option=orjson.OPT_NAIVE_UTC), qos)

    @property
    def pending(self) -> int:
        with self._lock:
            return self._published - self._acked

    def wait_all(self, timeout: float) -> bool:
        """True once the broker acknowledged every QoS 1 message published so far."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._acked < self._published:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self.connect()

    def __exit__(self, *_exc: object) -> None:
        self.close()
