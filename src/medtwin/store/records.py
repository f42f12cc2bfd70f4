"""Repository for FHIR resources: save prepared units, look up by identifier, query the index."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    Connection,
    DateTime,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)

from medtwin.record import exactjson
from medtwin.record.errors import ConflictError, PreconditionFailedError
from medtwin.record.export import references_in_raw
from medtwin.record.fhirtime import FhirDateError, parse_datetime
from medtwin.record.identifiers import names_the_patient
from medtwin.record.indexing import index_rows, unit_warnings
from medtwin.record.prepare import (
    IdentifierKey,
    IdentifierMatch,
    PreparedResource,
    PreparedUnit,
    content_hash,
)
from medtwin.store.codec import Codec
from medtwin.store.schema import (
    VERSION_COLUMNS,
    resource_history,
    resource_identifiers,
    resource_index,
    resources,
)

if TYPE_CHECKING:
    from medtwin.store.database import Store

_CHUNK = 400


@dataclass(kw_only=True)
class UnitCounts:
    """What storing one unit did: resources created, updated and unchanged, by resource type, and warnings.
    Shared by the store's :class:`UnitResult` and the import report (``medtwin.twin.build.UnitReport``)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ResourceOutcome:
    """What storing one resource of a unit did: ``created``, ``updated`` or ``unchanged``, and the version
    that is current afterwards (for a transaction-response's status, location and etag)."""

    status: str
    version: int


@dataclass(kw_only=True)
class UnitResult(UnitCounts):
    patients_changed: set[str] = field(default_factory=set)
    patients_seen: set[str] = field(default_factory=set)
    #: (type, id) -> what storing it did, for every resource of the unit.
    outcomes: dict[tuple[str, str], ResourceOutcome] = field(default_factory=dict)


@lru_cache(maxsize=1 << 16)
def _sqlite_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DATETIME storage format


def _sqlite_value(value: Any) -> Any:
    return _sqlite_datetime(value) if isinstance(value, datetime) else value


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
    if datetimes:
        params: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(row.values())
            for i in datetimes:
                values[i] = _sqlite_value(values[i])
            params.append(tuple(values))
    else:
        params = [tuple(row.values()) for row in rows]
    _sqlite_executemany(connection, table, columns, params)


def _sqlite_executemany(connection: Connection, table: Table, columns: Sequence[str],
                        params: list[tuple[Any, ...]]) -> None:
    """INSERT rows given as tuples in ``columns`` order, datetimes already in SQLite's text form."""
    if params:
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        connection.exec_driver_sql(sql, params)


_INDEX_COLUMNS = ("resource_pk", "patient_id", "resource_type", "element", "system", "code", "display",
                  "effective_start", "effective_end", "status", "value_num", "value_unit", "value_code",
                  "value_norm", "unit_norm", "unit_valid", "value_text", "chart_at")
_IDENTIFIER_COLUMNS = ("resource_pk", "resource_type", "token", "kind")
_RESOURCE_COLUMNS = ("resource_type", "id", "patient_id", "version", "last_updated", "import_id", "content_hash",
                     "content", "sent_last_updated")


def _same(value: datetime) -> datetime:
    return value


def _maybe(convert: Any, value: datetime | None) -> Any:
    return None if value is None else convert(value)


def _as_datetime(value: Any) -> datetime:
    """A DATETIME read through the SQLite driver directly comes back as SQLAlchemy's text form."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # type: ignore[no-any-return]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def source_id_token(resource_type: str, source_id: str) -> str:
    """What is blinded for a resource's id in the input it came from (see ``PreparedResource.source_id``)."""
    return f"source-id:{resource_type}|{source_id}"


def category_token(system: str | None, code: str) -> str:
    """What is blinded for a ``category`` coding (``resource_identifiers`` kind ``category``)."""
    return f"category:{system or ''}|{code}"


def category_rows(pk: int, resource_type: str, categories: Iterable[tuple[str | None, str]],
                  blind: Callable[[str], str]) -> list[tuple[Any, ...]]:
    """A resource's blind ``category`` tokens (system|code and |code) as rows in _IDENTIFIER_COLUMNS order."""
    tokens = {blind(category_token(s, code)) for system, code in categories for s in (system, None)}
    return [(pk, resource_type, token, "category") for token in sorted(tokens)]


def _identifier_rows(pk: int, res: PreparedResource, blind: Callable[[str], str]) -> list[tuple[Any, ...]]:
    """A resource's blind identifier and name tokens as rows in _IDENTIFIER_COLUMNS order."""
    tokens: set[tuple[str, str]] = set()
    for system, value in res.identifiers:
        tokens.add((blind(f"{system or ''}|{value}"), "identifier"))
        tokens.add((blind(f"|{value}"), "identifier"))
    for name in res.name_tokens:
        tokens.add((blind(f"name:{name}"), "name"))
    tokens.update((token, "category") for _, _, token, _ in category_rows(pk, res.resource_type, res.categories,
                                                                            blind))
    if res.source_id:
        tokens.add((blind(source_id_token(res.resource_type, res.source_id)), "source-id"))
    return [(pk, res.resource_type, token, kind) for token, kind in sorted(tokens)]


