"""Repository for FHIR resources: save prepared units, look up by identifier, query the index."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, DateTime, Table, and_, delete, func, insert, select, tuple_, update

from medtwin.record.indexing import index_rows, unit_warnings
from medtwin.record.prepare import PreparedResource, PreparedUnit, content_hash
from medtwin.store.codec import Codec
from medtwin.store.schema import resource_identifiers, resource_index, resources

_CHUNK = 400


@dataclass
class UnitResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    patients_changed: set[str] = field(default_factory=set)
    patients_seen: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DATETIME storage format
    return value


def bulk_insert(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows. On SQLite straight through the driver's executemany (the index tables take tens of
    thousands of rows per import); elsewhere through SQLAlchemy's executemany."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), rows)
        return
    columns = list(rows[0])
    datetimes = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, DateTime)]
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    if datetimes:
        params: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(row.values())
            for i in datetimes:
                values[i] = _sqlite_value(values[i])
            params.append(tuple(values))
    else:
        params = [tuple(row.values()) for row in rows]
    connection.exec_driver_sql(sql, params)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class RecordRepository:
    """Resources in one transaction/connection. Implements the preparer's ``ExistingRecords``."""

    def __init__(self, connection: Connection, codec: Codec) -> None:
        self.connection = connection
        self.codec = codec

    # --- ExistingRecords -------------------------------------------------------------------------
    def identifier_token(self, system: str | None, value: str) -> str:
        return self.codec.blind(f"{system or ''}|{value}")

    def find_by_identifier(self, resource_type: str, system: str | None, value: str) -> str | None:
        token = self.identifier_token(system, value)
        row = self.connection.execute(
            select(resources.c.id)
            .join(resource_identifiers, resource_identifiers.c.resource_pk == resources.c.pk)
            .where(resource_identifiers.c.token == token, resource_identifiers.c.resource_type == resource_type)
            .limit(1)
        ).first()
        return None if row is None else str(row[0])

    def exists(self, resource_type: str, resource_id: str) -> bool:
        row = self.connection.execute(
            select(resources.c.pk).where(resources.c.resource_type == resource_type, resources.c.id == resource_id)
        ).first()
        return row is not None

    # --- writing -----------------------------------------------------------------------------------
    def save_unit(self, unit: PreparedUnit, *, import_id: str | None, now: datetime) -> UnitResult:
        """Insert new resources, update changed ones, leave identical ones alone (idempotent)."""
        result = UnitResult(unchanged=unit.matched_existing)
        keys = [(r.resource_type, r.id) for r in unit.resources]
        existing: dict[tuple[str, str], tuple[int, str, int]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            rows = self.connection.execute(
                select(resources.c.resource_type, resources.c.id, resources.c.pk, resources.c.content_hash,
                       resources.c.version)
                .where(tuple_(resources.c.resource_type, resources.c.id).in_(chunk))
            )
            for rtype, rid, pk, digest, version in rows:
                existing[(rtype, rid)] = (pk, digest, version)

        new: list[tuple[PreparedResource, str, bytes]] = []
        changed: list[tuple[PreparedResource, str, bytes, int, int]] = []
        for res in unit.resources:
            digest = content_hash(res.raw)
            if res.patient_id:
                result.patients_seen.add(res.patient_id)
            found = existing.get((res.resource_type, res.id))
            if found is not None and found[1] == digest:
                result.unchanged += 1
                continue
            blob = self.codec.seal(res.raw)
            if found is None:
                new.append((res, digest, blob))
                result.created += 1
            else:
                changed.append((res, digest, blob, found[0], found[2]))
                result.updated += 1
            result.by_type[res.resource_type] += 1
            if res.patient_id:
                result.patients_changed.add(res.patient_id)

        written: list[tuple[int, PreparedResource]] = []
        if new:
            new_rows = [
                {
                    "resource_type": res.resource_type, "id": res.id, "patient_id": res.patient_id, "version": 1,
                    "last_updated": now, "import_id": import_id, "content_hash": digest, "content": blob,
                }
                for res, digest, blob in new
            ]
            if self.connection.dialect.name == "sqlite":
                bulk_insert(self.connection, resources, new_rows)
                pks: dict[tuple[str, str], int] = {}
                for start in range(0, len(new), _CHUNK):
                    chunk = [(res.resource_type, res.id) for res, _, _ in new[start:start + _CHUNK]]
                    pks.update(((t, i), int(pk)) for pk, t, i in self.connection.execute(
                        select(resources.c.pk, resources.c.resource_type, resources.c.id)
                        .where(tuple_(resources.c.resource_type, resources.c.id).in_(chunk))))
                written.extend((pks[(res.resource_type, res.id)], res) for res, _, _ in new)
            else:
                for start in range(0, len(new_rows), _CHUNK):
                    returned = self.connection.execute(
                        insert(resources).returning(resources.c.pk, sort_by_parameter_order=True),
                        new_rows[start:start + _CHUNK],
                    ).all()
                    written.extend((int(r[0]), res) for r, (res, _, _) in zip(returned, new[start:start + _CHUNK],
                                                                                strict=True))
        for res, digest, blob, pk, version in changed:
            self.connection.execute(
                update(resources).where(resources.c.pk == pk).values(
                    patient_id=res.patient_id, version=version + 1, last_updated=now, import_id=import_id,
                    content_hash=digest, content=blob,
                )
            )
        if changed:
            changed_pks = [pk for _, _, _, pk, _ in changed]
            self.connection.execute(delete(resource_index).where(resource_index.c.resource_pk.in_(changed_pks)))
            self.connection.execute(
                delete(resource_identifiers).where(resource_identifiers.c.resource_pk.in_(changed_pks)))
            written.extend((pk, res) for res, _, _, pk, _ in changed)

        index_batch: list[dict[str, Any]] = []
        identifier_batch: list[dict[str, Any]] = []
        for pk, res in written:
            rows_for = index_rows(res.source)
            result.warnings.extend(f"{res.resource_type}/{res.id} (entry {res.entry}): {w}"
                                   for w in unit_warnings(rows_for))
            for row in rows_for:
                index_batch.append({
                    "resource_pk": pk, "patient_id": res.patient_id, "resource_type": res.resource_type,
                    "element": row.element, "system": row.system, "code": row.code, "display": row.display,
                    "effective_start": row.effective_start, "effective_end": row.effective_end,
                    "status": row.status, "value_num": row.value_num, "value_unit": row.value_unit,
                    "value_code": row.value_code, "value_norm": row.value_norm, "unit_norm": row.unit_norm,
                    "unit_valid": row.unit_valid,
                    "value_text": None if row.value_text is None else self.codec.seal(row.value_text.encode()),
                })
            tokens: set[tuple[str, str]] = set()
            for system, value in res.identifiers:
                tokens.add((self.identifier_token(system, value), "identifier"))
                tokens.add((self.identifier_token(None, value), "identifier"))
            for name in res.name_tokens:
                tokens.add((self.codec.blind(f"name:{name}"), "name"))
            identifier_batch.extend(
                {"resource_pk": pk, "resource_type": res.resource_type, "token": token, "kind": kind}
                for token, kind in sorted(tokens)
            )
        bulk_insert(self.connection, resource_index, index_batch)
        bulk_insert(self.connection, resource_identifiers, identifier_batch)
        return result

    # --- reading -----------------------------------------------------------------------------------
    def _decode(self, blob: bytes) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self.codec.open(blob))
        return decoded

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        row = self.connection.execute(
            select(resources.c.content).where(resources.c.resource_type == resource_type,
                                              resources.c.id == resource_id)
        ).first()
        return None if row is None else self._decode(row[0])

    def get_many(self, keys: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        keys = list(keys)
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), _CHUNK):
            rows = self.connection.execute(
                select(resources.c.content)
                .where(tuple_(resources.c.resource_type, resources.c.id).in_(keys[start:start + _CHUNK]))
            )
            out.extend(self._decode(r[0]) for r in rows)
        return out

    def patient_resources(self, patient_id: str, resource_types: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = select(resources.c.content).where(resources.c.patient_id == patient_id)
        if resource_types:
            query = query.where(resources.c.resource_type.in_(list(resource_types)))
        rows = self.connection.execute(query.order_by(resources.c.pk))
        return [self._decode(r[0]) for r in rows]

    def patient_ids(self, *, name: str | None = None, identifier: str | None = None,
                    allowed: frozenset[str] | None = None) -> list[str]:
        """Ids of stored patients, optionally matching a name token or an identifier (MRN ...)."""
        query = select(resources.c.id).where(resources.c.resource_type == "Patient")
        for kind, tokens in (("name", [f"name:{t.lower()}" for t in (name or "").split()]),
                             ("identifier", [f"|{identifier}"] if identifier else [])):
            for token in tokens:
                blinded = self.codec.blind(token) if kind == "name" else self.identifier_token(None, identifier or "")
                sub = select(resource_identifiers.c.resource_pk).where(resource_identifiers.c.token == blinded)
                query = query.where(resources.c.pk.in_(sub))
        ids = [str(r[0]) for r in self.connection.execute(query.order_by(resources.c.pk))]
        if allowed is not None:
            ids = [i for i in ids if i in allowed]
        return ids

    def resolve_patient(self, key: str) -> str | None:
        """A patient id from its id or any of its identifiers (e.g. the MRN)."""
        if self.exists("Patient", key):
            return key
        found = self.find_by_identifier("Patient", None, key)
        return found

    def count_by_type(self, patient_id: str | None = None) -> dict[str, int]:
        query = select(resources.c.resource_type, func.count()).group_by(resources.c.resource_type)
        if patient_id is not None:
            query = query.where(resources.c.patient_id == patient_id)
        return {str(t): int(n) for t, n in self.connection.execute(query)}

    def observations(
        self,
        patient_id: str,
        *,
        code: str | None = None,
        system: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Index rows of a patient's Observations (and components), newest first; returns (total, page)."""
        conditions = [resource_index.c.patient_id == patient_id, resource_index.c.resource_type == "Observation"]
        if code:
            conditions.append(resource_index.c.code == code)
        if system:
            conditions.append(resource_index.c.system == system)
        if start:
            conditions.append(resource_index.c.effective_start >= start)
        if end:
            conditions.append(resource_index.c.effective_start < end)
        where = and_(*conditions)
        total = int(self.connection.execute(select(func.count()).select_from(resource_index).where(where)).scalar_one())
        rows = self.connection.execute(
            select(resource_index, resources.c.id.label("resource_id"))
            .join(resources, resources.c.pk == resource_index.c.resource_pk)
            .where(where)
            .order_by(resource_index.c.effective_start.desc(), resource_index.c.pk)
            .limit(limit).offset(offset)
        ).mappings().all()
        page = []
        for row in rows:
            page.append({
                "resource_id": row["resource_id"], "element": row["element"], "system": row["system"],
                "code": row["code"], "display": row["display"],
                "effective": _aware(row["effective_start"]), "status": row["status"],
                "value": row["value_num"], "unit": row["value_code"] or row["value_unit"],
                "value_normalised": row["value_norm"], "unit_normalised": row["unit_norm"],
                "unit_valid": row["unit_valid"],
                "value_text": None if row["value_text"] is None else self.codec.open(row["value_text"]).decode(),
            })
        return total, page
