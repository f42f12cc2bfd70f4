"""The ingest pipeline: payload -> parsed readings -> normalised samples, stored exactly once.

One pipeline serves every entrance (HTTP, WebSocket, MQTT, the simulated fleet)::

    pipeline = IngestPipeline(store, clock=utcnow, rate_limiter=TokenBucketLimiter(12_000))
    pipeline.add_listener(on_samples)        # called after commit with the newly stored samples
    report = pipeline.ingest(body_bytes, patient_id="p1", device="cgm-1", source="http")
    report = pipeline.ingest_samples([Reading(...), ...], patient_id="p1", device="cgm-1", source="fleet")

    # the two halves ingest() is made of, for an entrance that writes many calls in one transaction (MQTT):
    prepared = [pipeline.prepare(parse_samples(items), patient_id=p, device=d, source="mqtt") for ...]
    with store.begin() as connection:
        pipeline.write(connection, prepared)      # fills each prepared.report
    for p in prepared:
        pipeline.notify(p.report.stored)

Semantics:

* **At-least-once in, exactly-once stored.** Each sample's idempotency key is
  ``<patient>|<device>|id:<client id>`` when the sender gave an id, else
  ``<patient>|<device>|<metric>|<ISO UTC time>`` (``-`` for no device; the patient is part of the key so
  two patients' devices of the same name never collide). Rows are inserted with
  ``INSERT .. ON CONFLICT DO NOTHING`` in one transaction per call; the report counts ``accepted``
  (newly stored), ``duplicates`` (already stored, or repeated within the call) and ``quarantined``.
* **Out-of-order** samples are stored like any other; queries order by time.
* **Units** are converted to the metric's canonical unit (:mod:`medtwin.stream.metrics`); the device's
  value and unit are kept in ``original_value`` / ``original_unit``.
* **Bad samples are quarantined, never dropped**: unknown metric, wrong unit, impossible value, naive or
  unreadable time, a FHIR subject naming another patient. The ``quarantine`` row has the reason, the
  field path and the sealed item as received, keyed so a retried bad sample is quarantined once. A payload
  that is not readable at all (not JSON, unknown shape) is quarantined whole and raises
  :class:`~medtwin.stream.parse.PayloadError`.
* **Errors for the caller**: :class:`UnknownPatientError` (nothing stored), :class:`RateLimitedError`
  (per device token bucket; nothing of the call stored; ``retry_after`` seconds),
  :class:`BatchTooLargeError` (a call larger than the bucket could ever hold).
* **Listeners** run inline, on the calling thread, after the commit, in registration order, with the
  newly stored samples of the call in time order (nothing for an all-duplicate call). A listener that
  raises is logged and skipped; ingest never fails because of one. A listener must return quickly: hand
  heavy work to your own worker thread or queue. Each listener's time is measured (``listener_seconds``)
  and one slower than ``slow_listener_seconds`` is logged as a warning.

The pipeline is thread-safe: the HTTP worker threads, the WebSocket handler and the MQTT thread share one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection

from medtwin.store.database import Store
from medtwin.store.samples import SampleRepository
from medtwin.stream import metrics
from medtwin.stream.parse import ParseResult, PayloadError, Problem, Reading, decode, parse_payload
from medtwin.stream.ratelimit import RateLimiter, Unlimited
from medtwin.vocab import CANONICAL_UNITS, Sample

__all__ = ["BatchTooLargeError", "IngestPipeline", "IngestReport", "Listener", "Prepared", "QuarantinedItem",
           "RateLimitedError", "UnknownPatientError", "idempotency_key"]

log = logging.getLogger("medtwin.stream")

Listener = Callable[[list[Sample]], None]
_MAX_KEY = 255
#: An unreadable payload is quarantined whole up to this size (1 MiB), else its head and its SHA-256.
MAX_QUARANTINED_PAYLOAD = 1 << 20


class UnknownPatientError(LookupError):
    """The patient the samples are for does not exist (HTTP 404)."""

    def __init__(self, patient_id: str) -> None:
        super().__init__(f"no patient {patient_id!r}")
        self.patient_id = patient_id


class RateLimitedError(Exception):
    """The device sent more than its allowance; nothing of the call was stored (HTTP 429)."""

    def __init__(self, retry_after: float, device: str | None) -> None:
        super().__init__(f"device {device or '-'} is over its sample rate; retry in {retry_after:.1f} s")
        self.retry_after, self.device = retry_after, device


class BatchTooLargeError(Exception):
    """A call with more samples than a device may send per minute (HTTP 413): split it."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} samples in one call; a device may send at most {limit} per minute")
        self.count, self.limit = count, limit


