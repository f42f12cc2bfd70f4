"""The audit trail: an append-only hash chain in the database.

Each record's ``hash = SHA-256(prev_hash || canonical JSON of its fields)``; ``prev_hash`` is the hash of
the record before it (64 zeros for the first). A one-row ``audit_head`` table holds the newest sequence
number and hash; appends lock it first (an ``UPDATE``), so concurrent writers are serialised on SQLite and
PostgreSQL alike and sequence numbers have no gaps.

:func:`verify` walks the chain and names the first bad record and the kind of tampering:
``modified`` (fields no longer match the hash), ``deleted`` (a missing record: a gap, a link to a hash
that is no longer there, or a chain shorter than the head says), ``inserted`` (a record whose successor
links past it, or records beyond the head) and ``reordered`` (a record linking to one that comes later).
Publishing the head hash elsewhere (it is printed by ``medtwin audit verify``) also catches an attacker who
rewrites the whole chain and the head together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from medtwin.store.security_tables import audit_head, audit_log

GENESIS = "0" * 64
OUTCOMES = ("success", "denied", "failure")
HASHED_FIELDS = ("at", "actor", "role", "action", "resource_type", "resource_id", "patient_id", "outcome",
                 "status", "client", "detail")


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    role: str
    action: str
    resource_type: str
    outcome: str
    resource_id: str | None = None
    patient_id: str | None = None
    status: int | None = None
    client: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: str
    actor: str
    role: str
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: str | None
    outcome: str
    status: int | None
    client: str | None
    detail: str | None
    prev_hash: str
    hash: str


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(fields: dict[str, Any], prev_hash: str) -> str:
    payload = {k: fields.get(k) for k in HASHED_FIELDS}
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(payload)).hexdigest()


def _clip(value: str | None, n: int) -> str | None:
    return None if value is None else value[:n]


def append(conn: Connection, entry: AuditEntry, clock: Callable[[], datetime]) -> AuditRecord:
    """Append one record inside the caller's transaction (commit it promptly: it holds the chain lock)."""
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}")
    locked = conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1))
    if locked.rowcount == 0:  # tables made without the migration's seed row
        conn.execute(insert(audit_head).values(id=1, seq=1, hash=GENESIS))
    seq, prev_hash = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    at = clock().astimezone(UTC).isoformat(timespec="microseconds")
    fields: dict[str, Any] = {
        "at": at, "actor": _clip(entry.actor, 200) or "", "role": entry.role[:20], "action": entry.action[:20],
        "resource_type": entry.resource_type[:64], "resource_id": _clip(entry.resource_id, 200),
        "patient_id": _clip(entry.patient_id, 64), "outcome": entry.outcome, "status": entry.status,
        "client": _clip(entry.client, 64),
        "detail": None if entry.detail is None else canonical(entry.detail).decode("utf-8"),
    }
    digest = record_hash(fields, prev_hash)
    conn.execute(insert(audit_log).values(seq=seq, prev_hash=prev_hash, hash=digest, **fields))
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
    return AuditRecord(seq=seq, prev_hash=prev_hash, hash=digest, **fields)


def _row(row: Any) -> AuditRecord:
    m = row._mapping
    return AuditRecord(**{k: m[k] for k in AuditRecord.__dataclass_fields__})


def records(conn: Connection, patient_id: str | None = None, since_seq: int = 0,
            limit: int | None = None) -> Iterator[AuditRecord]:
    query = select(audit_log).where(audit_log.c.seq > since_seq).order_by(audit_log.c.seq)
    if patient_id is not None:
        query = query.where(audit_log.c.patient_id == patient_id)
    if limit is not None:
        query = query.limit(limit)
    for row in conn.execute(query):
        yield _row(row)


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None  # modified | deleted | inserted | reordered
    message: str = "audit chain intact"


