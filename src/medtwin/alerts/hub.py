"""The event hub: publish from any thread, deliver to asyncio subscribers (SSE and WebSocket streams).

Events (:class:`Event`): ``alert`` (an alert opened / updated / escalated / recurred / cleared / acknowledged / resolved: the
alert as JSON plus ``action``), ``samples`` (a patient's newly stored samples, for live charts) and
``forecast`` (a :class:`~medtwin.vocab.GlucoseForecast`). Each has a hub-wide increasing ``id``, the
patient it concerns and ``published_at`` (epoch seconds; latency is measured from it). The JSON is encoded
once per event, not once per subscriber.

Delivery:

* :meth:`EventHub.publish` is thread-safe and never blocks on a subscriber: it appends to each interested
  subscriber's bounded buffer and wakes the subscriber's event loop (at most one pending wake-up per
  subscriber, however many events arrive). Publishes are serialised (a short lock around numbering and
  appending), so every subscriber sees ids in increasing order. The subscriber list is copy-on-write.
* A subscriber too slow to keep up **loses its oldest events** (the buffer is a ring of ``queue_size``);
  :meth:`Subscription.take_gap` tells the stream how many were lost since it last asked, so the client can
  re-read the state over the REST API (the SSE/WebSocket streams send a ``lagged`` event).
* Visibility: a subscription carries the caller's ``can_see(patient_id)`` (``Principal.can_see``) and an
  optional patient set (a filter, or the caller's care team); an event for a patient the subscriber may
  not see is never queued. Subscriptions with a patient set are indexed by patient, so a publish costs
  the number of subscribers interested in that patient plus the unrestricted ones, not all of them. Visibility
  is the caller's as authenticated when the stream opened; streams are bounded in time (the API caps them
  at the access token's lifetime), so a care-team change takes effect at the next reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from medtwin.vocab import GlucoseForecast, Sample

EVENT_TYPES: Final = ("alert", "samples", "forecast")
DEFAULT_QUEUE_SIZE: Final = 1000
REPLAY_ALERTS: Final = 5_000  # recent alert events kept for reconnecting streams (Last-Event-ID)
REPLAY_OTHER: Final = 20_000  # recent samples/forecast events (seconds to minutes of a busy hub)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    patient_id: str
    published_at: float  # epoch seconds
    data: dict[str, Any]
    json: bytes = field(repr=False)  # {"id", "type", "patient_id", "published_at", "data"}

    def sse(self) -> bytes:
        """The event as one Server-Sent Events message."""
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.type.encode(), self.json)


class Subscription:
    """One stream's view of the hub. Consume with ``await get(timeout)`` on the loop that subscribed."""

    def __init__(self, hub: EventHub, loop: asyncio.AbstractEventLoop, can_see: Callable[[str], bool],
                 patients: frozenset[str] | None, types: frozenset[str] | None, queue_size: int) -> None:
        self.hub, self.loop, self.can_see = hub, loop, can_see
        self.patients, self.types = patients, types
        self._buffer: deque[Event] = deque()
        self._size = queue_size
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._wake_pending = False
        self.dropped = 0
        self.delivered = 0
        self._gap = 0
        self.closed = False

    def wants(self, event: Event) -> bool:
        return ((self.types is None or event.type in self.types)
                and (self.patients is None or event.patient_id in self.patients)
                and self.can_see(event.patient_id))

    def _offer(self, event: Event) -> None:
        with self._lock:
            if self.closed:
                return
            if len(self._buffer) >= self._size:
                self._buffer.popleft()
                self.dropped += 1
                self._gap += 1
            self._buffer.append(event)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the subscriber's loop is gone
            self.close()

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one (or once closed)."""
        while True:
            with self._lock:
                if self._buffer:
                    self.delivered += 1
                    return self._buffer.popleft()
                if self.closed:
                    return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                with self._lock:
                    if not self._buffer:
                        return None

    def take_gap(self) -> int:
        """Events lost (oldest dropped) since the last call."""
        with self._lock:
            gap, self._gap = self._gap, 0
        return gap

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.hub.unsubscribe(self)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._ready.set)


class EventHub:
    """Fan-out of live events to subscribers (thread-safe publish, asyncio consumers)."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE, wall_clock: Callable[[], float] = time.time,
                 start_id: int | None = None, replay_alerts: int = REPLAY_ALERTS,
                 replay_other: int = REPLAY_OTHER) -> None:
        self.queue_size = queue_size
        self.wall_clock = wall_clock
        # ids keep increasing across restarts (epoch milliseconds x 1000 at start; < 2**53 for JSON
        # numbers), so a Last-Event-ID from an earlier process is recognised as older than this one's
        self.first_id = (int(wall_clock() * 1000) * 1000 if start_id is None else start_id) + 1
        self._recent_alerts: deque[Event] = deque(maxlen=replay_alerts)
        self._recent_other: deque[Event] = deque(maxlen=replay_other)
        self._evicted = {"alert": 0, "other": 0}  # highest id dropped from each replay ring
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._subscribers: tuple[Subscription, ...] = ()
        # copy-on-write indexes: subscribers for every patient, and per patient those with a patient set
        self._wide: tuple[Subscription, ...] = ()
        self._by_patient: dict[str, tuple[Subscription, ...]] = {}
        self._next_id = self.first_id - 1
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, *, can_see: Callable[[str], bool], patients: Iterable[str] | None = None,
                  types: Iterable[str] | None = None, queue_size: int | None = None,
                  loop: asyncio.AbstractEventLoop | None = None, after_id: int | None = None) -> Subscription:
        """A new subscription on ``loop`` (default: the running loop). ``after_id`` (a reconnecting
        stream's Last-Event-ID): first replay the retained events after it that the subscription wants; if
        some may have been lost (evicted, or from an earlier process) the subscription starts with a gap."""
        sub = Subscription(self, loop or asyncio.get_running_loop(), can_see,
                           None if patients is None else frozenset(patients),
                           None if types is None else frozenset(types), queue_size or self.queue_size)
        with self._publish_lock:  # nothing is published between the replay and the registration
            if after_id is not None:
                self._replay(sub, after_id)
            with self._lock:
                self._subscribers = (*self._subscribers, sub)
                self._reindex()
        return sub

    def _replay(self, sub: Subscription, after_id: int) -> None:
        wanted = sub.types if sub.types is not None else frozenset(EVENT_TYPES)
        rings = []
        if "alert" in wanted:
            rings.append(("alert", self._recent_alerts))
        if wanted - {"alert"}:
            rings.append(("other", self._recent_other))
        lost = after_id < self.first_id - 1 or any(self._evicted[name] > after_id for name, _ in rings)
        events = sorted((e for _name, ring in rings for e in ring if e.id > after_id), key=lambda e: e.id)
        if lost:
            sub._gap = sub.dropped = 1  # at least one: the client re-reads the state
        for event in events:
            if sub.wants(event):
                sub._offer(event)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)
            self._reindex()

    def set_patients(self, sub: Subscription, patients: Iterable[str] | None) -> None:
        """Change which patients a subscription receives (e.g. after the caller's care team changed)."""
        with self._lock:
            sub.patients = None if patients is None else frozenset(patients)
            self._reindex()

    def _reindex(self) -> None:
        wide = tuple(s for s in self._subscribers if s.patients is None)
        by_patient: dict[str, list[Subscription]] = {}
        for sub in self._subscribers:
            for patient in sub.patients or ():
                by_patient.setdefault(patient, []).append(sub)
        self._wide, self._by_patient = wide, {p: tuple(subs) for p, subs in by_patient.items()}

    def has_audience(self, patient_id: str) -> bool:
        """Whether any current subscription could receive an event about ``patient_id``."""
        return bool(self._wide or self._by_patient.get(patient_id))

    def skip(self, type: str) -> None:
        """Account for an event not worth building (nobody listening): it takes an id and counts as evicted,
        so a reader reconnecting with an older Last-Event-ID is told it may have missed something."""
        with self._publish_lock:
            self._next_id += 1
            self._evicted["alert" if type == "alert" else "other"] = self._next_id

    def publish(self, type: str, patient_id: str, data: dict[str, Any]) -> Event:
        """Publish an event (any thread). Returns it (with its id)."""
        with self._publish_lock:  # ids and buffer order agree: every subscriber sees increasing ids
            self._next_id += 1
            event_id = self._next_id
            self.published += 1
            published_at = self.wall_clock()
            envelope = {"id": event_id, "type": type, "patient_id": patient_id, "published_at": published_at,
                        "data": data}
            event = Event(event_id, type, patient_id, published_at, data, orjson.dumps(envelope))
            name, ring = ("alert", self._recent_alerts) if type == "alert" else ("other", self._recent_other)
            if ring.maxlen is not None and len(ring) == ring.maxlen:
                self._evicted[name] = ring[0].id
            ring.append(event)
            for sub in (*self._wide, *self._by_patient.get(patient_id, ())):
                if sub.wants(event):
                    sub._offer(event)
        return event

    def close(self) -> None:
        """End every subscription (their ``get`` returns None)."""
        for sub in self._subscribers:
            sub.close()