@dataclass(frozen=True, slots=True)
class QuarantinedItem:
    index: int | None  # position of the item in the payload (None: the payload as a whole)
    field: str  # JSON path of the wrong part, e.g. "[3].value"
    reason: str  # unknown-metric | unit | out-of-range | bad-value | bad-time | naive-time | malformed | ...
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason, "detail": self.detail}


@dataclass
class IngestReport:
    patient_id: str
    source: str
    format: str
    received: int  # samples read from the payload (good and bad)
    accepted: int = 0  # newly stored
    duplicates: int = 0  # already stored (or repeated within the call)
    quarantined: list[QuarantinedItem] = field(default_factory=list)
    stored: list[Sample] = field(default_factory=list, repr=False)  # the newly stored samples, time order

    def to_dict(self) -> dict[str, Any]:
        return {"patient_id": self.patient_id, "source": self.source, "format": self.format,
                "received": self.received, "accepted": self.accepted, "duplicates": self.duplicates,
                "quarantined": [q.to_dict() for q in self.quarantined]}


@dataclass(slots=True)
class Prepared:
    """One call's samples as :meth:`IngestPipeline.prepare` left them: checked, normalised and keyed, nothing
    written yet. :meth:`IngestPipeline.write` stores any number of them in the caller's transaction and
    completes ``report`` (accepted, duplicates, stored)."""

    report: IngestReport  # ``quarantined`` already filled
    samples: list[Sample]  # the good samples, unique within the call, in payload order
    stamps: list[str]  # naive UTC ISO time of each sample (in its key, and SQLite's storage format)
    quarantine: list[dict[str, Any]]  # the call's quarantine rows (one per bad sample)
    repeated: int  # samples that repeated an earlier one of the call
    received_at: datetime
    indexes: list[int | None] = field(default_factory=list)  # each sample's position in the payload


def _by_time(sample: Sample) -> datetime:
    return sample.time


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _bounded(key: str) -> str:
    if len(key) <= _MAX_KEY:
        return key
    return key[:_MAX_KEY - 65] + "#" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def idempotency_key(patient_id: str, device: str | None, metric: str, time: datetime,
                    client_id: str | None = None) -> str:
    """``<patient>|<device>|id:<client id>``, else ``<patient>|<device>|<metric>|<ISO UTC time>``."""
    if client_id is not None:
        return _bounded(f"{patient_id}|{device or '-'}|id:{client_id}")
    return _bounded(f"{patient_id}|{device or '-'}|{metric}|"
                    f"{time.astimezone(UTC).replace(tzinfo=None).isoformat(timespec='microseconds')}Z")


def _payload_bytes(raw: Any) -> bytes:
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if isinstance(raw, str):
        return raw.encode("utf-8", "replace")
    try:
        return orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return repr(raw).encode("utf-8", "replace")


