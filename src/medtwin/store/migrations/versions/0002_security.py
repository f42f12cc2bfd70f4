"""security: users, tokens, device keys, care teams, consent, audit chain

Revision ID: 0002_security
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from medtwin.store.migrations import ddl

revision = "0002_security"
down_revision = "0001_foundation"

GENESIS = "0" * 64


def _tables() -> list[ddl.Table]:
    return [
        ddl.table("users",
            ddl.column("id", sa.String(36)),
            ddl.column("username", sa.String(150)),
            ddl.column("password_hash", sa.Text()),
            ddl.column("role", sa.String(20)),
            ddl.column("patient_id", sa.String(64), nullable=True),
            ddl.column("active", sa.Boolean()),
            ddl.column("token_generation", sa.Integer()),
            ddl.timestamp("created_at"),
            sa.UniqueConstraint("username", name=op.f("uq_users_username")),
            primary_key=("id",),
        ),
        ddl.table("refresh_tokens",
            ddl.column("jti", sa.String(64)),
            ddl.column("user_id", sa.String(36)),
            ddl.column("family", sa.String(64)),
            ddl.timestamp("issued_at"),
            ddl.timestamp("expires_at"),
            ddl.timestamp("used_at", nullable=True),
            ddl.timestamp("revoked_at", nullable=True),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_refresh_tokens_user_id_users"),
                                    ondelete="CASCADE"),
            primary_key=("jti",),
            indexes=[ddl.index("ix_refresh_tokens_user_id", "user_id"),
                     ddl.index("ix_refresh_tokens_family", "family")],
        ),
        ddl.table("revoked_tokens",
            ddl.column("jti", sa.String(64)),
            ddl.column("user_id", sa.String(36)),
            ddl.timestamp("expires_at"),
            ddl.timestamp("revoked_at"),
            primary_key=("jti",),
        ),
        ddl.table("api_keys",
            ddl.column("id", sa.String(32)),
            ddl.column("name", sa.String(200)),
            ddl.column("patient_id", sa.String(64)),
            ddl.column("secret_hash", sa.String(64)),
            ddl.timestamp("created_at"),
            ddl.column("created_by", sa.String(150)),
            ddl.timestamp("revoked_at", nullable=True),
            primary_key=("id",),
        ),
        ddl.table("care_team",
            ddl.column("user_id", sa.String(36)),
            ddl.column("patient_id", sa.String(64)),
            ddl.timestamp("added_at"),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_care_team_user_id_users"),
                                    ondelete="CASCADE"),
            primary_key=("user_id", "patient_id"),
            indexes=[ddl.index("ix_care_team_patient", "patient_id")],
        ),
        ddl.keyed_table("consents",
            ddl.column("patient_id", sa.String(64)),
            ddl.column("purpose", sa.String(32)),
            ddl.column("decision", sa.String(8)),
            ddl.timestamp("recorded_at"),
            ddl.column("recorded_by", sa.String(150)),
            indexes=[ddl.index("ix_consents_patient_purpose", "patient_id", "purpose", "pk")],
        ),
        ddl.table("audit_log",
            ddl.column("seq", ddl.KEY, autoincrement=False),
            ddl.column("at", sa.String(40)),
            ddl.column("actor", sa.String(200)),
            ddl.column("role", sa.String(20)),
            ddl.column("action", sa.String(20)),
            ddl.column("resource_type", sa.String(64)),
            ddl.column("resource_id", sa.String(200), nullable=True),
            ddl.column("patient_id", sa.String(64), nullable=True),
            ddl.column("outcome", sa.String(16)),
            ddl.column("status", sa.Integer(), nullable=True),
            ddl.column("client", sa.String(64), nullable=True),
            ddl.column("detail", sa.Text(), nullable=True),
            ddl.column("prev_hash", sa.String(64)),
            ddl.column("hash", sa.String(64)),
            primary_key=("seq",),
            indexes=[ddl.index("ix_audit_log_patient", "patient_id")],
        ),
        ddl.table("audit_head",
            ddl.column("id", sa.Integer()),
            ddl.column("seq", ddl.KEY),
            ddl.column("hash", sa.String(64)),
            primary_key=("id",),
        ),
    ]


def upgrade() -> None:
    created = ddl.create_tables(_tables())
    op.bulk_insert(created["audit_head"], [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade() -> None:
    ddl.drop_tables(_tables())
