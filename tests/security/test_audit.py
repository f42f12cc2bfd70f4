from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, delete, select, update
from tests.security.conftest import FakeClock

from medtwin.security import audit
from medtwin.security.audit import AuditEntry
from medtwin.security.crypto import KeyRing
from medtwin.store.database import Store
from medtwin.store.security_tables import audit_head, audit_log


def _fill(store: Store, clock: Callable, n: int = 6) -> None:  # type: ignore[type-arg]
    with store.begin() as conn:
        for i in range(n):
            audit.append(conn, AuditEntry(actor=f"user{i}", role="clinician", action="read",
                                          resource_type="Observation", resource_id=f"o{i}",
                                          patient_id="p1", outcome="success", status=200,
                                          client="10.0.0.1", detail={"route": "/x"}), clock)


def _verify(store: Store) -> audit.Verification:
    with store.connect() as conn:
        return audit.verify(conn)


def test_intact_chain_verifies(store: Store, clock: Callable) -> None:  # type: ignore[type-arg]
    assert _verify(store).ok and _verify(store).count == 0
    _fill(store, clock)
    result = _verify(store)
    assert result.ok, result.message
    assert (result.count, result.head_seq) == (6, 6)
    with store.connect() as conn:
        rows = list(audit.records(conn))
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].prev_hash == audit.GENESIS and rows[1].prev_hash == rows[0].hash


def _swap(conn: Connection, a: int, b: int) -> None:
    cols = [c for c in audit_log.c if c.name != "seq"]
    ra = conn.execute(select(*cols).where(audit_log.c.seq == a)).one()._mapping
    rb = conn.execute(select(*cols).where(audit_log.c.seq == b)).one()._mapping
    conn.execute(update(audit_log).where(audit_log.c.seq == a).values(**dict(rb)))
    conn.execute(update(audit_log).where(audit_log.c.seq == b).values(**dict(ra)))


def _insert_forged_after(conn: Connection, seq: int) -> None:
    """Shift every later record up by one and put a correctly hashed forged record in the hole."""
    for s in sorted((r[0] for r in conn.execute(select(audit_log.c.seq).where(audit_log.c.seq > seq))),
                    reverse=True):
        conn.execute(update(audit_log).where(audit_log.c.seq == s).values(seq=s + 1))
    prev = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == seq)).scalar_one()
    fields = {"at": "2026-01-15T12:00:00.000000+00:00", "actor": "mallory", "role": "admin", "action": "read",
              "resource_type": "Patient", "resource_id": "p1", "patient_id": "p1", "outcome": "success",
              "status": 200, "client": None, "detail": None}
    conn.execute(audit_log.insert().values(seq=seq + 1, prev_hash=prev, hash=audit.record_hash(fields, prev),
                                           **fields))


@pytest.mark.parametrize(("tamper", "problem", "bad_seq"), [
    (lambda c: c.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="someone-else")),
     "modified", 3),
    (lambda c: c.execute(update(audit_log).where(audit_log.c.seq == 5).values(outcome="denied")), "modified", 5),
    (lambda c: c.execute(delete(audit_log).where(audit_log.c.seq == 4)), "deleted", 4),
    (lambda c: (c.execute(delete(audit_log).where(audit_log.c.seq == 2)),
                [c.execute(update(audit_log).where(audit_log.c.seq == s).values(seq=s - 1)) for s in (3, 4, 5, 6)]),
     "deleted", 2),
    (lambda c: c.execute(delete(audit_log).where(audit_log.c.seq == 6)), "deleted", 6),
    (lambda c: _insert_forged_after(c, 3), "inserted", 4),
    (lambda c: _insert_forged_after(c, 6), "inserted", 7),
    (lambda c: _swap(c, 2, 3), "reordered", 2),
    (lambda c: _swap(c, 4, 6), "reordered", 4),
])
def test_tampering_is_detected_and_named(store: Store, clock: Callable, tamper: Callable[[Connection], object],  # type: ignore[type-arg]
                                         problem: str, bad_seq: int) -> None:
    _fill(store, clock)
    with store.begin() as conn:
        tamper(conn)
    result = _verify(store)
    assert not result.ok
    assert (result.problem, result.first_bad_seq) == (problem, bad_seq), result.message
    assert f"record {bad_seq}" in result.message


def test_concurrent_appends_keep_one_chain(tmp_path, codec, clock) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'c.db'}", codec)
    store.migrate()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                with store.begin() as conn:
                    audit.append(conn, AuditEntry(actor=f"t{k}", role="admin", action="read",
                                                  resource_type="Patient", outcome="success",
                                                  resource_id=str(i)), clock)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = _verify(store)
    assert result.ok and result.count == 40, result.message


