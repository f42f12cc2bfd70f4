"""The audit trail: an append-only chain of records in the database, sealed with a key from the key ring.

Each record's ``hash = HMAC-SHA256(audit key, prev_hash || canonical JSON of its fields and key id)``;
``key_id`` names the audit key of the key ring that sealed it (so the audit key can be rotated while older
records stay verifiable), ``prev_hash`` is the hash of the record before it (64 zeros for the first).
Records written before the chain was keyed (migration ``0004_keyed_audit``) have ``key_id`` NULL and a plain
``SHA-256``; they are verified as such, but after the first keyed record every record must be keyed. Someone
who can write to the database but does not hold the key can therefore neither append a valid record nor edit
and re-chain one. A one-row ``audit_head`` table holds the newest sequence number and hash; appends lock it
first (an ``UPDATE``), so concurrent writers are serialised on SQLite and PostgreSQL alike and sequence
numbers have no gaps.

:func:`verify` walks the chain and names the first bad record and the kind of tampering:
``modified`` (fields no longer match the MAC), ``deleted`` (a missing record: a gap, a link to a hash that is
no longer there, or a chain shorter than the head says), ``inserted`` (a record whose successor links past
it, records beyond the head, or an unkeyed record after keyed ones), ``reordered`` (a record linking to one
that comes later) and ``unverifiable`` (sealed with an audit key the key ring does not hold).

Deleting the tail *and* rewinding the head leaves a shorter chain that is intact in itself; so does a chain
rewritten from scratch by someone holding the key. Against both, :func:`checkpoint` exports the head sealed
with the audit key (``medtwin audit checkpoint --out FILE``; keep the file elsewhere) and
:func:`verify_checkpoint` checks that the chain still holds the checkpointed record with the same hash
(``truncated`` or ``modified`` otherwise).

The key comes from the key ring bound to the database engine (:func:`bind`, done by the API's
``install_security`` and by the CLI), else from the key ring the process loaded
(:func:`medtwin.security.crypto.load_keyring` calls :func:`use_by_default`); a store without any key ring
(tests with the plain codec) writes unkeyed records, and refuses to once the chain is keyed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, insert, select, update

from medtwin.security.crypto import versioned_json
from medtwin.store.security_tables import audit_head, audit_log

if TYPE_CHECKING:
    from medtwin.security.crypto import KeyRing

GENESIS = "0" * 64
OUTCOMES = ("success", "denied", "failure")
HASHED_FIELDS = ("at", "actor", "role", "action", "resource_type", "resource_id", "patient_id", "outcome",
                 "status", "client", "detail")
CHECKPOINT_VERSION = 1


class AuditKeyError(RuntimeError):
    """The chain is keyed but no audit key is available, or a checkpoint is invalid."""


@dataclass(frozen=True)
class AuditKeys:
    """The audit keys of a key ring: the active one seals new records, all of them verify."""

    active: str
    keys: Mapping[str, bytes]

    @classmethod
    def from_keyring(cls, ring: KeyRing) -> AuditKeys:
        return cls(ring.audit_active, dict(ring.audit_keys))


_BOUND: weakref.WeakKeyDictionary[Engine, AuditKeys] = weakref.WeakKeyDictionary()
_DEFAULT: list[AuditKeys] = []


def bind(engine: Engine, ring: KeyRing) -> None:
    """Seal and verify the audit chain of this engine's database with ``ring``'s audit keys."""
    _BOUND[engine] = AuditKeys.from_keyring(ring)


def use_by_default(ring: KeyRing) -> None:
    """The audit keys for engines not bound with :func:`bind` (the key ring this process loaded)."""
    _DEFAULT[:] = [AuditKeys.from_keyring(ring)]


def keys_for(conn: Connection) -> AuditKeys | None:
    return _BOUND.get(conn.engine) or (_DEFAULT[0] if _DEFAULT else None)


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
    key_id: str | None = None


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(fields: dict[str, Any], prev_hash: str, key: bytes | None = None, key_id: str | None = None) -> str:
    """The seal of one record: HMAC-SHA256 with ``key`` (its id sealed too), or plain SHA-256 without one
    (records from before the chain was keyed)."""
    payload = {k: fields.get(k) for k in HASHED_FIELDS}
    if key is None:
        return hashlib.sha256(prev_hash.encode("ascii") + canonical(payload)).hexdigest()
    payload["key_id"] = key_id
    return hmac.new(key, prev_hash.encode("ascii") + canonical(payload), hashlib.sha256).hexdigest()


def _clip(value: str | None, n: int) -> str | None:
    return None if value is None else value[:n]


def append(conn: Connection, entry: AuditEntry, clock: Callable[[], datetime],
           keys: AuditKeys | None = None) -> AuditRecord:
    """Append one record inside the caller's transaction (commit it promptly: it holds the chain lock)."""
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}")
    keys = keys or keys_for(conn)
    locked = conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1))
    if locked.rowcount == 0:  # tables made without the migration's seed row
        conn.execute(insert(audit_head).values(id=1, seq=1, hash=GENESIS))
    seq, prev_hash = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    if keys is None and conn.execute(select(audit_log.c.key_id).where(
            audit_log.c.seq == seq - 1, audit_log.c.key_id.is_not(None))).first() is not None:
        raise AuditKeyError("the audit chain is keyed but no audit key is configured (load the key ring)")
    at = clock().astimezone(UTC).isoformat(timespec="microseconds")
    fields: dict[str, Any] = {
        "at": at, "actor": _clip(entry.actor, 200) or "", "role": entry.role[:20], "action": entry.action[:20],
        "resource_type": entry.resource_type[:64], "resource_id": _clip(entry.resource_id, 200),
        "patient_id": _clip(entry.patient_id, 64), "outcome": entry.outcome, "status": entry.status,
        "client": _clip(entry.client, 64),
        "detail": None if entry.detail is None else canonical(entry.detail).decode("utf-8"),
    }
    key_id = None if keys is None else keys.active
    digest = record_hash(fields, prev_hash, None if keys is None else keys.keys[keys.active], key_id)
    conn.execute(insert(audit_log).values(seq=seq, prev_hash=prev_hash, hash=digest, key_id=key_id, **fields))
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
    return AuditRecord(seq=seq, prev_hash=prev_hash, hash=digest, key_id=key_id, **fields)


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
    problem: str | None = None  # modified | deleted | inserted | reordered | unverifiable | truncated
    message: str = "audit chain intact"
    unkeyed: int = 0  # records from before the chain was keyed (plain SHA-256)


