"""Alerts in the store: deduplicated, with a lifecycle ``open -> acknowledged -> resolved``.

* **Deduplication.** While an alert with a ``dedupe_key`` is unresolved (open or acknowledged), a repeat of
  its condition updates it (``last_seen_at``, ``occurrences``, ``score``, message and details; severity only
  ever goes up, unless the candidate says it follows the condition (``severity_follows``: a NEWS2 band) and
  then its peak is kept and still decides who closes it) instead of adding a row: one alert per condition, not one per sample. An escalation
  re-opens an acknowledged alert (the acknowledgement was for the lesser severity); ``acknowledged_*``
  keep the last acknowledgement.
* **Hysteresis.** :meth:`AlertRepository.open` is called when a condition *begins*; :meth:`touch` while
  it *continues*. ``touch`` never creates a row, so an alert a clinician resolved while its condition
  still held stays resolved until the condition clears and begins again (the engine tracks begin/clear).
* **Transitions.** ``acknowledge``: open -> acknowledged; ``resolve``: open or acknowledged -> resolved
  by a user. Anything else raises :class:`AlertTransitionError` (HTTP 409). Each transition is a
  compare-and-set ``UPDATE .. WHERE status = ..``, so a user and the engine racing on one alert cannot both
  win.
* **The condition clears** (:meth:`clear`). A low or medium alert is resolved by ``system``. A serious one
  (:func:`needs_person`: high or critical, from :data:`SEVERITY_LEVELS`) is never closed by the system
  alone: while open it stays open with ``condition_cleared_at`` set (on the worklist, "condition cleared")
  until a person acknowledges it, and that acknowledgement closes it (``resolved_by`` is the person); one a
  person had already acknowledged is resolved by ``system`` (``acknowledged_by`` keeps who saw it). The
  condition beginning again while the alert is unresolved updates it (``"recurred"``) and unsets
  ``condition_cleared_at``.

Times: ``opened_at`` / ``last_seen_at`` / ``condition_cleared_at`` are *data* times (when the condition
began / last held / ended: the engine passes the time the rule's verdict says it ended, for a consensus
glucose episode the first reading back in range, else the newest reading of the pass that cleared it);
``updated_at``, ``acknowledged_at``, ``resolved_at`` come from the clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import ColumnElement, Connection, case, func, insert, select, update

from medtwin.clock import as_utc
from medtwin.store.codec import Codec
from medtwin.store.live_tables import alerts

#: The alert severities, least severe first, and whether an alert of that severity needs a person to close
#: it (the one definition: :func:`needs_person`; rules declare their severities among these names).
SEVERITY_LEVELS: Final = (("low", False), ("medium", False), ("high", True), ("critical", True))
SEVERITIES: Final = tuple(name for name, _ in SEVERITY_LEVELS)
SEVERITY_RANK: Final = {s: i for i, s in enumerate(SEVERITIES, start=1)}
NEEDS_PERSON: Final = frozenset(name for name, person in SEVERITY_LEVELS if person)
STATUSES: Final = ("open", "acknowledged", "resolved")
UNRESOLVED: Final = ("open", "acknowledged")
SYSTEM_ACTOR: Final = "system"


class AlertTransitionError(Exception):
    """The transition is not allowed from the alert's current status (HTTP 409)."""

    def __init__(self, alert_id: str, status: str, action: str) -> None:
        super().__init__(f"alert {alert_id} is {status}; it cannot be {action}")
        self.alert_id, self.status, self.action = alert_id, status, action


def needs_person(severity: str) -> bool:
    """Whether an alert of this severity is closed only by a person: when its condition clears the system
    marks it "condition cleared" and leaves it open (high and critical)."""
    return severity in NEEDS_PERSON


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as the API's JSON writes times."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AlertCandidate:
    """What a rule says about a patient right now."""

    patient_id: str
    rule: str
    severity: str
    dedupe_key: str
    time: datetime  # data time the condition held
    message: str
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    began_at: datetime | None = None  # data time the condition began (default: time)
    #: the alert's severity follows the condition down as well as up (a NEWS2 band): on the way down the
    #: peak is kept in ``details["peak_severity"]`` and still decides who may close it (:attr:`Alert.needs_person`)
    severity_follows: bool = False

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"severity: must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")