def verify(conn: Connection) -> Verification:
    rows = [_row(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))]
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
    head_seq, head_hash = (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)
    position = {r.hash: i for i, r in enumerate(rows)}

    def bad(seq: int, problem: str, message: str) -> Verification:
        return Verification(False, len(rows), head_seq, head_hash, seq, problem, message)

    prev_hash, expected_seq = GENESIS, 1
    for i, rec in enumerate(rows):
        fields = {k: getattr(rec, k) for k in HASHED_FIELDS}
        if record_hash(fields, rec.prev_hash) != rec.hash:
            return bad(rec.seq, "modified", f"record {rec.seq} was modified: its content does not match its hash")
        if rec.prev_hash != prev_hash:
            j = position.get(rec.prev_hash)
            if j is not None and j > i:
                return bad(rec.seq, "reordered",
                           f"record {rec.seq} was reordered: it follows record {rows[j].seq} in the chain")
            if j is not None and j < i - 1:
                first = rows[j + 1]
                return bad(first.seq, "inserted",
                           f"record {first.seq} was inserted: record {rec.seq} links to record {rows[j].seq}")
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            if nxt is not None and nxt.prev_hash == prev_hash:
                return bad(rec.seq, "inserted", f"record {rec.seq} was inserted: it is not part of the chain")
            return bad(expected_seq, "deleted",
                       f"record {expected_seq} was deleted: record {rec.seq} links to a record that is missing")
        if rec.seq != expected_seq:
            return bad(expected_seq, "deleted", f"record {expected_seq} was deleted (sequence jumps to {rec.seq})")
        prev_hash, expected_seq = rec.hash, rec.seq + 1
    last_seq = expected_seq - 1
    if last_seq < head_seq:
        return bad(last_seq + 1, "deleted",
                   f"record {last_seq + 1} was deleted: the chain ends at {last_seq}, the head says {head_seq}")
    if last_seq > head_seq or prev_hash != head_hash:
        if last_seq > head_seq:
            return bad(head_seq + 1, "inserted",
                       f"record {head_seq + 1} was inserted: the head ends the chain at {head_seq}")
        return bad(last_seq, "modified", f"record {last_seq} does not match the head hash")
    return Verification(True, len(rows), head_seq, head_hash)


# --- FHIR AuditEvent ---------------------------------------------------------------------------
_ACTION_CODE = {"read": "R", "write": "C", "export": "R", "simulate": "E", "admin": "E", "research": "R",
                "login": "E", "logout": "E", "refresh": "E"}
_OUTCOME_CODE = {"success": "0", "denied": "4", "failure": "8"}
AUDIT_EVENT_NAMESPACE = uuid.UUID("5c0a4d9e-3a57-4b0e-9c52-6f1e2d7a8b90")


def to_audit_event(rec: AuditRecord) -> dict[str, Any]:
    """The record as a FHIR R4 AuditEvent (type rest/login per action, entity = patient and resource)."""
    is_login = rec.action in ("login", "logout", "refresh")
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid5(AUDIT_EVENT_NAMESPACE, f"{rec.seq}:{rec.hash}")),
        "type": ({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114",
                  "display": "User Authentication"} if is_login else
                 {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                  "display": "RESTful Operation"}),
        "action": _ACTION_CODE.get(rec.action, "E"),
        "recorded": rec.at,
        "outcome": _OUTCOME_CODE.get(rec.outcome, "8"),
        "agent": [{
            "who": {"display": rec.actor},
            "role": [{"text": rec.role}],
            "requestor": True,
            **({"network": {"address": rec.client, "type": "2"}} if rec.client else {}),
        }],
        "source": {"observer": {"display": "medtwin"}},
        "extension": [{"url": "urn:medtwin:audit:chain", "extension": [
            {"url": "seq", "valueInteger": rec.seq},
            {"url": "hash", "valueString": rec.hash},
            {"url": "prevHash", "valueString": rec.prev_hash},
            {"url": "action", "valueCode": rec.action},
        ]}],
    }
    entities: list[dict[str, Any]] = []
    if rec.patient_id:
        entities.append({"what": {"reference": f"Patient/{rec.patient_id}"},
                         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                  "code": "1", "display": "Person"}})
    if rec.resource_type:
        what = {"reference": f"{rec.resource_type}/{rec.resource_id}"} if rec.resource_id else {
            "display": rec.resource_type}
        entities.append({"what": what,
                         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                  "code": "2", "display": "System Object"}})
    if entities:
        event["entity"] = entities
    return event