def _instant(stamp: str | None) -> datetime | None:
    """A FHIR instant as an aware datetime (None when absent or not valid)."""
    if stamp is None:
        return None
    try:
        return _aware(parse_datetime(stamp))
    except FhirDateError:
        return None


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of a resource as stored: its JSON exactly as written (decimals as given) and metadata."""

    resource_type: str
    id: str
    version: int
    last_updated: datetime
    patient_id: str | None
    raw: bytes

    def resource(self) -> dict[str, Any]:
        """The JSON parsed, decimals kept (``record.exactjson``)."""
        parsed: dict[str, Any] = exactjson.loads(self.raw)
        return parsed


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What :meth:`RecordRepository.search` filters on. ``dates``/``last_updated``: (operator, instant)
    pairs with operator one of eq-free comparisons ``ge gt le lt`` (an ``eq`` day is ``ge`` start + ``lt``
    end); ``codes``: (system or None, code), any of them; ``visible``: the patients a restricted reader may
    see (None: everyone)."""

    ids: frozenset[str] | None = None
    patient: str | None = None
    visible: frozenset[str] | None = None
    codes: tuple[tuple[str | None, str], ...] = ()
    dates: tuple[tuple[str, datetime], ...] = ()
    last_updated: tuple[tuple[str, datetime], ...] = ()
    statuses: tuple[str, ...] = ()
    identifiers: tuple[tuple[str | None, str], ...] = ()  # (system or None, value), any of them
    categories: tuple[tuple[str | None, str], ...] = ()  # (system or None, code), any of them
    #: (key, descending) with key ``_lastUpdated``, ``_id`` or ``date`` (the earliest effective time); the
    #: order is completed by last update and id, so pages never overlap.
    sort: tuple[tuple[str, bool], ...] = ()
    count: int = 50
    offset: int = 0


@dataclass(frozen=True)
class EverythingScope:
    """What ``Patient/$everything`` narrows a record to (its R4 parameters): ``types`` (None: every type),
    resources changed after ``since``, and the care dates ``start``/``end`` as (op, instant) comparisons
    (``fhir_support.date_conditions``) on each resource's indexed time: a resource is in when its time (a
    period: start to end) overlaps the range. The Patient itself and resources without an indexed time are
    kept (nothing shows them outside the range; :meth:`RecordRepository.count_undated` says how many)."""

    types: frozenset[str] | None = None
    since: datetime | None = None
    start: tuple[tuple[str, datetime], ...] = ()
    end: tuple[tuple[str, datetime], ...] = ()

    @property
    def dated(self) -> bool:
        return bool(self.start or self.end)

    def where(self) -> list[Any]:
        """Conditions on ``resources`` (the types, the change time and the care range)."""
        out: list[Any] = []
        if self.types is not None:
            out.append(resources.c.resource_type.in_(sorted(self.types)))
        if self.since is not None:
            out.append(resources.c.last_updated > self.since)
        if self.dated:
            overlapping = select(resource_index.c.resource_pk).where(
                resource_index.c.resource_pk == resources.c.pk,
                *(period_compare(op, moment) for op, moment in self.start + self.end))
            out.append(or_(resources.c.resource_type == "Patient", ~_dated().exists(), overlapping.exists()))
        return out

    def keeps(self, version: StoredVersion) -> bool:
        """The type and change-time conditions, on a resource read another way (a referenced one)."""
        return (self.types is None or version.resource_type in self.types) and (
            self.since is None or version.last_updated > self.since)


def _dated() -> Any:
    """The index rows with a time of the resource in the enclosing query."""
    return select(resource_index.c.resource_pk).where(resource_index.c.resource_pk == resources.c.pk,
                                                      resource_index.c.effective_start.is_not(None))


def _check_expected(unit: PreparedUnit, existing: dict[tuple[str, str], tuple[int, str, int]],
                    expect: dict[tuple[str, str], int]) -> None:
    """Raise :class:`PreconditionFailedError` for the first resource whose expected version is not stored."""
    for res in unit.resources:
        wanted = expect.get((res.resource_type, res.id))
        if wanted is None:
            continue
        found = existing.get((res.resource_type, res.id))
        if found is None or found[2] != wanted:
            stored = "no version is stored" if found is None else f"version {found[2]} is current"
            raise PreconditionFailedError(f"{res.resource_type}/{res.id}: If-Match expects version {wanted}, but "
                                          f"{stored}", entry=res.entry, field="If-Match")


def _sort_order(sort: tuple[tuple[str, bool], ...]) -> list[Any]:
    """ORDER BY terms of a search's ``_sort``."""
    earliest = (select(func.min(resource_index.c.effective_start))
                .where(resource_index.c.resource_pk == resources.c.pk).scalar_subquery())
    columns = {"_lastUpdated": resources.c.last_updated, "_id": resources.c.id, "date": earliest}
    return [columns[key].desc() if descending else columns[key].asc() for key, descending in sort]


def _compare(column: Any, op: str, moment: datetime) -> Any:
    """``column op moment`` (``in-`` ops, an ``eq`` search's bounds, compare as the plain ones)."""
    op = op.removeprefix("in-")
    return {"ge": column >= moment, "gt": column > moment, "le": column <= moment, "lt": column < moment}[op]