# --- publishers for the pipeline and the live glucose twin ------------------------------------------------

def iso_z(value: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` (as the API writes times)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sample_json(sample: Sample) -> dict[str, Any]:
    return {"metric": sample.metric, "time": iso_z(sample.time), "value": sample.value, "unit": sample.unit,
            "device": sample.device}


def samples_publisher(hub: EventHub) -> Callable[[list[Sample]], None]:
    """A pipeline listener publishing one ``samples`` event per patient per stored batch. Runs inline on the
    ingest thread, so a patient nobody is watching costs one dictionary lookup (the samples stay readable
    through the API; a reconnecting reader is told it may have missed some and re-reads)."""

    def publish_samples(samples: list[Sample]) -> None:
        by_patient: dict[str, list[Sample]] = {}
        for sample in samples:
            by_patient.setdefault(sample.patient_id, []).append(sample)
        for patient_id, items in by_patient.items():
            if hub.has_audience(patient_id):
                hub.publish("samples", patient_id, {"samples": [sample_json(s) for s in items]})
            else:
                hub.skip("samples")

    return publish_samples


def forecast_json(forecast: GlucoseForecast) -> dict[str, Any]:
    """The forecast event's payload: the forecast's fields (:class:`~medtwin.vocab.GlucoseForecast`) but the
    patient, who is the event's own."""
    return forecast.model_dump(mode="json", exclude={"patient_id"})


def forecast_publisher(hub: EventHub) -> Callable[[GlucoseForecast], None]:
    """A forecast listener publishing a ``forecast`` event."""

    def publish_forecast(forecast: GlucoseForecast) -> None:
        hub.publish("forecast", forecast.patient_id, forecast_json(forecast))

    return publish_forecast
