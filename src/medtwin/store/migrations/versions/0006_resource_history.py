"""record: every version of a resource is kept (resource_history)

Revision ID: 0006_resource_history
Revises: 0005_alert_cleared

Why: an update used to overwrite the stored row, so an older version was gone and re-importing an older
bundle silently reverted the data (issue 16 defect 1). The current version stays in ``resources``; each
update copies the row it supersedes to ``resource_history`` first. Existing rows have no earlier versions
to keep (they were overwritten before this revision). ``sent_last_updated`` (both tables): the sender's
``meta.lastUpdated``; meta.versionId/lastUpdated are the server's and are no longer kept in the content.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_resource_history"
down_revision = "0005_alert_cleared"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "resource_history",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("resource_pk", key, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("import_id", sa.String(36), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("sent_last_updated", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_resource_history")),
        sa.ForeignKeyConstraint(["resource_pk"], ["resources.pk"], ondelete="CASCADE",
                                name=op.f("fk_resource_history_resource_pk_resources")),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name=op.f("fk_resource_history_import_id_imports")),
        sa.UniqueConstraint("resource_pk", "version", name=op.f("uq_resource_history_resource_version")),
    )
    op.create_index("ix_resource_history_type_updated", "resource_history", ["resource_type", "last_updated"])
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("sent_last_updated", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("sent_last_updated")
    op.drop_index("ix_resource_history_type_updated", table_name="resource_history")
    op.drop_table("resource_history")
