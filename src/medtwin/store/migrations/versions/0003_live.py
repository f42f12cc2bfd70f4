"""live twin: quarantine, alerts, online filter state

Revision ID: 0003_live
Revises: 0002_security
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_live"
down_revision = "0002_security"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("pk", _BIGINT, autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("device", sa.String(128), nullable=True),
        sa.Column("metric", sa.String(64), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("field", sa.String(255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_quarantine")),
    )
    op.create_index("ix_quarantine_patient_received", "quarantine", ["patient_id", "received_at"])
    op.create_index("ix_quarantine_idempotency_key", "quarantine", ["idempotency_key"], unique=True)
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(150), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(150), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_patient_status", "alerts", ["patient_id", "status"])
    op.create_index("ix_alerts_dedupe_status", "alerts", ["dedupe_key", "status"])
    op.create_table(
        "twin_live_state",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("twin_version", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "kind", name=op.f("pk_twin_live_state")),
    )


def downgrade() -> None:
    op.drop_table("twin_live_state")
    op.drop_index("ix_alerts_dedupe_status", table_name="alerts")
    op.drop_index("ix_alerts_patient_status", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_quarantine_idempotency_key", table_name="quarantine")
    op.drop_index("ix_quarantine_patient_received", table_name="quarantine")
    op.drop_table("quarantine")