@dataclass(frozen=True)
class Alert:
    id: str
    patient_id: str
    rule: str
    severity: str
    status: str
    dedupe_key: str
    opened_at: datetime
    updated_at: datetime
    last_seen_at: datetime
    occurrences: int
    score: float | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    message: str
    details: dict[str, Any]
    condition_cleared_at: datetime | None = None

    @property
    def needs_person(self) -> bool:
        """Serious now, or serious at its peak before its severity came down."""
        return needs_person(self.severity) or needs_person(str(self.details.get("peak_severity", "")))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "patient_id": self.patient_id, "rule": self.rule, "severity": self.severity,
                "status": self.status, "dedupe_key": self.dedupe_key, "opened_at": _iso(self.opened_at),
                "updated_at": _iso(self.updated_at), "last_seen_at": _iso(self.last_seen_at),
                "occurrences": self.occurrences, "score": self.score,
                "acknowledged_at": _iso(self.acknowledged_at), "acknowledged_by": self.acknowledged_by,
                "resolved_at": _iso(self.resolved_at), "resolved_by": self.resolved_by,
                "message": self.message, "details": self.details,
                "condition_cleared_at": _iso(self.condition_cleared_at), "needs_person": self.needs_person}


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class AlertRepository:
    """Alerts on one connection (the caller owns the transaction)."""

    def __init__(self, connection: Connection, codec: Codec, clock: Callable[[], datetime]) -> None:
        self.connection, self.codec, self.clock = connection, codec, clock

    # ------------------------------------------------------------------------------------------ reading

    def _row(self, row: Any) -> Alert:
        r = row._mapping
        details = orjson.loads(self.codec.open(r["details"])) if r["details"] is not None else {}
        return Alert(id=r["id"], patient_id=r["patient_id"], rule=r["rule"], severity=r["severity"],
                     status=r["status"], dedupe_key=r["dedupe_key"], opened_at=as_utc(r["opened_at"]),
                     updated_at=as_utc(r["updated_at"]), last_seen_at=as_utc(r["last_seen_at"]),
                     occurrences=int(r["occurrences"]), score=r["score"],
                     acknowledged_at=_maybe(r["acknowledged_at"]), acknowledged_by=r["acknowledged_by"],
                     resolved_at=_maybe(r["resolved_at"]), resolved_by=r["resolved_by"], message=r["message"],
                     details=details, condition_cleared_at=_maybe(r["condition_cleared_at"]))

    def get(self, alert_id: str) -> Alert | None:
        row = self.connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        return None if row is None else self._row(row)

    def unresolved(self, dedupe_key: str) -> Alert | None:
        row = self.connection.execute(
            select(alerts).where(alerts.c.dedupe_key == dedupe_key, alerts.c.status.in_(UNRESOLVED))
            .order_by(alerts.c.opened_at.desc()).limit(1)).first()
        return None if row is None else self._row(row)

    def unresolved_keys(self, patient_ids: Iterable[str]) -> set[str]:
        ids = list(patient_ids)
        keys: set[str] = set()
        for start in range(0, len(ids), 500):
            keys.update(self.connection.execute(
                select(alerts.c.dedupe_key).where(alerts.c.patient_id.in_(ids[start:start + 500]),
                                                  alerts.c.status.in_(UNRESOLVED))).scalars())
        return keys

    def list(self, *, allowed: frozenset[str] | None = None, patient_id: str | None = None,
             statuses: Sequence[str] = UNRESOLVED, rule: str | None = None, limit: int = 100,
             offset: int = 0) -> tuple[int, list[Alert]]:
        """(total, page) most urgent first: open before acknowledged before resolved, then severity, then
        the most recently seen. ``allowed``: the caller's visible patients (None: all)."""
        conditions: list[ColumnElement[bool]] = [alerts.c.status.in_(list(statuses))]
        if allowed is not None:
            if not allowed:
                return 0, []
            conditions.append(alerts.c.patient_id.in_(sorted(allowed)))
        if patient_id is not None:
            conditions.append(alerts.c.patient_id == patient_id)
        if rule is not None:
            conditions.append(alerts.c.rule == rule)
        total = int(self.connection.execute(select(func.count()).select_from(alerts).where(*conditions))
                    .scalar_one())
        status_rank = case({s: i for i, s in enumerate(STATUSES)}, value=alerts.c.status, else_=9)
        severity_rank = case(SEVERITY_RANK, value=alerts.c.severity, else_=0)
        rows = self.connection.execute(
            select(alerts).where(*conditions)
            .order_by(status_rank, severity_rank.desc(), alerts.c.last_seen_at.desc(), alerts.c.id)
            .limit(limit).offset(offset)).all()
        return total, [self._row(r) for r in rows]

    # ------------------------------------------------------------------------------------------ engine

    def open(self, candidate: AlertCandidate, occurrences: int = 1) -> tuple[Alert, str]:
        """The condition began: a new alert (``"opened"``), or the unresolved one with the same key updated
        (``"updated"`` / ``"escalated"``). ``occurrences``: the evaluations (readings) that showed it."""
        existing = self.touch(candidate, occurrences)
        if existing is not None:
            return existing
        now = as_utc(self.clock())
        alert_id = str(uuid.uuid4())
        began = as_utc(candidate.began_at or candidate.time)
        self.connection.execute(insert(alerts).values(
            id=alert_id, patient_id=candidate.patient_id, rule=candidate.rule, severity=candidate.severity,
            status="open", dedupe_key=candidate.dedupe_key, opened_at=began, updated_at=now,
            last_seen_at=as_utc(candidate.time), occurrences=occurrences, score=candidate.score, message=candidate.message,
            details=self.codec.seal(orjson.dumps(candidate.details))))
        created = self.get(alert_id)
        assert created is not None
        return created, "opened"

    def touch(self, candidate: AlertCandidate, occurrences: int = 1) -> tuple[Alert, str] | None:
        """The condition still holds: update the unresolved alert with this key (``"updated"``,
        ``"escalated"`` when the severity rose, ``"recurred"`` when its condition had cleared). None when there
        is none (resolved meanwhile: stays so)."""
        current = self.unresolved(candidate.dedupe_key)
        if current is None:
            return None
        rank, was = SEVERITY_RANK[candidate.severity], SEVERITY_RANK.get(current.severity, 0)
        escalated = rank > was
        details = candidate.details
        if candidate.severity_follows:
            peak = max((current.severity, str(current.details.get("peak_severity", "")), candidate.severity),
                       key=lambda s: SEVERITY_RANK.get(s, 0))
            details = {**details, "peak_severity": peak}
        values: dict[str, Any] = {
            "updated_at": as_utc(self.clock()), "occurrences": alerts.c.occurrences + occurrences,
            "last_seen_at": max(current.last_seen_at, as_utc(candidate.time)), "score": candidate.score,
            "message": candidate.message, "details": self.codec.seal(orjson.dumps(details)),
            "condition_cleared_at": None,
        }
        if escalated:
            values.update(severity=candidate.severity, status="open")
        elif candidate.severity_follows and rank < was:
            values.update(severity=candidate.severity)  # de-escalated: an acknowledgement stands
        done = self.connection.execute(update(alerts).where(
            alerts.c.id == current.id, alerts.c.status.in_(UNRESOLVED)).values(**values))
        if done.rowcount == 0:
            return None
        updated = self.get(current.id)
        assert updated is not None
        recurred = current.condition_cleared_at is not None
        return updated, ("escalated" if escalated else "recurred" if recurred else "updated")

    def clear(self, dedupe_key: str, at: datetime | None = None) -> tuple[Alert, str] | None:
        """The condition cleared (at data time ``at``, default the clock): ``(alert, "resolved")`` when the
        system resolved the unresolved alert with this key (low/medium, or serious and already acknowledged by
        a person), ``(alert, "cleared")`` when it is serious and open: it stays open, marked
        ``condition_cleared_at``. None: nothing unresolved (or a person closed it meanwhile)."""
        current = self.unresolved(dedupe_key)
        if current is None:
            return None
        if current.needs_person:
            cleared = self.connection.execute(update(alerts).where(
                alerts.c.id == current.id, alerts.c.status == "open", alerts.c.condition_cleared_at.is_(None)).values(
                condition_cleared_at=as_utc(at or self.clock()), updated_at=as_utc(self.clock())))
            if cleared.rowcount:
                alert = self.get(current.id)
                assert alert is not None
                return alert, "cleared"
            allowed: tuple[str, ...] = ("acknowledged",)  # a person saw it (escalation re-opens)
        else:
            allowed = UNRESOLVED
        try:
            return self._transition(current.id, allowed, "resolved", SYSTEM_ACTOR, "resolved"), "resolved"
        except AlertTransitionError:
            return None

    # ------------------------------------------------------------------------------------------ users

    def acknowledge(self, alert_id: str, actor: str) -> Alert:
        """open -> acknowledged; an open alert whose condition has cleared is closed by this acknowledgement
        (resolved by ``actor``), decided in the same compare-and-set, so a condition recurring meanwhile
        leaves it acknowledged instead."""
        return self._transition(alert_id, ("open",), "acknowledged", actor, "acknowledged")

    def resolve(self, alert_id: str, actor: str) -> Alert:
        return self._transition(alert_id, UNRESOLVED, "resolved", actor, "resolved")

    def _transition(self, alert_id: str, allowed_from: Sequence[str], to: str, actor: str, verb: str) -> Alert:
        now = as_utc(self.clock())
        values: dict[str, Any] = {"status": to, "updated_at": now}
        if to == "acknowledged":
            gone = alerts.c.condition_cleared_at.is_not(None)
            values.update(acknowledged_at=now, acknowledged_by=actor[:150],
                          status=case((gone, "resolved"), else_="acknowledged"),
                          resolved_at=case((gone, now), else_=alerts.c.resolved_at),
                          resolved_by=case((gone, actor[:150]), else_=alerts.c.resolved_by))
        else:
            values.update(resolved_at=now, resolved_by=actor[:150])
        done = self.connection.execute(update(alerts).where(
            alerts.c.id == alert_id, alerts.c.status.in_(list(allowed_from))).values(**values))
        current = self.get(alert_id)
        if current is None:
            raise LookupError(alert_id)
        if done.rowcount == 0:
            raise AlertTransitionError(alert_id, current.status, verb)
        return current
