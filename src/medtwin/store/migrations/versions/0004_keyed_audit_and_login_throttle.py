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
from alembic import op

revision = "0004_keyed_audit"
down_revision = "0003_live"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("key_id", sa.String(64), nullable=True))
    op.create_table(
        "login_throttle",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_login_throttle")),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("key_id")