def _seal_problem(rec: AuditRecord, keys: AuditKeys | None, keyed_seen: bool) -> tuple[str, str] | None:
    """(problem, message) when the record's own seal is wrong, else None."""
    fields = {k: getattr(rec, k) for k in HASHED_FIELDS}
    if rec.key_id is None:
        if keyed_seen:
            return "inserted", (f"record {rec.seq} was inserted: it has no audit key although records before it "
                                "have, so medtwin did not write it")
        if record_hash(fields, rec.prev_hash) != rec.hash:
            return "modified", f"record {rec.seq} was modified: its content does not match its hash"
        return None
    key = None if keys is None else keys.keys.get(rec.key_id)
    if key is None:
        return "unverifiable", (f"record {rec.seq} is sealed with audit key {rec.key_id!r}, which is not in the "
                                "key ring: load the key ring that wrote it")
    if not hmac.compare_digest(record_hash(fields, rec.prev_hash, key, rec.key_id), rec.hash):
        return "modified", (f"record {rec.seq} was modified (or forged): its content does not match its "
                            "keyed hash")
    return None


def _link_problem(rows: list[AuditRecord], i: int, prev_hash: str, expected_seq: int,
                  position: dict[str, int]) -> tuple[int, str, str] | None:
    """(seq, problem, message) when record ``i`` does not follow the one before it, else None."""
    rec = rows[i]
    if rec.prev_hash != prev_hash:
        j = position.get(rec.prev_hash)
        if j is not None and j > i:
            return rec.seq, "reordered", f"record {rec.seq} was reordered: it follows record {rows[j].seq} in the chain"
        if j is not None and j < i - 1:
            first = rows[j + 1]
            return first.seq, "inserted", f"record {first.seq} was inserted: record {rec.seq} links to record {rows[j].seq}"
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if nxt is not None and nxt.prev_hash == prev_hash:
            return rec.seq, "inserted", f"record {rec.seq} was inserted: it is not part of the chain"
        return expected_seq, "deleted", (f"record {expected_seq} was deleted: record {rec.seq} links to a record "
                                         "that is missing")
    if rec.seq != expected_seq:
        return expected_seq, "deleted", f"record {expected_seq} was deleted (sequence jumps to {rec.seq})"
    return None


def _head_problem(last_seq: int, last_hash: str, head_seq: int, head_hash: str) -> tuple[int, str, str] | None:
    if last_seq < head_seq:
        return last_seq + 1, "deleted", (f"record {last_seq + 1} was deleted: the chain ends at {last_seq}, the head "
                                         f"says {head_seq}")
    if last_seq > head_seq:
        return head_seq + 1, "inserted", f"record {head_seq + 1} was inserted: the head ends the chain at {head_seq}"
    if last_hash != head_hash:
        return last_seq, "modified", f"record {last_seq} does not match the head hash"
    return None


