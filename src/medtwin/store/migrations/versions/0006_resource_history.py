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

from medtwin.store.migrations import ddl

revision = "0006_resource_history"
down_revision = "0005_alert_cleared"


def _resource_history() -> ddl.Table:
    return ddl.keyed_table("resource_history",
        ddl.column("resource_pk", ddl.KEY),
        ddl.column("resource_type", sa.String(64)),
        ddl.column("id", sa.String(64)),
        ddl.column("patient_id", sa.String(64), nullable=True),
        ddl.column("version", sa.Integer),
        ddl.timestamp("last_updated"),
        ddl.column("import_id", sa.String(36), nullable=True),
        ddl.column("content_hash", sa.String(64)),
        ddl.column("content", sa.LargeBinary),
        ddl.timestamp("sent_last_updated", nullable=True),
        sa.ForeignKeyConstraint(["resource_pk"], ["resources.pk"], ondelete="CASCADE",
                                name=op.f("fk_resource_history_resource_pk_resources")),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name=op.f("fk_resource_history_import_id_imports")),
        sa.UniqueConstraint("resource_pk", "version", name=op.f("uq_resource_history_resource_version")),
        indexes=[ddl.index("ix_resource_history_type_updated", "resource_type", "last_updated")],
    )


def upgrade() -> None:
    ddl.create_tables([_resource_history()])
    ddl.add_column("resources", ddl.timestamp("sent_last_updated", nullable=True))


def downgrade() -> None:
    ddl.drop_column("resources", "sent_last_updated")
    ddl.drop_tables([_resource_history()])