def test_audit_event_export(store: Store, clock: Callable) -> None:  # type: ignore[type-arg]
    _fill(store, clock, 1)
    with store.connect() as conn:
        rec = next(audit.records(conn))
    event = audit.to_audit_event(rec)
    assert event["resourceType"] == "AuditEvent"
    assert event["action"] == "R" and event["outcome"] == "0"
    assert event["recorded"] == "2026-01-15T12:00:00.000000+00:00"
    assert event["agent"][0]["network"]["address"] == "10.0.0.1"
    assert {"reference": "Patient/p1"} in [e["what"] for e in event["entity"]]
    chain = {x["url"]: list(x.values())[1] for x in event["extension"][0]["extension"]}
    assert chain["seq"] == 1 and chain["hash"] == rec.hash


def test_outcome_is_validated(store: Store, clock: Callable) -> None:  # type: ignore[type-arg]
    with store.begin() as conn, pytest.raises(ValueError, match="outcome"):
        audit.append(conn, AuditEntry("a", "admin", "read", "Patient", outcome="ok"), clock)


# --- the keyed chain (issue 13, defect 7) -------------------------------------------------------
def _rechain_from(conn: Connection, seq: int, **changes: object) -> None:
    """What an attacker with write access but no key does: change record ``seq`` and recompute every hash
    from there on (with the only formula available without the key, SHA-256), head included."""
    conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(**changes))
    prev = conn.execute(select(audit_log.c.prev_hash).where(audit_log.c.seq == seq)).scalar_one()
    rows = conn.execute(select(audit_log).where(audit_log.c.seq >= seq).order_by(audit_log.c.seq)).all()
    for row in rows:
        fields = {k: row._mapping[k] for k in audit.HASHED_FIELDS}
        digest = audit.record_hash(fields, prev)
        conn.execute(update(audit_log).where(audit_log.c.seq == row.seq).values(prev_hash=prev, hash=digest))
        prev = digest
    conn.execute(update(audit_head).values(hash=prev))


def _append_forged(conn: Connection, key: bytes | None, key_id: str | None) -> None:
    """A correctly linked record appended at the tail, head moved along (sealed with ``key`` if given)."""
    seq, prev = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
    fields = {"at": "2026-01-15T12:00:00.000000+00:00", "actor": "mallory", "role": "admin", "action": "read",
              "resource_type": "Patient", "resource_id": "p1", "patient_id": "p1", "outcome": "success",
              "status": 200, "client": None, "detail": None}
    digest = audit.record_hash(fields, prev, key, key_id)
    conn.execute(audit_log.insert().values(seq=seq + 1, prev_hash=prev, hash=digest, key_id=key_id, **fields))
    conn.execute(update(audit_head).values(seq=seq + 1, hash=digest))


def test_records_are_sealed_with_the_active_audit_key(store: Store, clock: Callable, keyring: KeyRing) -> None:  # type: ignore[type-arg]
    _fill(store, clock, 2)
    with store.connect() as conn:
        rows = list(audit.records(conn))
    assert {r.key_id for r in rows} == {keyring.audit_active}
    fields = {k: getattr(rows[1], k) for k in audit.HASHED_FIELDS}
    assert rows[1].hash == audit.record_hash(fields, rows[0].hash, keyring.audit_keys[keyring.audit_active],
                                             keyring.audit_active)
    assert rows[1].hash != audit.record_hash(fields, rows[0].hash)  # not the plain hash


@pytest.mark.parametrize(("forge", "problem", "bad_seq"), [
    (lambda c: _append_forged(c, None, None), "inserted", 7),  # a plain SHA-256 record after keyed ones
    (lambda c: _append_forged(c, b"k" * 32, "a-guess"), "unverifiable", 7),  # a made-up key id
    (lambda c: _append_forged(c, b"k" * 32, _ACTIVE[0]), "modified", 7),  # the real key id, a guessed key
    (lambda c: _rechain_from(c, 3, actor="someone-else"), "modified", 3),  # edit and re-chain
    (lambda c: _rechain_from(c, 6, outcome="denied", key_id=None), "inserted", 6),  # ... as if old
])
def test_forgery_without_the_key_is_detected(store: Store, clock: Callable, keyring: KeyRing,  # type: ignore[type-arg]
                                             forge: Callable[[Connection], object], problem: str,
                                             bad_seq: int) -> None:
    _ACTIVE[:] = [keyring.audit_active]
    _fill(store, clock)
    with store.begin() as conn:
        forge(conn)
    result = _verify(store)
    assert not result.ok
    assert (result.problem, result.first_bad_seq) == (problem, bad_seq), result.message