def verify(conn: Connection, keys: AuditKeys | None = None) -> Verification:
    keys = keys or keys_for(conn)
    rows = [_row(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))]
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
    head_seq, head_hash = (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)
    position = {r.hash: i for i, r in enumerate(rows)}
    unkeyed = sum(1 for r in rows if r.key_id is None)

    def bad(seq: int, problem: str, message: str) -> Verification:
        return Verification(False, len(rows), head_seq, head_hash, seq, problem, message, unkeyed)

    prev_hash, expected_seq, keyed_seen = GENESIS, 1, False
    for i, rec in enumerate(rows):
        sealed = _seal_problem(rec, keys, keyed_seen)
        if sealed is not None:
            return bad(rec.seq, *sealed)
        linked = _link_problem(rows, i, prev_hash, expected_seq, position)
        if linked is not None:
            return bad(*linked)
        prev_hash, expected_seq, keyed_seen = rec.hash, rec.seq + 1, keyed_seen or rec.key_id is not None
    ended = _head_problem(expected_seq - 1, prev_hash, head_seq, head_hash)
    if ended is not None:
        return bad(*ended)
    return Verification(True, len(rows), head_seq, head_hash, unkeyed=unkeyed)


# --- checkpoints -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """The head of the chain at one moment, sealed with an audit key (kept outside the database)."""

    seq: int
    hash: str
    at: str
    key_id: str
    mac: str

    def _payload(self) -> bytes:
        return canonical({"version": CHECKPOINT_VERSION, "seq": self.seq, "hash": self.hash, "at": self.at,
                          "key_id": self.key_id})

    def to_json(self) -> str:
        return json.dumps({"version": CHECKPOINT_VERSION, "seq": self.seq, "hash": self.hash, "at": self.at,
                           "key_id": self.key_id, "mac": self.mac}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = versioned_json(text, "checkpoint", CHECKPOINT_VERSION, AuditKeyError)
        types = {"seq": int, "hash": str, "at": str, "key_id": str, "mac": str}
        for name, kind in types.items():
            if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
                raise AuditKeyError(f"checkpoint field '{name}' must be a {kind.__name__}")
        return cls(data["seq"], data["hash"], data["at"], data["key_id"], data["mac"])


def _checkpoint_mac(cp: Checkpoint, key: bytes) -> str:
    return hmac.new(key, b"medtwin audit checkpoint|" + cp._payload(), hashlib.sha256).hexdigest()


def checkpoint(conn: Connection, clock: Callable[[], datetime], keys: AuditKeys | None = None) -> Checkpoint:
    """The current head, sealed with the active audit key (verify the chain first: this trusts the head)."""
    keys = keys or keys_for(conn)
    if keys is None:
        raise AuditKeyError("a checkpoint needs the audit key: no key ring is loaded")
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
    seq, digest = (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)
    unsigned = Checkpoint(seq, digest, clock().astimezone(UTC).isoformat(timespec="seconds"), keys.active, "")
    return Checkpoint(seq, digest, unsigned.at, keys.active, _checkpoint_mac(unsigned, keys.keys[keys.active]))


def verify_checkpoint(conn: Connection, cp: Checkpoint, keys: AuditKeys | None = None) -> Verification:
    """:func:`verify`, then: the checkpoint is genuine and the chain still holds its record unchanged."""
    keys = keys or keys_for(conn)
    result = verify(conn, keys)
    if not result.ok:
        return result
    key = None if keys is None else keys.keys.get(cp.key_id)
    if key is None or not hmac.compare_digest(_checkpoint_mac(cp, key), cp.mac):
        return Verification(False, result.count, result.head_seq, result.head_hash, cp.seq, "checkpoint-invalid",
                            "the checkpoint's seal does not match (forged checkpoint or another key ring)",
                            result.unkeyed)
    if cp.seq == 0:
        return result
    stored = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == cp.seq)).scalar()
    if stored is None:
        return Verification(False, result.count, result.head_seq, result.head_hash, result.head_seq + 1,
                            "truncated", f"the chain was truncated: it ends at record {result.head_seq}, the "
                            f"checkpoint of {cp.at} holds record {cp.seq}", result.unkeyed)
    if stored != cp.hash:
        return Verification(False, result.count, result.head_seq, result.head_hash, cp.seq, "modified",
                            f"record {cp.seq} differs from the checkpoint of {cp.at}: the chain was rewritten "
                            "up to it", result.unkeyed)
    return Verification(True, result.count, result.head_seq, result.head_hash, unkeyed=result.unkeyed,
                        message=f"audit chain intact and holds the checkpoint of {cp.at} (record {cp.seq})")


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
