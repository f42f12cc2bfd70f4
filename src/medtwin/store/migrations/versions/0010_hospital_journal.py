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

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.schema import SchemaItem

from medtwin.store.migrations import ddl

revision = "0010_hospital_journal"
down_revision = "0009_chart_time"


def _scoped_table(name: str, *items: SchemaItem, indexes: Iterable[ddl.Index] = ()) -> ddl.Table:
    """A keyed table whose rows belong to one census or equipment twin (``scope``, the second column)."""
    return ddl.keyed_table(name, ddl.column("scope", sa.String(128)), *items, indexes=indexes)


def _tables() -> list[ddl.Table]:
    return [
        _scoped_table("hospital_adt_journal",
            ddl.column("kind", sa.String(16)),
            ddl.column("status", sa.String(16)),
            ddl.column("control_id", sa.String(255)),
            ddl.column("dedupe_key", sa.String(255), nullable=True),
            ddl.column("event", sa.String(8), nullable=True),
            ddl.timestamp("event_time", nullable=True),
            ddl.column("patient", sa.String(64), nullable=True),
            ddl.column("unit", sa.String(128), nullable=True),
            ddl.column("field", sa.String(64), nullable=True),
            ddl.timestamp("received_at"),
            ddl.column("content", sa.LargeBinary()),
            sa.UniqueConstraint("scope", "dedupe_key", name="uq_hospital_adt_journal_scope_dedupe"),
            indexes=[ddl.index("ix_hospital_adt_journal_replay", "scope", "status", "event_time")],
        ),
        _scoped_table("hospital_equipment_samples",
            ddl.column("asset", sa.String(128)),
            ddl.timestamp("time"),
            ddl.column("value", sa.Float()),
            ddl.column("original_value", sa.Float()),
            ddl.column("original_unit", sa.String(32)),
            ddl.column("source", sa.String(32)),
            ddl.timestamp("received_at"),
            sa.UniqueConstraint("scope", "asset", "time",
                                name="uq_hospital_equipment_samples_scope_asset_time"),
        ),
        _scoped_table("hospital_equipment_quarantine",
            ddl.column("topic", sa.String(255)),
            ddl.column("field", sa.String(255)),
            ddl.column("reason", sa.Text()),
            ddl.timestamp("received_at"),
            ddl.column("payload", sa.LargeBinary()),
        ),
    ]


def upgrade() -> None:
    ddl.create_tables(_tables())


def downgrade() -> None:
    ddl.drop_tables(_tables())