def period_compare(op: str, moment: datetime) -> Any:
    """A date search's comparison on the indexed time, a period (an ongoing one ends at ``OPEN_END``; an
    instant starts and ends at once), as R4 reads prefixes: ``ge``/``gt`` hold when the period ends at or
    after (after) the moment, ``le``/``lt`` when it starts at or before (before) it, so the ranges intersect;
    ``in-ge``/``in-le``/``in-lt`` (``eq``) when the whole period is within the value's."""
    start = resource_index.c.effective_start
    ends = func.coalesce(resource_index.c.effective_end, start)
    column = ends if op in ("gt", "ge", "in-le", "in-lt") else start
    return _compare(column, op, moment)


class RecordRepository:
    """Resources in one transaction/connection. Implements the preparer's ``ExistingRecords``."""

    def __init__(self, connection: Connection, codec: Codec) -> None:
        self.connection = connection
        self.codec = codec

    # --- ExistingRecords -------------------------------------------------------------------------
    def identifier_token(self, system: str | None, value: str) -> str:
        return self.codec.blind(f"{system or ''}|{value}")

    def find_by_identifier(self, resource_type: str, system: str | None, value: str) -> str | None:
        """The first stored ``resource_type`` with the identifier (a lookup by a trusted caller, e.g. an MRN;
        writes decide on all the matches, :meth:`matches_by_identifier`)."""
        found = self.matches_by_identifier(resource_type, system, value)
        return found[0][0] if found else None

    def matches_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[IdentifierMatch]:
        """Every stored ``resource_type`` with the identifier: (id, patient, current version), in storage order
        (conditional creates, updates and references must know when there are several)."""
        return self.matches_by_identifiers([(resource_type, system, value)]).get((resource_type, system, value), [])

    def exists(self, resource_type: str, resource_id: str) -> bool:
        row = self.connection.execute(
            select(resources.c.pk).where(resources.c.resource_type == resource_type, resources.c.id == resource_id)
        ).first()
        return row is not None

    def find_by_identifiers(self, keys: Sequence[tuple[str, str | None, str]]) -> dict[tuple[str, str | None, str], str]:
        """``find_by_identifier`` for many (type, system, value) at once: the keys found, with their id."""
        return {key: found[0][0] for key, found in self.matches_by_identifiers(keys).items()}

    def matches_by_identifiers(self, keys: Sequence[IdentifierKey]) -> dict[IdentifierKey, list[IdentifierMatch]]:
        """``matches_by_identifier`` for many (type, system, value) at once (one query per chunk of keys): the
        keys found, each with its matches in storage order."""
        by_token: dict[tuple[str, str], list[IdentifierKey]] = {}
        for key in keys:
            by_token.setdefault((self.identifier_token(key[1], key[2]), key[0]), []).append(key)
        tokens = sorted({token for token, _ in by_token})
        found: dict[IdentifierKey, list[IdentifierMatch]] = {}
        for start in range(0, len(tokens), _CHUNK):
            rows = self.connection.execute(
                select(resource_identifiers.c.token, resource_identifiers.c.resource_type, resources.c.id,
                       resources.c.patient_id, resources.c.version)
                .join(resources, resource_identifiers.c.resource_pk == resources.c.pk)
                .where(resource_identifiers.c.token.in_(tokens[start:start + _CHUNK]),
                       resource_identifiers.c.kind == "identifier")
                .order_by(resources.c.pk)
            )
            for token, rtype, rid, patient, version in rows:
                match = (str(rid), None if patient is None else str(patient), int(version))
                for key in by_token.get((token, rtype), ()):
                    found.setdefault(key, []).append(match)
        return found

    def existing_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (type, id) keys are stored."""
        return set(self._stored_versions(keys))

    def patients_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """The stored ones among the (type, id) keys, each with the patient it belongs to (for write checks)."""
        return {(str(rtype), str(rid)): None if patient_id is None else str(patient_id)
                for rtype, rid, patient_id in self._stored_rows(keys, ("patient_id",))}

    def current_versions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The current version of the stored ones among the (type, id) keys."""
        return {key: found[2] for key, found in self._stored_versions(keys).items()}

    def _stored_versions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str, int]]:
        """(type, id) -> (pk, content hash, version) of the stored ones among ``keys``."""
        return {(rtype, rid): (int(pk), digest, version)
                for rtype, rid, pk, digest, version in self._stored_rows(keys, ("pk", "content_hash", "version"))}

    def _stored_rows(self, keys: Sequence[tuple[str, str]], columns: tuple[str, ...]) -> Iterator[Any]:
        """``(resource_type, id, *columns)`` of the stored resources among the (type, id) keys, in chunks."""
        sqlite = self.connection.dialect.name == "sqlite"
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            if sqlite:
                # A join with the keys as VALUES, through the driver: SQLite answers ``(a, b) IN (VALUES ...)``
                # (what the tuple IN compiles to) by scanning the whole table, the join by the unique index.
                yield from self.connection.exec_driver_sql(
                    f"SELECT r.resource_type, r.id, {', '.join(f'r.{c}' for c in columns)} FROM "
                    f"(VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS k "
                    "JOIN resources AS r ON r.resource_type = k.column1 AND r.id = k.column2",
                    tuple(value for key in chunk for value in key))
            else:
                yield from self.connection.execute(
                    select(resources.c.resource_type, resources.c.id, *(resources.c[c] for c in columns))
                    .where(tuple_(resources.c.resource_type, resources.c.id).in_(list(chunk))))

    # --- writing -----------------------------------------------------------------------------------
    def save_unit(self, unit: PreparedUnit, *, import_id: str | None, now: datetime,
                  force: bool = False, expect: dict[tuple[str, str], int] | None = None) -> UnitResult:
        """Insert new resources, update changed ones (the version they replace is kept in the history), leave
        identical ones alone (idempotent). A resource that names itself going back to an earlier version's
        content, or any with a ``meta.lastUpdated`` older than the stored one's, raises :class:`ConflictError`
        (nothing of the unit is written) unless ``force`` (see ``_refuse_reverts``). ``expect``: (type, id) ->
        the version an update expects to replace (``If-Match``); another stored version, or none, raises
        :class:`PreconditionFailedError` (nothing written)."""
        result = UnitResult(unchanged=unit.matched_existing)
        new, changed = self._sort_out(unit, result, expect or {})
        if not force:
            self._refuse_reverts(changed)
        sqlite = self.connection.dialect.name == "sqlite"
        written = self._insert_new(new, import_id=import_id, now=now, sqlite=sqlite)
        written.extend(self._update_changed(changed, import_id=import_id, now=now))
        index_batch, identifier_batch = self._index_batches(written, result, sqlite)
        if sqlite:
            _sqlite_executemany(self.connection, resource_index, _INDEX_COLUMNS, index_batch)
            _sqlite_executemany(self.connection, resource_identifiers, _IDENTIFIER_COLUMNS, identifier_batch)
        else:
            for table, columns, batch in ((resource_index, _INDEX_COLUMNS, index_batch),
                                          (resource_identifiers, _IDENTIFIER_COLUMNS, identifier_batch)):
                if batch:
                    self.connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in batch])
        return result

    def _sort_out(self, unit: PreparedUnit, result: UnitResult, expect: dict[tuple[str, str], int]) -> tuple[
            list[tuple[PreparedResource, str, bytes]], list[tuple[PreparedResource, str, bytes, int, int]]]:
        """The unit's new resources and its changed ones (with their stored pk and version), sealed; identical
        ones are counted as unchanged. Fills the counts and outcomes of ``result``."""
        existing = self._stored_versions([(r.resource_type, r.id) for r in unit.resources])
        _check_expected(unit, existing, expect)
        new: list[tuple[PreparedResource, str, bytes]] = []
        changed: list[tuple[PreparedResource, str, bytes, int, int]] = []
        seal = self.codec.seal
        for res in unit.resources:
            digest = content_hash(res.raw)
            if res.patient_id:
                result.patients_seen.add(res.patient_id)
            key = (res.resource_type, res.id)
            found = existing.get(key)
            if found is not None and found[1] == digest:
                result.unchanged += 1
                result.outcomes[key] = ResourceOutcome("unchanged", found[2])
                continue
            blob = seal(res.raw)
            if found is None:
                new.append((res, digest, blob))
                result.created += 1
                result.outcomes[key] = ResourceOutcome("created", 1)
            else:
                changed.append((res, digest, blob, found[0], found[2]))
                result.updated += 1
                result.outcomes[key] = ResourceOutcome("updated", found[2] + 1)
            result.by_type[res.resource_type] += 1
            if res.patient_id:
                result.patients_changed.add(res.patient_id)
        return new, changed

    def _insert_new(self, new: list[tuple[PreparedResource, str, bytes]], *, import_id: str | None, now: datetime,
                    sqlite: bool) -> list[tuple[int, PreparedResource]]:
        """Insert new resources; their primary keys with them."""
        if not new:
            return []
        if sqlite:
            return self._insert_new_sqlite(new, import_id=import_id, now=now)
        written: list[tuple[int, PreparedResource]] = []
        new_rows = [
            {"resource_type": res.resource_type, "id": res.id, "patient_id": res.patient_id, "version": 1,
             "last_updated": now, "import_id": import_id, "content_hash": digest, "content": blob,
             "sent_last_updated": _instant(res.sent_last_updated)}
            for res, digest, blob in new
        ]
        for start in range(0, len(new_rows), _CHUNK):
            returned = self.connection.execute(
                insert(resources).returning(resources.c.pk, sort_by_parameter_order=True),
                new_rows[start:start + _CHUNK],
            ).all()
            written.extend((int(r[0]), res) for r, (res, _, _) in zip(returned, new[start:start + _CHUNK],
                                                                        strict=True))
        return written

    def _update_changed(self, changed: list[tuple[PreparedResource, str, bytes, int, int]], *,
                        import_id: str | None, now: datetime) -> list[tuple[int, PreparedResource]]:
        """New versions of changed resources; the versions they replace go to the history, their index and
        identifier rows are deleted."""
        if changed:
            self._keep_history([pk for _, _, _, pk, _ in changed])
        for res, digest, blob, pk, version in changed:
            self.connection.execute(
                update(resources).where(resources.c.pk == pk).values(
                    patient_id=res.patient_id, version=version + 1, last_updated=now, import_id=import_id,
                    content_hash=digest, content=blob, sent_last_updated=_instant(res.sent_last_updated),
                )
            )
        if not changed:
            return []
        changed_pks = [pk for _, _, _, pk, _ in changed]
        self.connection.execute(delete(resource_index).where(resource_index.c.resource_pk.in_(changed_pks)))
        self.connection.execute(
            delete(resource_identifiers).where(resource_identifiers.c.resource_pk.in_(changed_pks)))
        return [(pk, res) for res, _, _, pk, _ in changed]

    def _keep_history(self, pks: list[int]) -> None:
        """Copy the current rows of ``pks`` to ``resource_history`` (before they are overwritten)."""
        current = select(resources.c.pk, *(resources.c[name] for name in VERSION_COLUMNS))
        for start in range(0, len(pks), _CHUNK):
            chunk = pks[start:start + _CHUNK]
            self.connection.execute(insert(resource_history).from_select(
                ["resource_pk", *VERSION_COLUMNS], current.where(resources.c.pk.in_(chunk))))

    def _refuse_reverts(self, changed: list[tuple[PreparedResource, str, bytes, int, int]]) -> None:
        """Raise :class:`ConflictError` for the first changed resource that would go back to the content of
        an earlier version (unless written by a PUT to its URL), or whose ``meta.lastUpdated`` is older than
        the stored version's."""
        if not changed:
            return
        by_pk = {pk: (res, digest, version) for res, digest, _, pk, version in changed}
        # A PUT to the resource's URL (or a conditional update) says "make it this": going back to earlier
        # content is then what the writer asked for (FHIR guards such updates with If-Match). A resource that
        # names itself (a re-imported file, an ndjson line, a POSTed entry) going back is an older copy.
        pks = [pk for pk, (res, _, _) in by_pk.items() if res.named_by not in ("url", "criteria")]
        for start in range(0, len(pks), _CHUNK):
            rows = self.connection.execute(
                select(resource_history.c.resource_pk, resource_history.c.version, resource_history.c.content_hash)
                .where(resource_history.c.resource_pk.in_(pks[start:start + _CHUNK])))
            for pk, old_version, digest in rows:
                res, new_digest, version = by_pk[int(pk)]
                if digest == new_digest:
                    raise ConflictError(
                        f"{res.resource_type}/{res.id} would go back to the content of its version {old_version} "
                        f"(version {version} is stored and newer): an older bundle; import it forced to revert",
                        entry=res.entry, field=f"{res.resource_type}.id")
        dated = {pk: stamp for pk, (res, _, _) in by_pk.items()
                 if (stamp := _instant(res.sent_last_updated)) is not None}
        if dated:
            for pk, stored in self.connection.execute(
                    select(resources.c.pk, resources.c.sent_last_updated).where(resources.c.pk.in_(list(dated)))):
                stored = _aware(_as_datetime(stored))
                if stored is not None and stored > dated[int(pk)]:
                    res = by_pk[int(pk)][0]
                    raise ConflictError(
                        f"{res.resource_type}/{res.id}: meta.lastUpdated {dated[int(pk)].isoformat()} is older than "
                        f"the stored version's ({stored.isoformat()}); import it forced to replace newer content",
                        entry=res.entry, field=f"{res.resource_type}.meta.lastUpdated")

    def _index_batches(self, written: list[tuple[int, PreparedResource]], result: UnitResult,
                       sqlite: bool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Index and identifier rows as tuples in _INDEX_COLUMNS / _IDENTIFIER_COLUMNS order (datetimes in
        SQLite's text form there: the rows go straight to the driver). Unit warnings go to ``result``."""
        when = _sqlite_datetime if sqlite else _same
        index_batch: list[tuple[Any, ...]] = []
        identifier_batch: list[tuple[Any, ...]] = []
        seal, blind = self.codec.seal, self.codec.blind
        for pk, res in written:
            rows_for = index_rows(res.source)
            if rows_for:
                for warning in unit_warnings(rows_for):
                    result.warnings.append(f"{res.resource_type}/{res.id} (entry {res.entry}): {warning}")
                head = (pk, res.patient_id, res.resource_type)
                begins, ends = rows_for[0].effective_start, rows_for[0].effective_end  # one time per resource
                shared = (_maybe(when, begins), _maybe(when, ends))
                for row in rows_for:
                    # row: element, system, code, display, start, end, status, value_num ... unit_valid,
                    # value_text, chart_at
                    times = shared if row[4] is begins and row[5] is ends else (_maybe(when, row[4]),
                                                                                _maybe(when, row[5]))
                    text = row[13]
                    index_batch.append(head + row[:4] + times + row[6:13] +
                                       (None if text is None else seal(text.encode()), _maybe(when, row[14])))
            if res.identifiers or res.name_tokens or res.source_id or res.categories:
                identifier_batch.extend(_identifier_rows(pk, res, blind))
        return index_batch, identifier_batch

    def _insert_new_sqlite(self, new: list[tuple[PreparedResource, str, bytes]], *, import_id: str | None,
                           now: datetime) -> list[tuple[int, PreparedResource]]:
        """Insert new resources through the driver's executemany and return their primary keys.

        Inside the unit's write transaction nobody else inserts, and SQLite gives each new row the largest
        rowid so far + 1, so the rows get consecutive keys ending at ``last_insert_rowid()``; that is checked
        (the first and last row must be the first and last resource) and, should it ever not hold, the keys
        are read back by (type, id)."""
        stamp = _sqlite_datetime(now)
        params = [(res.resource_type, res.id, res.patient_id, 1, stamp, import_id, digest, blob,
                   _maybe(_sqlite_datetime, _instant(res.sent_last_updated)))
                  for res, digest, blob in new]
        _sqlite_executemany(self.connection, resources, _RESOURCE_COLUMNS, params)
        last = int(self.connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one())
        first = last - len(new) + 1
        ends = {int(pk): (rtype, rid) for pk, rtype, rid in self.connection.exec_driver_sql(
            "SELECT pk, resource_type, id FROM resources WHERE pk IN (?, ?)", (first, last))}
        resources_in_order = [res for res, _, _ in new]
        head, tail = resources_in_order[0], resources_in_order[-1]
        if ends.get(first) == (head.resource_type, head.id) and ends.get(last) == (tail.resource_type, tail.id):
            return list(zip(range(first, last + 1), resources_in_order, strict=True))
        stored = self._stored_versions([(res.resource_type, res.id) for res in resources_in_order])
        return [(stored[(res.resource_type, res.id)][0], res) for res in resources_in_order]

    # --- reading -----------------------------------------------------------------------------------
    def current(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """The current version of a resource, as stored."""
        row = self.connection.execute(
            select(resources.c.version, resources.c.last_updated, resources.c.patient_id, resources.c.content)
            .where(resources.c.resource_type == resource_type, resources.c.id == resource_id)).first()
        if row is None:
            return None
        return StoredVersion(resource_type, resource_id, int(row[0]), _aware(row[1]) or row[1],
                             None if row[2] is None else str(row[2]), self.codec.open(row[3]))

    def history(self, resource_type: str, resource_id: str) -> list[StoredVersion]:
        """Every version of a resource, newest first (empty when there is no such resource)."""
        latest = self.current(resource_type, resource_id)
        if latest is None:
            return []
        rows = self.connection.execute(
            select(resource_history.c.version, resource_history.c.last_updated, resource_history.c.patient_id,
                   resource_history.c.content)
            .where(resource_history.c.resource_pk.in_(select(resources.c.pk).where(
                resources.c.resource_type == resource_type, resources.c.id == resource_id)))
            .order_by(resource_history.c.version.desc()))
        return [latest] + [StoredVersion(resource_type, resource_id, int(v), _aware(t) or t,
                                         None if p is None else str(p), self.codec.open(c)) for v, t, p, c in rows]

    def search(self, resource_type: str, query: SearchQuery) -> tuple[int, list[StoredVersion]]:
        """Current versions of ``resource_type`` matching ``query`` (every condition must hold), ordered by
        last update then id; returns (total, the page)."""
        where = [resources.c.resource_type == resource_type]
        if query.ids is not None:
            where.append(resources.c.id.in_(list(query.ids)))
        if query.patient is not None:
            where.append(resources.c.patient_id == query.patient)
        if query.visible is not None:  # a restricted reader: their patients' resources and shared ones
            where.append(or_(resources.c.patient_id.in_(sorted(query.visible)), resources.c.patient_id.is_(None)))
        for op, moment in query.last_updated:
            where.append(_compare(resources.c.last_updated, op, moment))
        indexed = []
        if query.codes:
            indexed.append(or_(*(and_(resource_index.c.code == code,
                                      true() if system is None else resource_index.c.system == system)
                                 for system, code in query.codes)))
        for op, moment in query.dates:
            indexed.append(period_compare(op, moment))
        if query.statuses:
            indexed.append(resource_index.c.status.in_(list(query.statuses)))
        if query.identifiers:
            tokens = [self.identifier_token(system, value) for system, value in query.identifiers]
            where.append(resources.c.pk.in_(select(resource_identifiers.c.resource_pk).where(
                resource_identifiers.c.token.in_(tokens), resource_identifiers.c.kind == "identifier")))
        if query.categories:
            tokens = [self.codec.blind(category_token(system, code)) for system, code in query.categories]
            where.append(resources.c.pk.in_(select(resource_identifiers.c.resource_pk).where(
                resource_identifiers.c.token.in_(tokens), resource_identifiers.c.kind == "category")))
        if indexed:
            where.append(resources.c.pk.in_(select(resource_index.c.resource_pk).where(*indexed)))
        condition = and_(*where)
        total = int(self.connection.execute(select(func.count()).select_from(resources).where(condition))
                    .scalar_one())
        rows = self.connection.execute(
            select(resources.c.id, resources.c.version, resources.c.last_updated, resources.c.patient_id,
                   resources.c.content).where(condition)
            .order_by(*_sort_order(query.sort), resources.c.last_updated, resources.c.id)
            .limit(query.count).offset(query.offset))
        return total, [StoredVersion(resource_type, str(i), int(v), _aware(t) or t, None if p is None else str(p),
                                     self.codec.open(c)) for i, v, t, p, c in rows]

    def of_patients(self, resource_type: str, patient_ids: Sequence[str], *, limit: int) -> list[StoredVersion]:
        """Current versions of ``resource_type`` stored for any of ``patient_ids`` (``_revinclude``), at most
        ``limit``, in last-update order."""
        rows = self.connection.execute(
            select(resources.c.id, resources.c.version, resources.c.last_updated, resources.c.patient_id,
                   resources.c.content)
            .where(resources.c.resource_type == resource_type, resources.c.patient_id.in_(list(patient_ids)))
            .order_by(resources.c.last_updated, resources.c.id).limit(limit))
        return [StoredVersion(resource_type, str(i), int(v), _aware(t) or t, None if p is None else str(p),
                              self.codec.open(c)) for i, v, t, p, c in rows]

    def current_batches(self, resource_type: str, *, patients: frozenset[str] | None, unowned: bool,
                        since: datetime | None, size: int) -> Iterator[list[StoredVersion]]:
        """Current versions of ``resource_type`` in storage order, ``size`` at a time (Bulk export):
        of ``patients`` (None: of any patient), and with ``unowned`` those of no patient; with ``since``
        only those changed after it."""
        owner = resources.c.patient_id
        reach: Any
        if patients is None:
            reach = true() if unowned else owner.is_not(None)
        else:
            listed = owner.in_(sorted(patients))
            reach = or_(listed, owner.is_(None)) if unowned else listed
        where = [resources.c.resource_type == resource_type, reach]
        if since is not None:
            where.append(resources.c.last_updated > since)
        last = -1
        while True:
            rows = self.connection.execute(
                select(resources.c.pk, resources.c.id, resources.c.version, resources.c.last_updated, owner,
                       resources.c.content).where(*where, resources.c.pk > last)
                .order_by(resources.c.pk).limit(size)).all()
            if not rows:
                return
            last = int(rows[-1][0])
            yield [StoredVersion(resource_type, str(i), int(v), _aware(t) or t, None if p is None else str(p),
                                 self.codec.open(c)) for _, i, v, t, p, c in rows]

    def type_history(self, resource_type: str, *, visible: frozenset[str] | None, count: int,
                     offset: int) -> tuple[int, list[StoredVersion]]:
        """Every version of every resource of a type (current and superseded), newest first; returns (total,
        the page). ``visible``: a restricted reader's patients (their versions and shared ones only)."""
        parts = []
        for table in (resources, resource_history):
            query = select(table.c.id, table.c.version, table.c.last_updated, table.c.patient_id,
                           table.c.content).where(table.c.resource_type == resource_type)
            if visible is not None:
                query = query.where(or_(table.c.patient_id.in_(sorted(visible)), table.c.patient_id.is_(None)))
            parts.append(query)
        both = parts[0].union_all(parts[1]).subquery()
        total = int(self.connection.execute(select(func.count()).select_from(both)).scalar_one())
        rows = self.connection.execute(select(both).order_by(both.c.last_updated.desc(), both.c.id,
                                                            both.c.version.desc()).limit(count).offset(offset))
        return total, [StoredVersion(resource_type, str(i), int(v), _aware(t) or t, None if p is None else str(p),
                                     self.codec.open(c)) for i, v, t, p, c in rows]

    def version(self, resource_type: str, resource_id: str, version: int) -> StoredVersion | None:
        """One version of a resource (vread); None when the resource or that version does not exist."""
        return next((v for v in self.history(resource_type, resource_id) if v.version == version), None)

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
        return [self._decode(row[2]) for row in self._stored_rows(list(keys), ("content",))]

    def versions_of(self, keys: Iterable[tuple[str, str]]) -> list[StoredVersion]:
        """The current versions of the stored ones among the (type, id) keys (one indexed query per chunk)."""
        return [StoredVersion(str(t), str(i), int(v), _aware(_as_datetime(u)) or u, None if p is None else str(p),
                              self.codec.open(c))
                for t, i, v, u, p, c in self._stored_rows(list(keys), ("version", "last_updated", "patient_id",
                                                                        "content"))]

    def everything(self, patient_id: str, scope: EverythingScope | None = None
                   ) -> tuple[list[StoredVersion], list[StoredVersion]]:
        """A patient's record (``Patient/$everything``): the current versions stored under them, and every
        resource those reference, transitively (read from the stored bytes, nothing parsed); ``scope``
        narrows both (a referenced resource by type and change time: the care range is the record's)."""
        matched, included = self._everything(patient_id, scope)
        return matched, included if scope is None else [v for v in included if scope.keeps(v)]

    def count_undated(self, patient_id: str, scope: EverythingScope) -> int:
        """How many of the resources ``everything`` keeps under a care range have no indexed time to compare
        (the Patient aside)."""
        where = [resources.c.patient_id == patient_id, resources.c.resource_type != "Patient", ~_dated().exists(),
                 *replace(scope, start=(), end=()).where()]
        return int(self.connection.execute(select(func.count()).select_from(resources).where(*where)).scalar_one())

    def _everything(self, patient_id: str, scope: EverythingScope | None
                    ) -> tuple[list[StoredVersion], list[StoredVersion]]:
        matched = self.patient_versions(patient_id, scope)
        keys = {(v.resource_type, v.id) for v in matched}
        included: list[StoredVersion] = []
        frontier = set().union(*(references_in_raw(v.raw) for v in matched))
        while True:
            wanted = sorted((t, i) for t, _, i in (r.partition("/") for r in frontier) if (t, i) not in keys)
            found = self.versions_of(wanted) if wanted else []
            if not found:
                return matched, included
            included.extend(found)
            keys.update((v.resource_type, v.id) for v in found)
            frontier = set().union(*(references_in_raw(v.raw) for v in found))

    def patient_versions(self, patient_id: str, scope: EverythingScope | None = None) -> list[StoredVersion]:
        """The current versions of every resource stored under a patient (within ``scope``)."""
        rows = self.connection.execute(
            select(resources.c.resource_type, resources.c.id, resources.c.version, resources.c.last_updated,
                   resources.c.content).where(resources.c.patient_id == patient_id,
                                              *(scope.where() if scope is not None else ()))
            .order_by(resources.c.pk))
        return [StoredVersion(str(t), str(i), int(v), _aware(u) or u, patient_id, self.codec.open(c))
                for t, i, v, u, c in rows]

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

    def find_by_source_id(self, resource_type: str, source_id: str) -> str | None:
        """The stored id of the resource that had ``source_id`` as its id in the input it was imported from."""
        token = self.codec.blind(source_id_token(resource_type, source_id))
        row = self.connection.execute(
            select(resources.c.id)
            .join(resource_identifiers, resource_identifiers.c.resource_pk == resources.c.pk)
            .where(resource_identifiers.c.token == token, resource_identifiers.c.resource_type == resource_type,
                   resource_identifiers.c.kind == "source-id")
            .limit(1)).first()
        return None if row is None else str(row[0])

    def resolve_patient(self, key: str) -> str | None:
        """A patient id from its id, its id in the input it came from, or its medical record number; never from
        a national person identifier (:func:`medtwin.record.identifiers.names_the_patient`), which a path, a
        topic or a log line must not carry."""
        if self.exists("Patient", key):
            return key
        if (sent := self.find_by_source_id("Patient", key)) is not None:
            return sent  # the sending system's own id for the patient (a Synthea UUID), not a person's number
        found = self.find_by_identifier("Patient", None, key)
        patient = self.get("Patient", found) if found is not None else None
        identifiers = (patient or {}).get("identifier", [])
        return found if any(names_the_patient(i, key) for i in identifiers if isinstance(i, dict)) else None

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
        """Index rows of a patient's Observations (and components), newest first; returns (total, page).
        Placed, filtered and sorted by the time of the reading (``chart_at``: effective[x], else ``issued``),
        not by the FHIR ``date`` parameter's effective[x] alone, so a reading dated only by ``issued`` is
        charted."""
        conditions = [resource_index.c.patient_id == patient_id, resource_index.c.resource_type == "Observation",
                      resource_index.c.element != "resource"]  # a code-less Observation's time/status row
        if code:
            conditions.append(resource_index.c.code == code)
        if system:
            conditions.append(resource_index.c.system == system)
        if start:
            conditions.append(resource_index.c.chart_at >= start)
        if end:
            conditions.append(resource_index.c.chart_at < end)
        where = and_(*conditions)
        total = int(self.connection.execute(select(func.count()).select_from(resource_index).where(where)).scalar_one())
        rows = self.connection.execute(
            select(resource_index, resources.c.id.label("resource_id"))
            .join(resources, resources.c.pk == resource_index.c.resource_pk)
            .where(where)
            .order_by(resource_index.c.chart_at.desc(), resource_index.c.pk)
            .limit(limit).offset(offset)
        ).mappings().all()
        page = []
        for row in rows:
            page.append({
                "resource_id": row["resource_id"], "element": row["element"], "system": row["system"],
                "code": row["code"], "display": row["display"],
                "effective": _aware(row["chart_at"]), "status": row["status"],
                "value": row["value_num"], "unit": row["value_code"] or row["value_unit"],
                "value_normalised": row["value_norm"], "unit_normalised": row["unit_norm"],
                "unit_valid": row["unit_valid"],
                "value_text": None if row["value_text"] is None else self.codec.open(row["value_text"]).decode(),
            })
        return total, page


def resolve_patient(store: Store, key: str) -> str | None:
    """:meth:`RecordRepository.resolve_patient` on a connection of its own, for a caller that holds only the
    store: the patient a path names in the API, the patient of a sample in the ingest pipeline."""
    with store.connect() as connection:
        return RecordRepository(connection, store.codec).resolve_patient(key)
