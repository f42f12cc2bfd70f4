"""live twin: quarantine, alerts, online filter state

Revision ID: 0003_live
Revises: 0002_security
"""

import sqlalchemy as sa

from medtwin.store.migrations import ddl

revision = "0003_live"
down_revision = "0002_security"


def _tables() -> list[ddl.Table]:
    return [
        ddl.keyed_table("quarantine",
            ddl.column("patient_id", sa.String(64), nullable=True),
            ddl.column("device", sa.String(128), nullable=True),
            ddl.column("metric", sa.String(64), nullable=True),
            ddl.timestamp("time", nullable=True),
            ddl.timestamp("received_at"),
            ddl.column("source", sa.String(64)),
            ddl.column("reason", sa.String(64)),
            ddl.column("field", sa.String(255), nullable=True),
            ddl.column("detail", sa.Text(), nullable=True),
            ddl.column("payload", sa.LargeBinary(), nullable=True),
            ddl.column("idempotency_key", sa.String(255), nullable=True),
            indexes=[ddl.index("ix_quarantine_patient_received", "patient_id", "received_at"),
                     ddl.index("ix_quarantine_idempotency_key", "idempotency_key", unique=True)],
        ),
        ddl.table("alerts",
            ddl.column("id", sa.String(36)),
            ddl.column("patient_id", sa.String(64)),
            ddl.column("rule", sa.String(64)),
            ddl.column("severity", sa.String(16)),
            ddl.column("status", sa.String(16)),
            ddl.column("dedupe_key", sa.String(255)),
            ddl.timestamp("opened_at"),
            ddl.timestamp("updated_at"),
            ddl.timestamp("last_seen_at"),
            ddl.column("occurrences", sa.Integer()),
            ddl.column("score", sa.Float(), nullable=True),
            ddl.timestamp("acknowledged_at", nullable=True),
            ddl.column("acknowledged_by", sa.String(150), nullable=True),
            ddl.timestamp("resolved_at", nullable=True),
            ddl.column("resolved_by", sa.String(150), nullable=True),
            ddl.column("message", sa.Text()),
            ddl.column("details", sa.LargeBinary(), nullable=True),
            primary_key=("id",),
            indexes=[ddl.index("ix_alerts_patient_status", "patient_id", "status"),
                     ddl.index("ix_alerts_dedupe_status", "dedupe_key", "status")],
        ),
        ddl.table("twin_live_state",
            ddl.column("patient_id", sa.String(64)),
            ddl.column("kind", sa.String(32)),
            ddl.column("twin_version", sa.Integer(), nullable=True),
            ddl.timestamp("updated_at"),
            ddl.timestamp("data_time", nullable=True),
            ddl.column("payload", sa.LargeBinary()),
            primary_key=("patient_id", "kind"),
        ),
    ]


def upgrade() -> None:
    ddl.create_tables(_tables())


def downgrade() -> None:
    ddl.drop_tables(_tables())
