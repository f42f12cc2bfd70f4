"""keyed audit chain (key id per record) and per-account login throttling

Revision ID: 0004_keyed_audit
Revises: 0003_live

``audit_log.key_id``: the id of the audit key (in the key ring) whose HMAC-SHA256 seals the record. NULL is
the version marker of records written before this revision: their hash is the old plain SHA-256 and
``medtwin.security.audit.verify`` still checks them as such; once a keyed record appears, every later record
must be keyed (an unkeyed record after a keyed one is reported as inserted). The migration cannot re-chain
old records (it has no key), so take a checkpoint (``medtwin audit checkpoint``) right after upgrading.

``login_throttle``: consecutive failed logins per account name, keyed by a blind index of the name (the
same for names that do not exist, so throttling does not tell which accounts exist).
"""

import sqlalchemy as sa

from medtwin.store.migrations import ddl

revision = "0004_keyed_audit"
down_revision = "0003_live"


def _login_throttle() -> ddl.Table:
    return ddl.table("login_throttle",
        ddl.column("account", sa.String(64)),
        ddl.column("failures", sa.Integer()),
        ddl.timestamp("last_failure_at"),
        ddl.timestamp("blocked_until", nullable=True),
        ddl.column("locked", sa.Boolean()),
        primary_key=("account",),
    )


def upgrade() -> None:
    ddl.add_column("audit_log", ddl.column("key_id", sa.String(64), nullable=True))
    ddl.create_tables([_login_throttle()])


def downgrade() -> None:
    ddl.drop_tables([_login_throttle()])
    ddl.drop_column("audit_log", "key_id")
