"""imaging: volumes stored content-addressed and sealed, linked to patients (image_chunks, image_volumes)

Revision ID: 0007_images
Revises: 0006_resource_history

Why: images in the twin (issue 19). A volume is stored once per content (``image_chunks``, keyed by a blind
of its content hash, cut into sealed chunks so key rotation can re-seal it in bounded memory) and linked to
each patient who has it (``image_volumes``); see ``medtwin.store.images``.
"""

import sqlalchemy as sa

from medtwin.store.migrations import ddl

revision = "0007_images"
down_revision = "0006_resource_history"


def _tables() -> list[ddl.Table]:
    return [
        ddl.keyed_table("image_chunks",
            ddl.column("address", sa.String(64)),
            ddl.column("seq", sa.Integer),
            ddl.column("data", sa.LargeBinary),
            sa.UniqueConstraint("address", "seq", name="uq_image_chunks_address_seq"),
        ),
        ddl.keyed_table("image_volumes",
            ddl.column("patient_id", sa.String(64)),
            ddl.column("volume_id", sa.String(64)),
            ddl.column("study_id", sa.String(64), nullable=True),
            ddl.timestamp("created_at"),
            ddl.column("actor", sa.String(150)),
            ddl.column("raw_bytes", sa.BigInteger),
            ddl.column("stored_bytes", sa.BigInteger),
            ddl.column("meta", sa.LargeBinary),
            sa.UniqueConstraint("patient_id", "volume_id", name="uq_image_volumes_patient_volume"),
            indexes=[ddl.index("ix_image_volumes_volume", "volume_id")],
        ),
    ]


def upgrade() -> None:
    ddl.create_tables(_tables())


def downgrade() -> None:
    ddl.drop_tables(_tables())
