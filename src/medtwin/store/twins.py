"""Repository for twin versions: every update of a twin is a new, numbered version with provenance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select

from medtwin.store.codec import Codec
from medtwin.store.schema import twin_versions


@dataclass(frozen=True)
class TwinVersion:
    patient_id: str
    version: int
    kind: str
    created_at: datetime
    actor: str
    provenance: dict[str, Any]
    payload: dict[str, Any]


class TwinRepository:
    def __init__(self, connection: Connection, codec: Codec) -> None:
        self.connection = connection
        self.codec = codec

    def add_version(self, patient_id: str, kind: str, payload: dict[str, Any], provenance: dict[str, Any], *,
                    actor: str, now: datetime) -> int:
        current = self.connection.execute(
            select(func.max(twin_versions.c.version)).where(twin_versions.c.patient_id == patient_id)
        ).scalar()
        version = int(current or 0) + 1
        self.connection.execute(insert(twin_versions).values(
            patient_id=patient_id, version=version, kind=kind, created_at=now, actor=actor,
            provenance=self.codec.seal(orjson.dumps(provenance)),
            payload=self.codec.seal(orjson.dumps(payload)),
        ))
        return version

    def _row(self, row: Any) -> TwinVersion:
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        return TwinVersion(
            patient_id=row.patient_id, version=row.version, kind=row.kind, created_at=created, actor=row.actor,
            provenance=orjson.loads(self.codec.open(row.provenance)), payload=orjson.loads(self.codec.open(row.payload)),
        )

    def latest(self, patient_id: str, kind: str | None = None) -> TwinVersion | None:
        query = select(twin_versions).where(twin_versions.c.patient_id == patient_id)
        if kind:
            query = query.where(twin_versions.c.kind == kind)
        row = self.connection.execute(query.order_by(twin_versions.c.version.desc()).limit(1)).first()
        return None if row is None else self._row(row)

    def history(self, patient_id: str) -> list[TwinVersion]:
        rows = self.connection.execute(
            select(twin_versions).where(twin_versions.c.patient_id == patient_id).order_by(twin_versions.c.version)
        ).all()
        return [self._row(r) for r in rows]