class IngestPipeline:
    """Parse, validate, normalise, rate-limit and store device samples; notify listeners after commit.

    ``store``: where samples go. ``clock``: the time written as ``received_at`` and the reference for
    ``max_future`` (samples later than ``clock() + max_future`` are quarantined as ``future-time``; None
    turns that check off). ``rate_limiter``: per (patient, device) token buckets, or None for no limit.
    ``patient_exists(store, raw_id) -> stored id | None`` resolves an id or MRN (default: the record
    store); found patients are cached.
    """

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = _utcnow,
                 rate_limiter: RateLimiter | None = None, max_future: timedelta | None = timedelta(days=1),
                 patient_exists: Callable[[Store, str], str | None] | None = None,
                 slow_listener_seconds: float = 0.05) -> None:
        self.store = store
        self.clock = clock
        self.rate_limiter: RateLimiter = rate_limiter or Unlimited()
        self.max_future = max_future
        self._patient_exists = patient_exists or _record_patient
        self._patients: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.slow_listener_seconds = slow_listener_seconds
        self.listener_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------------------------ listeners

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(newly_stored_samples)`` after each commit that stored something (see module doc)."""
        with self._lock:
            self._listeners = [*self._listeners, fn]

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners = [f for f in self._listeners if f != fn]  # == : bound methods are new objects

    def notify(self, stored: list[Sample]) -> None:
        """Hand newly stored samples to the listeners (as :meth:`ingest` does after its commit). For a caller
        that stored through another pipeline inside its own, larger transaction (the MQTT batch handler)."""
        self._notify(stored)

    def _notify(self, stored: list[Sample]) -> None:
        for fn in self._listeners:
            started = _time.perf_counter()
            try:
                fn(stored)
            except Exception:
                log.exception("sample listener %r failed; ingest continues", fn)
            elapsed = _time.perf_counter() - started
            name = getattr(fn, "__qualname__", repr(fn))
            self.listener_seconds[name] = self.listener_seconds.get(name, 0.0) + elapsed
            if elapsed > self.slow_listener_seconds:
                log.warning("sample listener %s took %.0f ms for %d samples: move its work off the ingest "
                            "thread", name, elapsed * 1000, len(stored))

    # ------------------------------------------------------------------------------------ entry points

    def resolve_patient(self, patient_id: str) -> str:
        """The stored id of a patient id or MRN; :class:`UnknownPatientError` when there is none."""
        found = self._patients.get(patient_id)
        if found is None:
            found = self._patient_exists(self.store, patient_id)
            if found is None:
                raise UnknownPatientError(patient_id)
            if len(self._patients) > 100_000:
                self._patients.clear()
            self._patients[patient_id] = found
        return found

    def ingest(self, payload: bytes | bytearray | str | list[Any] | dict[str, Any], *, patient_id: str,
               device: str | None, source: str, rate_key: str | None = None) -> IngestReport:
        """Ingest a payload in any supported format (JSON bytes/str, or already-decoded JSON).

        ``device``, when given, is the authenticated device and wins over a device named in the payload.
        The rate limit bucket is ``(patient, rate_key or device)``: the HTTP and WebSocket entrances pass the
        caller (``device:<key id>`` or the user name), MQTT and the fleet leave it to the device.
        Raises :class:`UnknownPatientError`, :class:`RateLimitedError`, :class:`BatchTooLargeError`, and
        :class:`PayloadError` for an unreadable payload (after quarantining it)."""
        pid = self.resolve_patient(patient_id)
        try:
            data = decode(payload) if isinstance(payload, bytes | bytearray | str) else payload
            parsed = parse_payload(data)
        except PayloadError as exc:
            self._acquire(pid, rate_key or device, 1)
            self._quarantine_payload(pid, device, source, payload, exc)
            raise
        return self._store(pid, device, source, parsed, rate_key)

    def ingest_samples(self, samples: Sequence[Reading | Sample], *, patient_id: str, device: str | None,
                       source: str, rate_key: str | None = None) -> IngestReport:
        """Ingest already-parsed samples: :class:`~medtwin.stream.parse.Reading` (value in the device's
        unit, timezone-aware time) or :class:`~medtwin.vocab.Sample` (re-validated; its own
        idempotency key is replaced by the pipeline's). Same checks, storage, report and listeners as
        :meth:`ingest`."""
        pid = self.resolve_patient(patient_id)
        readings: list[Reading] = []
        problems: list[Problem] = []
        for i, s in enumerate(samples):
            if isinstance(s, Sample):
                s = Reading(s.metric, s.time, s.original_value, s.original_unit, s.device, None, i, f"[{i}]")
            elif not isinstance(s, Reading):
                problems.append(Problem(i, f"[{i}]", "malformed", f"expected a Reading, got {type(s).__name__}",
                                        raw=repr(s)))
                continue
            elif s.index != i or s.path != f"[{i}]":
                s = Reading(s.metric, s.time, s.value, s.unit, s.device, s.client_id, i, f"[{i}]", s.fields,
                            s.raw, s.subject)
            if s.time.tzinfo is None or s.time.utcoffset() is None:
                problems.append(Problem(i, f"[{i}].time", "naive-time", "time has no timezone",
                                        raw=_reading_json(s), metric=s.metric, device=s.device))
                continue
            readings.append(s)
        return self._store(pid, device, source, ParseResult("samples", readings, problems), rate_key)

    # ------------------------------------------------------------------------------------ prepare + write
    # The two halves of every entrance: HTTP/WebSocket/fleet call them through ingest() (one call, one
    # transaction); the MQTT batch handler prepares each (patient, device) group of a batch and writes them
    # all in one transaction.

    def prepare(self, parsed: ParseResult, *, patient_id: str, device: str | None, source: str,
                rate_key: str | None = None, now: datetime | None = None) -> Prepared:
        """Check one call's parsed samples without writing anything: resolve the patient, charge the rate
        bucket ``(patient, rate_key or device)`` for the whole call, convert units, check range, time and
        FHIR subject, and key each sample. ``now`` (default ``clock()``) is the receipt time.

        Raises :class:`UnknownPatientError`, :class:`RateLimitedError` or :class:`BatchTooLargeError`
        (nothing charged then)."""
        return self._prepare(self.resolve_patient(patient_id), device, source, parsed, rate_key, now)

    def write(self, connection: Connection, batch: Sequence[Prepared],
              quarantine: Sequence[dict[str, Any]] = ()) -> None:
        """Store prepared calls on ``connection``, inside the caller's transaction: one quarantine insert
        (the calls' bad samples plus ``quarantine``, rows shaped like :meth:`SampleRepository.quarantine_ignore`
        takes) and one sample insert for all of them, stamped with the first call's ``received_at``. Then
        completes each report: ``accepted`` and ``stored`` (time order) count a key at most once across the
        batch, ``duplicates`` the rest. Listeners are not told: call :meth:`notify` after the commit."""
        repo = SampleRepository(connection, self.store.codec)
        rows = [*quarantine, *(row for p in batch for row in p.quarantine)]
        if rows:
            repo.quarantine_ignore(rows)
        if not batch:
            return
        if len(batch) == 1:
            samples, stamps = batch[0].samples, batch[0].stamps
        else:
            samples = [s for p in batch for s in p.samples]
            stamps = [t for p in batch for t in p.stamps]
        inserted = repo.insert_ignore(samples, batch[0].received_at, iso_times=stamps)
        held = repo.stored_values([s.idempotency_key for s in samples if s.idempotency_key not in inserted])
        for p in batch:
            stored = [s for s in p.samples if s.idempotency_key in inserted]
            if len(batch) > 1:
                inserted.difference_update(s.idempotency_key for s in stored)  # claimed by this call
            conflicts = self._conflicts(repo, p, held, inserted)
            if len(batch) > 1:  # a later call of the batch with one of these keys is compared with them
                held.update((s.idempotency_key, s.value) for s in stored)
            stored.sort(key=_by_time)
            p.report.accepted = len(stored)
            p.report.duplicates = p.repeated + len(p.samples) - len(stored) - conflicts
            p.report.stored = stored

    def _conflicts(self, repo: SampleRepository, p: Prepared, held: dict[str, float], inserted: set[str]) -> int:
        """Quarantine (reason ``conflict``) each sample of ``p`` whose key already holds a different value: a
        resent sample is a duplicate, a different value under the same key is never silently dropped."""
        if not held:  # nothing of the batch was stored before (the common case)
            return 0
        rows: list[dict[str, Any]] = []
        for i, s in enumerate(p.samples):
            old = held.get(s.idempotency_key)
            if s.idempotency_key in inserted or old is None or math.isclose(old, s.value, rel_tol=1e-9, abs_tol=1e-12):
                continue
            index = p.indexes[i] if i < len(p.indexes) else None
            field = f"[{index}].value" if index is not None else "value"
            detail = (f"{old:g} {s.unit} is already stored under this sample's key ({s.device or '-'}, {s.metric} at "
                      f"{s.time.isoformat()}); {s.value:g} was not stored")
            p.report.quarantined.append(QuarantinedItem(index, field, "conflict", detail))
            rows.append(self._quarantine_row(s.patient_id, Problem(index, field, "conflict", detail,
                                                                   _sample_json(s), s.metric, s.time, s.device),
                                             s.device, s.source, p.received_at))
        if rows:
            repo.quarantine_ignore(rows)
        return len(rows)

    # ------------------------------------------------------------------------------------ internals

    def _acquire(self, pid: str, device: str | None, cost: int) -> None:
        wait = self.rate_limiter.try_acquire((pid, device), cost)
        if wait is None:
            return
        if wait == float("inf"):
            limit = int(getattr(self.rate_limiter, "capacity", 0))
            raise BatchTooLargeError(cost, limit)
        raise RateLimitedError(wait, device)

    def _store(self, pid: str, device: str | None, source: str, parsed: ParseResult,
               rate_key: str | None = None) -> IngestReport:
        prepared = self._prepare(pid, device, source, parsed, rate_key, None)
        with self.store.begin() as connection:
            self.write(connection, [prepared])
        if prepared.report.stored:
            self._notify(prepared.report.stored)
        return prepared.report

    def _prepare(self, pid: str, device: str | None, source: str, parsed: ParseResult, rate_key: str | None,
                 now: datetime | None) -> Prepared:
        report = IngestReport(pid, source, parsed.format, received=parsed.count)
        self._acquire(pid, rate_key or device, report.received)
        now = self.clock() if now is None else now
        latest = now + self.max_future if self.max_future is not None else None
        good: list[Sample] = []
        bad: list[Problem] = list(parsed.problems)
        units = CANONICAL_UNITS
        seen: dict[str, float] = {}  # key -> value, of the call's good samples
        indexes: list[int | None] = []
        stamps: list[str] = []  # naive UTC ISO time of each good sample (key, and SQLite storage)
        repeated = 0
        prefix_dev: Any = object()
        prefix = ""
        for r in parsed.readings:
            dev = device if device is not None else r.device
            checked = self._check(r, pid, dev, latest)
            if type(checked) is Problem:
                bad.append(checked)
                continue
            value, time = checked  # type: ignore[misc]
            if dev is not prefix_dev:
                prefix_dev, prefix = dev, f"{pid}|{dev or '-'}|"
            stamp = time.replace(tzinfo=None).isoformat(timespec="microseconds")
            key = f"{prefix}id:{r.client_id}" if r.client_id is not None else f"{prefix}{r.metric}|{stamp}Z"
            if len(key) > _MAX_KEY:
                key = _bounded(key)
            if key in seen:
                if not math.isclose(seen[key], value, rel_tol=1e-9, abs_tol=1e-12):  # never a silent duplicate
                    bad.append(Problem(r.index, r.field_path("value"), "conflict", f"another sample of this call has "
                                       f"the same key with value {seen[key]:g}; {value:g} was not stored", r.raw,
                                       r.metric, time, dev))
                else:
                    repeated += 1
                continue
            seen[key] = value
            stamps.append(stamp)
            indexes.append(r.index)
            good.append(Sample(pid, r.metric, time, value, units[r.metric], r.value, r.unit, dev, source, key))
        report.quarantined = sorted((QuarantinedItem(p.index, p.field, p.reason, p.detail) for p in bad),
                                    key=lambda q: (q.index if q.index is not None else -1, q.field))
        rows = [self._quarantine_row(pid, p, device or p.device, source, now) for p in bad]
        return Prepared(report, good, stamps, rows, repeated, now, indexes)

    def _check(self, r: Reading, pid: str, dev: str | None,
               latest: datetime | None) -> tuple[float, datetime] | Problem:
        """A reading's value in its metric's canonical unit and its UTC time, or the problem with it."""
        try:
            value = metrics.normalise(r.metric, r.value, r.unit)
        except metrics.MetricError as err:
            return Problem(r.index, r.field_path(err.field), err.reason, err.detail,
                           r.raw if r.raw is not None else _reading_json(r), r.metric, r.time, dev)
        time = r.time if r.time.tzinfo is UTC else r.time.astimezone(UTC)
        if latest is not None and time > latest:
            return Problem(r.index, r.field_path("time"), "future-time",
                           f"time {time.isoformat()} is more than {self.max_future} after the server clock", r.raw,
                           r.metric, time, dev)
        if r.subject is not None and r.subject != pid:
            return Problem(r.index, r.field_path("subject"), "patient-mismatch",
                           "the Observation's subject is another patient", r.raw, r.metric, time, dev)
        return value, time

    def _quarantine_row(self, pid: str, problem: Problem, device: str | None, source: str,
                        now: datetime) -> dict[str, Any]:
        payload = _payload_bytes(problem.raw)
        digest = hashlib.sha256(payload + b"\x00" + problem.field.encode() + b"\x00" + problem.reason.encode())
        return {"patient_id": pid, "device": device, "metric": problem.metric, "time": problem.time,
                "received_at": now, "source": source, "reason": problem.reason, "field": problem.field[:255],
                "detail": problem.detail[:2000], "payload": payload,
                "idempotency_key": _bounded(f"q|{pid}|{device or '-'}|{digest.hexdigest()}")}

    def _quarantine_payload(self, pid: str, device: str | None, source: str, payload: Any,
                            exc: PayloadError) -> None:
        row = self._quarantine_row(pid, Problem(None, exc.field, exc.reason, exc.detail, raw=payload), device,
                                   source, self.clock())
        body: bytes = row["payload"]
        if len(body) > MAX_QUARANTINED_PAYLOAD:  # the sender got the error and still holds it; bound the store
            digest = hashlib.sha256(body).hexdigest()
            row["payload"] = body[:MAX_QUARANTINED_PAYLOAD]
            row["detail"] = (f"{row['detail']} [first {MAX_QUARANTINED_PAYLOAD} of {len(body)} bytes kept; "
                             f"sha256 {digest}]")[:2000]
        with self.store.begin() as connection:
            SampleRepository(connection, self.store.codec).quarantine_ignore([row])


def _sample_json(s: Sample) -> dict[str, Any]:
    return {"metric": s.metric, "time": s.time.isoformat(), "value": s.original_value, "unit": s.original_unit,
            "device": s.device}


def _reading_json(r: Reading) -> dict[str, Any]:
    return {"metric": r.metric, "time": r.time.isoformat(), "value": r.value, "unit": r.unit, "device": r.device,
            "id": r.client_id}


def _record_patient(store: Store, raw: str) -> str | None:
    from medtwin.store.records import resolve_patient

    return resolve_patient(store, raw)
