"""Image volumes beside the record: content-addressed, sealed blobs and their links to patients.

* ``image_chunks``: a stored volume (``medtwin.imaging.storage.pack``: canonical bytes, compressed) cut into
  chunks of :data:`CHUNK_BYTES`, each sealed by the store codec like every other PHI blob. Keyed by
  ``address``, the codec's blind (keyed HMAC) of the content hash, so the same image is stored once and the
  stored key reveals nothing to someone who does not hold the key ring. Why chunks: key rotation re-seals rows
  in batches of 500 (``security.crypto.reencrypt_all``); a whole CT in one row would be 500 CTs in memory.
* ``image_volumes``: which patient has which volume (``volume_id`` is the address), the ImagingStudy it is
  linked to, sizes (canonical and stored bytes) and the volume's description (``meta``: shape, affine,
  frame, units, labels, provenance; sealed).

Created by the Alembic revision ``0007_images``. Reads and writes go through :class:`ImageRepository` on the
caller's connection, so a volume, its link and the caller's other writes commit together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    String,
    UniqueConstraint,
    delete,
    exists,
    func,
    insert,
    select,
)

from medtwin.store.codec import Codec
from medtwin.store.metadata import keyed_table, patient_column, sealed, utc_time

CHUNK_BYTES = 256 * 1024
image_chunks = keyed_table(
    "image_chunks",
    Column("address", String(64), nullable=False, doc="Blind (keyed hash) of the volume's content hash"),
    Column("seq", Integer, nullable=False, doc="Chunk number, from 0"),
    sealed("data", nullable=False, doc="Compressed canonical bytes, sealed"),
    UniqueConstraint("address", "seq", name="uq_image_chunks_address_seq"),
)

image_volumes = keyed_table(
    "image_volumes",
    patient_column(nullable=False),
    Column("volume_id", String(64), nullable=False, doc="The address of its chunks"),
    Column("study_id", String(64), doc="The ImagingStudy resource it is linked to"),
    utc_time("created_at", nullable=False),
    Column("actor", String(150), nullable=False),
    Column("raw_bytes", BigInteger, nullable=False, doc="Size of the canonical (uncompressed) bytes"),
    Column("stored_bytes", BigInteger, nullable=False, doc="Size of the sealed chunks"),
    sealed("meta", nullable=False,
           doc="JSON: shape, affine, frame, units, labels, provenance (sealed: source names, series description)"),
    UniqueConstraint("patient_id", "volume_id", name="uq_image_volumes_patient_volume"),
)
Index("ix_image_volumes_volume", image_volumes.c.volume_id)


class ImageRepository:
    """Volumes and their links on one connection (the caller's transaction)."""

    def __init__(self, connection: Connection, codec: Codec) -> None:
        self.connection = connection
        self.codec = codec

    def address(self, content_hash: str) -> str:
        return self.codec.blind(f"image-volume:{content_hash}")

    def has_blob(self, address: str) -> bool:
        return bool(self.connection.execute(select(exists().where(image_chunks.c.address == address))).scalar())

    def put_blob(self, address: str, blob: bytes) -> int:
        """Store a blob under ``address`` unless it is there; returns the sealed bytes stored (0 if present)."""
        if self.has_blob(address):
            return 0
        sealed = [self.codec.seal(blob[start:start + CHUNK_BYTES]) for start in range(0, max(len(blob), 1), CHUNK_BYTES)]
        self.connection.execute(insert(image_chunks), [{"address": address, "seq": n, "data": data}
                                                       for n, data in enumerate(sealed)])
        return sum(len(data) for data in sealed)

    def blob(self, address: str) -> bytes | None:
        rows = self.connection.execute(select(image_chunks.c.seq, image_chunks.c.data)
                                       .where(image_chunks.c.address == address).order_by(image_chunks.c.seq)).all()
        if not rows:
            return None
        if [r.seq for r in rows] != list(range(len(rows))):
            raise ValueError(f"volume {address}: chunks missing")
        return b"".join(self.codec.open(r.data) for r in rows)

    def stored_size(self, address: str) -> int:
        return int(self.connection.execute(select(func.coalesce(func.sum(func.length(image_chunks.c.data)), 0))
                                           .where(image_chunks.c.address == address)).scalar() or 0)

    def link(self, patient_id: str, volume_id: str, meta: dict[str, Any], *, raw_bytes: int, now: datetime,
             actor: str, study_id: str | None = None) -> bool:
        """Link a stored volume to a patient; False when it already was (nothing written)."""
        if self.volume(patient_id, volume_id) is not None:
            return False
        self.connection.execute(insert(image_volumes).values(
            patient_id=patient_id, volume_id=volume_id, study_id=study_id, created_at=now, actor=actor,
            raw_bytes=raw_bytes, stored_bytes=self.stored_size(volume_id),
            meta=self.codec.seal(orjson.dumps(meta))))
        return True

    def set_study(self, patient_id: str, volume_id: str, study_id: str) -> None:
        self.connection.execute(image_volumes.update().where(
            (image_volumes.c.patient_id == patient_id) & (image_volumes.c.volume_id == volume_id))
            .values(study_id=study_id))

    def unlink(self, patient_id: str, volume_id: str) -> None:
        """Remove a patient's link, and the chunks when no patient links them any more."""
        self.connection.execute(delete(image_volumes).where(
            (image_volumes.c.patient_id == patient_id) & (image_volumes.c.volume_id == volume_id)))
        if not self.connection.execute(select(exists().where(image_volumes.c.volume_id == volume_id))).scalar():
            self.connection.execute(delete(image_chunks).where(image_chunks.c.address == volume_id))

    def _row(self, row: Any) -> dict[str, Any]:
        return {"volume_id": row.volume_id, "patient_id": row.patient_id, "study_id": row.study_id,
                "created_at": row.created_at, "raw_bytes": int(row.raw_bytes), "stored_bytes": int(row.stored_bytes),
                "meta": orjson.loads(self.codec.open(row.meta))}

    def volume(self, patient_id: str, volume_id: str) -> dict[str, Any] | None:
        """The link of ``volume_id`` to ``patient_id`` (None when this patient has no such volume)."""
        row = self.connection.execute(select(image_volumes).where(
            (image_volumes.c.patient_id == patient_id) & (image_volumes.c.volume_id == volume_id))).first()
        return None if row is None else self._row(row)

    def volumes(self, patient_id: str) -> list[dict[str, Any]]:
        """A patient's volumes, oldest first."""
        rows = self.connection.execute(select(image_volumes).where(image_volumes.c.patient_id == patient_id)
                                       .order_by(image_volumes.c.created_at, image_volumes.c.pk)).all()
        return [self._row(r) for r in rows]
