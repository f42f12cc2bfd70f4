from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, delete, select, update

from medtwin.security import audit
from medtwin.security.audit import AuditEntry
from medtwin.store.database import Store
from medtwin.store.security_tables import audit_log


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
