"""hospital: the live census's ADT journal and the equipment twin's samples and refusals
(hospital_adt_journal, hospital_equipment_samples, hospital_equipment_quarantine)

Revision ID: 0010_hospital_journal
Revises: 0009_chart_time

Why: the live hospital census (HL7 v2 ADT over MLLP, FHIR Encounters) and the equipment twin were held in
memory only: a message acknowledged (AA) before a restart was lost with the whole census, and the sender,
holding its ACK, never resends. Each accepted or quarantined message is now journalled (sealed) before it is
answered, each equipment sample before it is applied or quarantined, and all are replayed at startup; see
``medtwin.store.hospital_journal``. New tables only; SQLite and PostgreSQL alike.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_hospital_journal"
down_revision = "0009_chart_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "hospital_adt_journal",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("control_id", sa.String(255), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=True),
        sa.Column("event", sa.String(8), nullable=True),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("unit", sa.String(128), nullable=True),
        sa.Column("field", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_hospital_adt_journal")),
        sa.UniqueConstraint("scope", "dedupe_key", name="uq_hospital_adt_journal_scope_dedupe"),
    )
    op.create_index("ix_hospital_adt_journal_replay", "hospital_adt_journal", ["scope", "status", "event_time"])
    op.create_table(
        "hospital_equipment_samples",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("asset", sa.String(128), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("original_value", sa.Float(), nullable=False),
        sa.Column("original_unit", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_hospital_equipment_samples")),
        sa.UniqueConstraint("scope", "asset", "time", name="uq_hospital_equipment_samples_scope_asset_time"),
    )
    op.create_table(
        "hospital_equipment_quarantine",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("field", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_hospital_equipment_quarantine")),
    )


def downgrade() -> None:
    op.drop_table("hospital_equipment_quarantine")
    op.drop_table("hospital_equipment_samples")
    op.drop_index("ix_hospital_adt_journal_replay", table_name="hospital_adt_journal")
    op.drop_table("hospital_adt_journal")
