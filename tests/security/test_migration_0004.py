"""Upgrading a database with an unkeyed audit chain (revision 0003) to the keyed chain (0004): the old
records stay verifiable, new ones are keyed, and unkeyed records after keyed ones are refused."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import column, insert, select, table

from medtwin.security import audit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import MIGRATIONS_DIR, Store
from medtwin.store.security_tables import audit_head, audit_log


def _upgrade(store: Store, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_old_chain_survives_the_upgrade_and_continues_keyed(database_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    ring = KeyRing.generate()
    store = Store(database_url, AesGcmCodec(ring))
    try:
        _upgrade(store, "0003_live")
        prev = audit.GENESIS
        old_table = table("audit_log", *[column(c.name) for c in audit_log.c if c.name != "key_id"])
        with store.engine.begin() as conn:  # what 0003's code wrote: SHA-256 records, no key id column
            for seq in (1, 2, 3):
                fields = {"at": f"2025-12-0{seq}T00:00:00.000000+00:00", "actor": f"old{seq}", "role": "admin",
                          "action": "read", "resource_type": "Patient", "resource_id": None, "patient_id": None,
                          "outcome": "success", "status": 200, "client": None, "detail": None}
                digest = audit.record_hash(fields, prev)
                row = {**fields, "seq": seq, "prev_hash": prev, "hash": digest}
                conn.execute(insert(old_table).values(**row))
                prev = digest
            conn.execute(audit_head.update().values(seq=3, hash=prev))
        store.migrate()  # to head the supported way: data revisions (0008) need the store's codec
        audit.bind(store.engine, ring)
        with store.begin() as conn:
            audit.append(conn, audit.AuditEntry("new", "admin", "read", "Patient", "success"), clock)
        with store.connect() as conn:
            result = audit.verify(conn)
            key_ids = [r[0] for r in conn.execute(select(audit_log.c.key_id).order_by(audit_log.c.seq))]
        assert result.ok and (result.count, result.unkeyed) == (4, 3), result.message
        assert key_ids == [None, None, None, ring.audit_active]
    finally:
        store.dispose()
