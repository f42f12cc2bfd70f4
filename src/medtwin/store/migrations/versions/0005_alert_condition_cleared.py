"""alerts: when a serious alert's condition cleared (it stays open until a person acknowledges it)

Revision ID: 0005_alert_cleared
Revises: 0004_keyed_audit

``alerts.condition_cleared_at``: the data time the condition of an unresolved alert stopped holding. Why a
column and not a resolution: a high or critical alert is never closed by the system alone (issue 15 item 3,
a level 2 hypoglycaemia auto-resolved within a minute and vanished from the worklist); the engine marks it
"condition cleared" and it stays on the worklist until a person acknowledges it. NULL: the condition holds
(or held until the alert was resolved). Existing rows keep NULL.
"""

from medtwin.store.migrations import ddl

revision = "0005_alert_cleared"
down_revision = "0004_keyed_audit"


def upgrade() -> None:
    ddl.add_column("alerts", ddl.timestamp("condition_cleared_at", nullable=True))


def downgrade() -> None:
    ddl.drop_column("alerts", "condition_cleared_at")
