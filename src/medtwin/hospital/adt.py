"""The live census from HL7 v2 ADT messages (parsed with python-hl7): who is where, since when.

Handled: A01 admit, A04 register, A02 transfer, A03 discharge, A08 update (corrects the unit), A11 cancel
admit, A12 cancel transfer, A13 cancel discharge. Rules:

* idempotent on the message control id (MSH-10): a repeat is acknowledged and changes nothing;
* out-of-order events are placed in time (EVN-2, else MSH-7) and the patient's stay replayed in time order;
  if that order is not a valid stay (a discharge before any admission, a transfer of someone not admitted)
  the message is refused and nothing of it is applied;
* a malformed message (garbled segment, missing field, unknown unit in PV1-3) is refused with the reason and
  the field, and quarantined (control id, reason; the raw text is kept for review, never in any output);
* with a :class:`Journal` (the app's: ``medtwin.store.hospital_journal``), every decision (accepted or
  quarantined) is journalled before it is applied and answered; a message the journal cannot take is
  answered ``AR`` (rejected: send again) and nothing of it is applied. A duplicate is not journalled again.

Patients are keyed by a keyed hash (HMAC-SHA-256) of PID-3, never stored in clear: the key comes from the
app's key ring (:func:`census_key`), else a random key of the tracker's own, so an MRN cannot be found again
by hashing guesses. Names are never read. The census
(:meth:`CensusTracker.census`) is counts and stays, the forecast's input.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Protocol

import hl7
import numpy as np
import orjson

from medtwin.hospital.history import Census

Pseudonymise = Callable[[str], str]

EVENTS = ("A01", "A02", "A03", "A04", "A08", "A11", "A12", "A13")
MAX_CONTROL_ID = 199  #: MSH-10's length in HL7 v2.7+ (ST)
log = logging.getLogger("medtwin.hospital.adt")


class AdtError(ValueError):
    """A message refused; ``field`` is the HL7 location (``PV1-3``, ``MSH-9``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class AdtEvent:
    control_id: str
    event: str
    time: datetime
    patient: str  # keyed hash of PID-3
    unit: str | None


@dataclass(frozen=True)
class Outcome:
    """The answer to one message: accepted (``AA``; ``duplicate`` when already applied), refused (``AE``, with
    the ``field`` at fault and the ``reason``) or not taken (``retry``: ``AR``, the sender sends it again)."""

    control_id: str
    accepted: bool
    duplicate: bool = False
    field: str | None = None
    reason: str | None = None
    retry: bool = False  #: not taken (the journal could not keep it): answered AR, the sender sends it again


@dataclass(frozen=True)
class Entry:
    """What the journal keeps of one decision: the message as received (``text``: HL7 ER7, or the Encounter
    as JSON), the event time that places it, the patient's keyed hash, and the reason when refused.

    ``text`` and ``reason`` (which may quote the message) carry names and identifiers: the journal seals
    them, and they stay out of the ``repr``, which reaches logs and tracebacks."""

    kind: str  # hl7v2 | encounter
    control_id: str
    accepted: bool
    text: str = dc_field(repr=False)
    time: datetime | None = None
    patient: str | None = None
    event: str | None = None
    unit: str | None = None
    field: str | None = None
    reason: str | None = dc_field(default=None, repr=False)


class Journal(Protocol):
    """Where decisions are kept before they are applied (``medtwin.store.hospital_journal.HospitalJournal``):
    ``record`` takes an :class:`Entry`'s fields and returns False when the accepted message is already
    journalled (a duplicate)."""

    def record(self, kind: str, control_id: str, accepted: bool, text: str, time: datetime | None = None,
               patient: str | None = None, event: str | None = None, unit: str | None = None,
               field: str | None = None, reason: str | None = None) -> bool: ...


def _ts(value: str, where: str) -> datetime:
    digits = value.split("+")[0].split("-")[0]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(digits[: len(datetime(2000, 1, 1).strftime(fmt))], fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise AdtError(where, f"not an HL7 timestamp: {value!r}")


def _field(message: hl7.Message, segment: str, index: int) -> str:
    try:
        return str(message.segment(segment)[index]).strip()
    except (KeyError, IndexError):
        return ""


def census_key(secret: bytes) -> Pseudonymise:
    """The keyed hash patients are known by: HMAC-SHA-256 under a key derived from ``secret`` (the key
    ring's pseudonym key) for this purpose only."""
    key = hmac.new(secret, b"medtwin hospital census v1", hashlib.sha256).digest()
    return lambda value: hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def parse_adt(text: str, units: set[str], pseudonymise: Pseudonymise | None = None) -> AdtEvent:
    """One ADT message -> event; :class:`AdtError` names the bad field."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not text.startswith("MSH|"):
        raise AdtError("MSH", "the message does not start with an MSH segment")
    for i, line in enumerate(text.split("\r")):
        if len(line) < 4 or not line[:3].isalnum() or line[3] != "|":
            raise AdtError(f"segment {i + 1}", f"garbled segment {line[:20]!r}")
    try:
        message = hl7.parse(text)
    except Exception as error:  # python-hl7 raises several types on bad input
        raise AdtError("MSH", f"cannot parse: {error}") from None
    control = _field(message, "MSH", 10)
    if not control:
        raise AdtError("MSH-10", "no message control id")
    if len(control) > MAX_CONTROL_ID:
        raise AdtError("MSH-10", f"a control id is at most {MAX_CONTROL_ID} characters")
    kind = _field(message, "MSH", 9).split("^")
    event = kind[1] if len(kind) > 1 and kind[1] else _field(message, "EVN", 1)
    if kind[0] != "ADT" or event not in EVENTS:
        raise AdtError("MSH-9", f"not a supported ADT event: {'^'.join(kind)!r}")
    when = _field(message, "EVN", 2) or _field(message, "MSH", 7)
    pid = _field(message, "PID", 3).split("^")[0]
    if not pid:
        raise AdtError("PID-3", "no patient identifier")
    unit = _field(message, "PV1", 3).split("^")[0] or None
    if event in ("A01", "A04", "A02", "A08") and unit is None:
        raise AdtError("PV1-3", f"{event} needs the assigned location")
    if unit is not None and unit not in units:
        raise AdtError("PV1-3", f"unknown unit {unit!r}")
    digest = (pseudonymise or census_key(os.urandom(32)))(pid)
    return AdtEvent(control, event, _ts(when, "EVN-2"), digest, unit)


@dataclass
class Stay:
    unit: str | None = None  # None: not in the hospital
    since: datetime | None = None
    history: list[tuple[str | None, datetime]] = dc_field(default_factory=list)  # (unit, since) for A12/A13


def replay(events: list[AdtEvent]) -> Stay:
    """The patient's state after their events in time order; AdtError if the order is not a valid stay."""
    stay = Stay()
    for e in sorted(events, key=lambda e: (e.time, e.control_id)):
        if e.event in ("A01", "A04"):
            if stay.unit is not None:
                raise AdtError("MSH-9", f"{e.event} at {e.time:%Y-%m-%d %H:%M} for a patient already in {stay.unit}")
            stay.history.append((stay.unit, e.time))
            stay.unit, stay.since = e.unit, e.time
        elif stay.unit is None and e.event != "A13":
            raise AdtError("MSH-9", f"{e.event} at {e.time:%Y-%m-%d %H:%M} before any admission")
        elif e.event in ("A02", "A03"):
            stay.history.append((stay.unit, stay.since or e.time))
            stay.unit, stay.since = (e.unit, e.time) if e.event == "A02" else (None, None)
        elif e.event == "A08":
            stay.unit = e.unit
        elif e.event == "A11":
            stay.unit, stay.since = None, None
        else:  # A12 cancel transfer, A13 cancel discharge: back to where they were
            if not stay.history:
                raise AdtError("MSH-9", f"{e.event} with nothing to cancel")
            stay.unit, stay.since = stay.history.pop()
    return stay


class Journalled(Protocol):
    """A journalled message as read back (``medtwin.store.hospital_journal.JournalledMessage``)."""

    @property
    def kind(self) -> str: ...
    @property
    def control_id(self) -> str: ...
    @property
    def field(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def event(self) -> str | None: ...
    @property
    def time(self) -> datetime | None: ...
    @property
    def patient(self) -> str | None: ...
    @property
    def unit(self) -> str | None: ...


class CensusTracker:
    """The current census per unit, fed message by message (thread-unsafe: one listener feeds it)."""

    def __init__(self, units: list[str], pseudonymise: Pseudonymise | None = None,
                 journal: Journal | None = None) -> None:
        self.units = list(units)
        self.pseudonymise = pseudonymise or census_key(os.urandom(32))
        self.journal = journal
        self._unit_set = set(units)
        self._events: dict[str, list[AdtEvent]] = {}
        self._stays: dict[str, Stay] = {}
        self._seen: set[str] = set()
        self.quarantine: list[dict[str, str]] = []
        self.handled: list[Outcome] = []  # every answer given, in order
        self._encounter_seen: dict[str, tuple[str, datetime]] = {}

    def handle(self, text: str) -> Outcome:
        outcome = self._handle(text)
        self.handled.append(outcome)
        return outcome

    def _handle(self, text: str) -> Outcome:
        try:
            event = parse_adt(text, self._unit_set, self.pseudonymise)
        except AdtError as error:
            return self._refuse(Entry("hl7v2", _control_of(text), False, text), error)
        return self._apply(event, text)

    def _apply(self, event: AdtEvent, text: str) -> Outcome:
        """A parsed message (live) or a journalled one (replay) into the census: checked, journalled, applied."""
        if event.control_id in self._seen:
            return Outcome(event.control_id, True, duplicate=True)
        entry = Entry("hl7v2", event.control_id, True, text, event.time, event.patient, event.event, event.unit)
        events = [*self._events.get(event.patient, []), event]
        try:
            if event.unit is not None and event.unit not in self._unit_set:  # parse_adt checks it; a replay too
                raise AdtError("PV1-3", f"unknown unit {event.unit!r}")
            stay = replay(events)
        except AdtError as error:
            return self._refuse(entry, error)
        answer = self._keep(entry)
        if answer is not None:
            return answer
        self._events[event.patient], self._stays[event.patient] = events, stay
        self._seen.add(event.control_id)
        return Outcome(event.control_id, True)

    def _keep(self, entry: Entry) -> Outcome | None:
        """Journal ``entry`` before it is applied: None to go on, else the answer instead (``AR`` when the
        journal could not keep it, a duplicate when it already holds it)."""
        if self.journal is None:
            return None
        try:
            fresh = self.journal.record(**vars(entry))
        except Exception:  # the store's own errors (connection lost, disk full...): nothing applied, resend
            log.exception("ADT message %s not journalled: answered AR", entry.control_id)
            return Outcome(entry.control_id, False, field="MSH-10", retry=True,
                           reason="not kept (the journal is unavailable): nothing applied, send it again")
        return None if fresh else Outcome(entry.control_id, True, duplicate=True)

    def _refuse(self, entry: Entry, error: AdtError) -> Outcome:
        entry = replace(entry, accepted=False, field=error.field, reason=error.message)
        answer = self._keep(entry)
        if answer is not None and answer.retry:
            return answer
        self.restore_refusal(entry)
        return Outcome(entry.control_id, False, field=error.field, reason=error.message)

    def restore_refusal(self, entry: Journalled) -> None:
        """Put a refusal in the quarantine (live, or read back from the journal)."""
        self.quarantine.append({"control_id": entry.control_id, "field": entry.field or "",
                                "reason": entry.reason or "", "raw": entry.text})

    def restore(self, accepted: Iterable[Journalled], quarantined: Iterable[Journalled]) -> list[Outcome]:
        """Rebuild the census from a journal: the accepted messages, in event-time order, through the very
        handling a live message gets (journalling off meanwhile), then the quarantine as it was. Returns the
        answers that differ from "accepted" (a unit since removed from the model...): none, normally.

        An HL7 message is replayed from its journalled event (control id, event, time, keyed patient, unit:
        what :func:`parse_adt` made of it) into :meth:`_apply`, without parsing it again (parsing is ~70 % of
        handling) or opening its sealed text; an Encounter is handled again from its JSON."""
        journal, self.journal = self.journal, None
        problems = []
        try:
            for message in accepted:
                outcome = self._replay(message)
                if not outcome.accepted or outcome.duplicate:
                    problems.append(outcome)
            for message in quarantined:
                self.restore_refusal(message)
                self.handled.append(Outcome(message.control_id, False, field=message.field, reason=message.reason))
        finally:
            self.journal = journal
        return problems

    def _replay(self, message: Journalled) -> Outcome:
        if message.kind != "hl7v2":
            return self.handle_encounter(orjson.loads(message.text))
        if message.time is None or not message.patient or not message.event:  # not journalled by this tracker
            return self.handle(message.text)
        outcome = self._apply(AdtEvent(message.control_id, message.event, message.time, message.patient,
                                       message.unit), "")
        self.handled.append(outcome)
        if not outcome.accepted:  # refused now (the model changed): quarantined with its text, read only then
            self.quarantine[-1]["raw"] = message.text
        return outcome

    def handle_encounter(self, resource: dict[str, object]) -> Outcome:
        outcome = self._handle_encounter(resource)
        self.handled.append(outcome)
        return outcome

    def _handle_encounter(self, resource: dict[str, object]) -> Outcome:
        """A FHIR R4 Encounter (create or update): the active ``location`` entry is where the patient is,
        since its period start; ``finished`` discharges, ``cancelled``/``entered-in-error`` removes.
        Idempotent on (id, meta.versionId); an update older (meta.lastUpdated) than the one applied is
        acknowledged and ignored (out of order)."""
        text = orjson.dumps(resource, default=str).decode()
        try:
            key, version, updated, stay = parse_encounter(resource, self._unit_set, self.pseudonymise)
        except AdtError as error:
            return self._refuse(Entry("encounter", str(resource.get("id", "")), False, text), error)
        control = f"Encounter/{key[:12]}/_history/{version}"
        previous = self._encounter_seen.get(key)
        if previous is not None and (previous[0] == version or previous[1] > updated):
            return Outcome(control, True, duplicate=True)
        answer = self._keep(Entry("encounter", control, True, text, updated, key, None, stay.unit))
        if answer is not None:
            return answer
        self._encounter_seen[key] = (version, updated)
        self._stays[f"enc:{key}"] = stay
        return Outcome(control, True)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.units, 0)
        for stay in self._stays.values():
            if stay.unit is not None:
                out[stay.unit] += 1
        return out

    def stays(self) -> list[tuple[str, datetime]]:
        """(unit, since) of every patient in place, without their key."""
        return [(s.unit, s.since) for s in self._stays.values() if s.unit is not None and s.since is not None]

    def moves_since(self, start: datetime) -> dict[str, int]:
        """Accepted ADT events timed at or after ``start``, by event code (the flows)."""
        out = dict.fromkeys(EVENTS, 0)
        for events in self._events.values():
            for e in events:
                if e.time >= start:
                    out[e.event] += 1
        return out

    def census(self, now: datetime) -> Census:
        """Patients in place (all in a bed: ADT says where, not whether they wait), with hours since."""
        here = [s for s in self._stays.values() if s.unit is not None and s.since is not None]
        index = {u: i for i, u in enumerate(self.units)}
        return Census(np.array([index[s.unit] for s in here if s.unit], dtype=np.int64),
                      np.full(len(here), 3, dtype=np.int64), np.ones(len(here), dtype=bool),
                      np.array([max((now - s.since).total_seconds() / 3600, 0.0) for s in here if s.since]))


def _fhir_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise AdtError(where, "a FHIR dateTime is required")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AdtError(where, f"not a FHIR dateTime: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_encounter(resource: dict[str, object], units: set[str],
                    pseudonymise: Pseudonymise | None = None) -> tuple[str, str, datetime, Stay]:
    """(keyed hash of the id, version, last updated, stay) of an Encounter; AdtError names the FHIR path."""
    if resource.get("resourceType") != "Encounter" or not isinstance(resource.get("id"), str):
        raise AdtError("Encounter.id", "an Encounter with an id")
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    version = str(meta.get("versionId", "1"))
    if not 0 < len(version) <= 64:
        raise AdtError("Encounter.meta.versionId", "1 to 64 characters")
    updated = _fhir_time(meta.get("lastUpdated", "1970-01-01T00:00:00Z"), "Encounter.meta.lastUpdated")
    key = (pseudonymise or census_key(os.urandom(32)))(str(resource["id"]))
    status = resource.get("status")
    if status in ("cancelled", "entered-in-error", "finished"):
        return key, version, updated, Stay()
    locations = resource.get("location")
    if not isinstance(locations, list) or not locations:
        raise AdtError("Encounter.location", "an in-progress Encounter needs its location")
    active = [i for i, loc in enumerate(locations) if isinstance(loc, dict) and loc.get("status", "active") == "active"]
    if not active:
        raise AdtError("Encounter.location", "no active location")
    i = active[-1]
    entry = locations[i]
    ref = entry.get("location", {}) if isinstance(entry.get("location"), dict) else {}
    unit = str(ref.get("reference", "")).removeprefix("Location/") or str(ref.get("display", ""))
    if unit not in units:
        raise AdtError(f"Encounter.location[{i}].location", f"unknown unit {unit!r}")
    period = entry.get("period") if isinstance(entry.get("period"), dict) else {}
    since = _fhir_time(period.get("start"), f"Encounter.location[{i}].period.start")
    return key, version, updated, Stay(unit, since)


def _first_segment(text: str) -> list[str]:
    """The fields of the message's first segment (MSH when well formed; read without parsing the message)."""
    return text.replace("\n", "\r").split("\r", 1)[0].split("|")


def _control_of(text: str) -> str:
    first = _first_segment(text)
    return first[9] if len(first) > 9 and first[0] == "MSH" else ""


def ack(text: str, outcome: Outcome, now: datetime) -> str:
    """The ACK (MSA AA) or NAK (MSA AE with an ERR segment naming the field) for a message."""
    msh = _first_segment(text)
    sender = msh[2:4] if len(msh) > 3 and msh[0] == "MSH" else ["", ""]
    event = msh[8].split("^")[1] if len(msh) > 8 and "^" in msh[8] else ""
    code = "AA" if outcome.accepted else ("AR" if outcome.retry else "AE")
    stamp = now.strftime("%Y%m%d%H%M%S")
    lines = [f"MSH|^~\\&|MEDTWIN|HOSPITAL|{sender[0]}|{sender[1]}|{stamp}||ACK^{event}|ACK{outcome.control_id}|P|2.5",
             f"MSA|{code}|{outcome.control_id}" + ("" if outcome.accepted else f"|{_clean(outcome.reason)}")]
    if not outcome.accepted:
        lines.append(f"ERR|||207|E||||{_clean(outcome.field)}: {_clean(outcome.reason)}")
    return "\r".join(lines) + "\r"


def _clean(value: str | None) -> str:
    return (value or "").replace("|", "/").replace("\r", " ").replace("^", " ").replace("~", " ").replace("&", "+")[:200]