_ACTIVE: list[str] = []


def test_records_from_before_the_key_still_verify_and_rotation_keeps_old_records_verifiable(
        store: Store, clock: Callable, keyring: KeyRing) -> None:  # type: ignore[type-arg]
    legacy = Store(store.url, store.codec)  # another engine on the same database, not bound to any key ring
    try:
        saved = list(audit._DEFAULT)
        audit._DEFAULT.clear()
        with legacy.begin() as conn:
            for i in range(3):
                audit.append(conn, AuditEntry(f"old{i}", "admin", "read", "Patient", "success"), clock)
        audit._DEFAULT[:] = saved
    finally:
        legacy.dispose()
    _fill(store, clock, 2)  # keyed, active key A
    rotated = keyring.with_new_audit_key()
    audit.bind(store.engine, rotated)
    _fill(store, clock, 2)  # keyed, active key B
    with store.connect() as conn:
        assert [r.key_id for r in audit.records(conn)] == [None] * 3 + [keyring.audit_active] * 2 + [
            rotated.audit_active] * 2
    result = _verify(store)
    assert result.ok and result.count == 7 and result.unkeyed == 3, result.message
    with store.connect() as conn:  # a ring that lost the old key cannot vouch for its records
        missing = audit.verify(conn, audit.AuditKeys(rotated.audit_active,
                                                     {rotated.audit_active: rotated.audit_keys[rotated.audit_active]}))
    assert (missing.ok, missing.problem, missing.first_bad_seq) == (False, "unverifiable", 4)
    # once keyed, a writer without the key is refused rather than writing an unkeyed record
    legacy = Store(store.url, store.codec)
    try:
        saved = list(audit._DEFAULT)
        audit._DEFAULT.clear()
        with legacy.begin() as conn, pytest.raises(audit.AuditKeyError, match="keyed"):
            audit.append(conn, AuditEntry("x", "admin", "read", "Patient", "success"), clock)
        audit._DEFAULT[:] = saved
    finally:
        legacy.dispose()


def _truncate_tail(conn: Connection, keep: int) -> None:
    conn.execute(delete(audit_log).where(audit_log.c.seq > keep))
    digest = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == keep)).scalar_one()
    conn.execute(update(audit_head).values(seq=keep, hash=digest))


def test_checkpoint_detects_truncation_and_rechaining(store: Store, clock: Callable, keyring: KeyRing) -> None:  # type: ignore[type-arg]
    _fill(store, clock)
    with store.connect() as conn:
        cp = audit.Checkpoint.from_json(audit.checkpoint(conn, clock).to_json())
        assert (cp.seq, cp.key_id) == (6, keyring.audit_active)
        assert audit.verify_checkpoint(conn, cp).ok
    _fill(store, clock, 2)  # the chain grows past the checkpoint: still fine
    with store.connect() as conn:
        assert audit.verify_checkpoint(conn, cp).ok
    with store.begin() as conn:
        _truncate_tail(conn, 4)
    assert _verify(store).ok  # intact in itself: only the checkpoint shows the loss
    with store.connect() as conn:
        result = audit.verify_checkpoint(conn, cp)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "truncated", 5), result.message
    forged = audit.Checkpoint(4, cp.hash, cp.at, cp.key_id, cp.mac)  # moved back to fit the truncated chain
    with store.connect() as conn:
        assert audit.verify_checkpoint(conn, forged).problem == "checkpoint-invalid"


def test_checkpoint_of_a_chain_rewritten_with_the_key_is_detected(store: Store, clock: FakeClock) -> None:
    _fill(store, clock, 4)
    with store.connect() as conn:
        cp = audit.checkpoint(conn, clock)
    with store.begin() as conn:  # an insider with the key rebuilds the chain (here: all of it, later times)
        conn.execute(delete(audit_log))
        conn.execute(update(audit_head).values(seq=0, hash=audit.GENESIS))
    clock.advance(seconds=1)
    _fill(store, clock, 4)
    with store.connect() as conn:
        assert audit.verify(conn).ok
        result = audit.verify_checkpoint(conn, cp)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "modified", 4), result.message


@pytest.mark.parametrize(("text", "field"), [
    ("{", "JSON"), ('{"version": 2}', "version"), ('{"version": 1, "seq": "6"}', "seq"),
    ('{"version": 1, "seq": 6, "hash": "h", "at": "t", "key_id": "k"}', "mac"),
])
def test_malformed_checkpoint_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(audit.AuditKeyError, match=field):
        audit.Checkpoint.from_json(text)
