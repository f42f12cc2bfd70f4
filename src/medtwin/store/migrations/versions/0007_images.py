"""imaging: volumes stored content-addressed and sealed, linked to patients (image_chunks, image_volumes)

Revision ID: 0007_images
Revises: 0006_resource_history

Why: images in the twin (issue 19). A volume is stored once per content (``image_chunks``, keyed by a blind
of its content hash, cut into sealed chunks so key rotation can re-seal it in bounded memory) and linked to
each patient who has it (``image_volumes``); see ``medtwin.store.images``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_images"
down_revision = "0006_resource_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "image_chunks",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_image_chunks")),
        sa.UniqueConstraint("address", "seq", name="uq_image_chunks_address_seq"),
    )
    op.create_table(
        "image_volumes",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("volume_id", sa.String(64), nullable=False),
        sa.Column("study_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(150), nullable=False),
        sa.Column("raw_bytes", sa.BigInteger, nullable=False),
        sa.Column("stored_bytes", sa.BigInteger, nullable=False),
        sa.Column("meta", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_image_volumes")),
        sa.UniqueConstraint("patient_id", "volume_id", name="uq_image_volumes_patient_volume"),
    )
    op.create_index("ix_image_volumes_volume", "image_volumes", ["volume_id"])


def downgrade() -> None:
    op.drop_index("ix_image_volumes_volume", table_name="image_volumes")
    op.drop_table("image_volumes")
    op.drop_table("image_chunks")
