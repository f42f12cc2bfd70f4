"""foundation: record, samples, imports, twin versions

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-21 08:05:29.996192
"""
import sqlalchemy as sa
from alembic import op

from medtwin.store.migrations import ddl

revision = '0001_foundation'
down_revision = None


def _tables() -> list[ddl.Table]:
    return [
        ddl.table("imports",
            ddl.column("id", sa.String(36)),
            ddl.column("source", sa.LargeBinary()),
            ddl.timestamp("started_at"),
            ddl.timestamp("finished_at", nullable=True),
            ddl.column("actor", sa.String(200)),
            ddl.column("status", sa.String(20)),
            ddl.column("created", sa.Integer()),
            ddl.column("updated", sa.Integer()),
            ddl.column("unchanged", sa.Integer()),
            ddl.column("summary", sa.LargeBinary(), nullable=True),
            primary_key=("id",),
        ),
        ddl.keyed_table("samples",
            ddl.column("patient_id", sa.String(64)),
            ddl.column("metric", sa.String(64)),
            ddl.timestamp("time"),
            ddl.column("value", sa.Float()),
            ddl.column("unit", sa.String(32)),
            ddl.column("original_value", sa.Float(), nullable=True),
            ddl.column("original_unit", sa.String(32), nullable=True),
            ddl.column("device", sa.String(128), nullable=True),
            ddl.column("source", sa.String(64), nullable=True),
            ddl.column("idempotency_key", sa.String(255)),
            ddl.timestamp("received_at", nullable=True),
            sa.UniqueConstraint("idempotency_key", name="uq_samples_idempotency_key"),
            indexes=[ddl.index("ix_samples_patient_metric_time", "patient_id", "metric", "time")],
        ),
        ddl.keyed_table("twin_versions",
            ddl.column("patient_id", sa.String(64)),
            ddl.column("version", sa.Integer()),
            ddl.column("kind", sa.String(32)),
            ddl.timestamp("created_at"),
            ddl.column("actor", sa.String(200)),
            ddl.column("provenance", sa.LargeBinary()),
            ddl.column("payload", sa.LargeBinary()),
            sa.UniqueConstraint("patient_id", "version", name="uq_twin_versions_patient_version"),
        ),
        ddl.keyed_table("resources",
            ddl.column("resource_type", sa.String(64)),
            ddl.column("id", sa.String(64)),
            ddl.column("patient_id", sa.String(64), nullable=True),
            ddl.column("version", sa.Integer()),
            ddl.timestamp("last_updated"),
            ddl.column("import_id", sa.String(36), nullable=True),
            ddl.column("content_hash", sa.String(64)),
            ddl.column("content", sa.LargeBinary()),
            sa.ForeignKeyConstraint(["import_id"], ["imports.id"],
                                    name=op.f("fk_resources_import_id_imports")),
            sa.UniqueConstraint("resource_type", "id", name="uq_resources_type_id"),
            indexes=[ddl.index("ix_resources_patient_id", "patient_id"),
                     ddl.index("ix_resources_patient_type", "patient_id", "resource_type")],
        ),
        ddl.table("resource_identifiers",
            ddl.column("resource_pk", ddl.KEY),
            ddl.column("resource_type", sa.String(64)),
            ddl.column("token", sa.String(128)),
            ddl.column("kind", sa.String(16)),
            sa.ForeignKeyConstraint(["resource_pk"], ["resources.pk"], ondelete="CASCADE",
                                    name=op.f("fk_resource_identifiers_resource_pk_resources")),
            primary_key=None,
            indexes=[ddl.index("ix_resource_identifiers_resource_pk", "resource_pk"),
                     ddl.index("ix_resource_identifiers_token", "token", "resource_type")],
        ),
        ddl.keyed_table("resource_index",
            ddl.column("resource_pk", ddl.KEY),
            ddl.column("patient_id", sa.String(64), nullable=True),
            ddl.column("resource_type", sa.String(64)),
            ddl.column("element", sa.String(64)),
            ddl.column("system", sa.String(255), nullable=True),
            ddl.column("code", sa.String(128), nullable=True),
            ddl.column("display", sa.Text(), nullable=True),
            ddl.timestamp("effective_start", nullable=True),
            ddl.timestamp("effective_end", nullable=True),
            ddl.column("status", sa.String(64), nullable=True),
            ddl.column("value_num", sa.Float(), nullable=True),
            ddl.column("value_unit", sa.String(64), nullable=True),
            ddl.column("value_code", sa.String(64), nullable=True),
            ddl.column("value_norm", sa.Float(), nullable=True),
            ddl.column("unit_norm", sa.String(64), nullable=True),
            ddl.column("unit_valid", sa.Boolean(), nullable=True),
            ddl.column("value_text", sa.LargeBinary(), nullable=True),
            sa.ForeignKeyConstraint(["resource_pk"], ["resources.pk"], ondelete="CASCADE",
                                    name=op.f("fk_resource_index_resource_pk_resources")),
            indexes=[ddl.index("ix_resource_index_lookup", "patient_id", "code", "effective_start"),
                     ddl.index("ix_resource_index_resource_pk", "resource_pk"),
                     ddl.index("ix_resource_index_type", "patient_id", "resource_type")],
        ),
    ]


def upgrade() -> None:
    ddl.create_tables(_tables())


def downgrade() -> None:
    ddl.drop_tables(_tables())
