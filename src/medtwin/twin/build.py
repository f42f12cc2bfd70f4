"""Building twins from data: import FHIR units into the store and refresh each changed patient's twin
(a new version, with provenance, whenever their record changed)."""

from __future__ import annotations

import gc
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any

import orjson
from sqlalchemy import Connection, insert, update

from medtwin.record.errors import RecordError
from medtwin.record.export import searchset_bundle, with_version
from medtwin.record.prepare import ExistingRecords, PreparedUnit, prepare
from medtwin.record.sources import RawUnit
from medtwin.security.write_policy import ReachLimitedRecords, Writer, authorise_unit
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository, ResourceOutcome, UnitCounts
from medtwin.store.schema import imports
from medtwin.store.twins import TwinRepository
from medtwin.twin.summary import PatientSummary, build_summary

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class UnitReport(UnitCounts):
    source: str
    kind: str = ""
    import_id: str = ""
    patients: list[str] = field(default_factory=list)
    error: RecordError | None = None
    #: entry number -> (type, id, what storing it did); a matched conditional create is ``matched``.
    entries: dict[int, tuple[str, str, ResourceOutcome]] = field(default_factory=dict)
    #: When what the unit created or updated was stored (their ``meta.lastUpdated``).
    stored_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ImportReport:
    units: list[UnitReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(u.ok for u in self.units)

    @property
    def errors(self) -> list[UnitReport]:
        return [u for u in self.units if not u.ok]

    def totals(self) -> dict[str, int]:
        return {
            "created": sum(u.created for u in self.units),
            "updated": sum(u.updated for u in self.units),
            "unchanged": sum(u.unchanged for u in self.units),
            "failed_units": len(self.errors),
        }

    def by_type(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for unit in self.units:
            total.update(unit.by_type)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "totals": self.totals(),
            "by_type": dict(sorted(self.by_type().items())),
            "units": [
                {
                    "source": u.source, "kind": u.kind, "import_id": u.import_id or None, "created": u.created,
                    "updated": u.updated, "unchanged": u.unchanged, "by_type": dict(sorted(u.by_type.items())),
                    "patients": u.patients, "warnings": u.warnings,
                    "error": None if u.error is None else {
                        "kind": u.error.kind, "message": u.error.message, "source": u.error.source,
                        "entry": u.error.entry, "field": u.error.field,
                    },
                }
                for u in self.units
            ],
        }


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while importing (re-entrant, thread-safe).

    A unit is hundreds of thousands of parsed JSON dicts and lists. They hold no cycles and are freed by
    reference counting, but while they are alive every collection the allocations trigger walks them
    again: with the collector running, a fifth of the import time went to it. An import of the ten Synthea
    patients leaves ~120 objects in cycles (SQLAlchemy's), collected when the pause ends."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def refresh_twin(connection: Connection, store: Store, patient_id: str, *, provenance: dict[str, Any], actor: str,
                 now: datetime, resources: list[dict[str, Any]] | None = None) -> int:
    """Rebuild a patient's record summary and store it as a new twin version; returns the version.
    ``resources``: the patient's complete record when the caller has it (saves reading it back)."""
    if resources is None:
        resources = RecordRepository(connection, store.codec).patient_resources(patient_id)
    summary = build_summary(patient_id, resources, now=now)
    return TwinRepository(connection, store.codec).add_version(
        patient_id, "record", summary.model_dump(mode="json"), provenance, actor=actor, now=now)


def _prepare_authorised(records: RecordRepository, raw: RawUnit, writer: Writer | None) -> PreparedUnit:
    """Prepare a unit as the writer sees the store (a restricted writer does not see what is outside their
    reach) and authorise every resource of it against its stored version (see ``security.write_policy``)."""
    existing: ExistingRecords = records
    if writer is not None and writer.patient_ids is not None:
        existing = ReachLimitedRecords(records, writer, records.patients_of)
    unit = prepare(raw.data, source=raw.source, existing=existing, kind="ndjson" if raw.kind == "ndjson" else None)
    keys = [(r.resource_type, r.id) for r in unit.resources]
    try:  # a trusted import (no writer) is checked for patient data without a patient only: no stored versions
        authorise_unit(writer, unit.resources, {} if writer is None else records.patients_of(keys))
    except RecordError as error:
        raise error.located(source=raw.source) from None
    return unit


def import_unit(store: Store, raw: RawUnit, *, actor: str = "system", clock: Clock = utc_now,
                writer: Writer | None = None, force: bool = False,
                expect: dict[tuple[str, str], int] | None = None) -> UnitReport:
    """Import one unit all-or-nothing. Returns a report; a bad unit's report carries the error and
    nothing of it is stored (a failed import row records the attempt). ``writer``: who writes, authorised
    resource by resource against the stored versions; None for a trusted local import (the CLI).
    ``force``: write a version even when it takes a resource back to earlier or older content (otherwise a
    conflict, see ``RecordRepository.save_unit``). ``expect``: the versions updates expect to replace
    (``If-Match``; a mismatch writes nothing)."""
    report = UnitReport(source=raw.source)
    started = clock()
    import_id = str(uuid.uuid4())
    try:
        with store.begin() as connection:
            records = RecordRepository(connection, store.codec)
            unit = _prepare_authorised(records, raw, writer)
            report.kind = unit.kind
            existed_before = {r.id for r in unit.resources
                              if r.resource_type == "Patient" and records.exists("Patient", r.id)}
            connection.execute(insert(imports).values(
                id=import_id, source=store.codec.seal(raw.source.encode()), started_at=started, actor=actor,
                status="running",
                created=0, updated=0, unchanged=0))
            result = records.save_unit(unit, import_id=import_id, now=started, force=force, expect=expect)
            report.entries = _entry_outcomes(records, unit, result.outcomes)
            report.stored_at = started
            report.created, report.updated, report.unchanged = result.created, result.updated, result.unchanged
            report.by_type = result.by_type
            report.warnings = result.warnings
            report.patients = sorted(result.patients_changed)
            provenance = {"import_id": import_id, "source": raw.source, "imported_at": started.isoformat(),
                          "created": result.created, "updated": result.updated}
            # A patient created by this unit has no resources stored before it: their record is in the unit.
            new_patients = {r.id for r in unit.resources if r.resource_type == "Patient"} - existed_before
            in_unit: dict[str, list[dict[str, Any]]] = {}
            for resource in unit.resources:
                if resource.patient_id in new_patients:
                    in_unit.setdefault(resource.patient_id, []).append(resource.source)
            for patient_id in report.patients:
                if patient_id in new_patients or records.exists("Patient", patient_id):
                    refresh_twin(connection, store, patient_id, provenance=provenance, actor=actor, now=started,
                                 resources=in_unit.get(patient_id))
            connection.execute(update(imports).where(imports.c.id == import_id).values(
                status="committed", finished_at=clock(), created=result.created, updated=result.updated,
                unchanged=result.unchanged,
                summary=store.codec.seal(orjson.dumps({"by_type": dict(result.by_type),
                                                       "warnings": result.warnings[:200]}))))
            report.import_id = import_id
    except RecordError as error:
        report.error = error
        with store.begin() as connection:
            connection.execute(insert(imports).values(
                id=import_id, source=store.codec.seal(raw.source.encode()), started_at=started,
                finished_at=clock(), actor=actor, status="failed", created=0, updated=0, unchanged=0,
                summary=store.codec.seal(orjson.dumps({"error": error.describe()}))))
    return report


def _entry_outcomes(records: RecordRepository, unit: PreparedUnit,
                    outcomes: dict[tuple[str, str], ResourceOutcome]) -> dict[int, tuple[str, str, ResourceOutcome]]:
    """What each entry of the unit came to (a transaction-response's entries)."""
    entries = {r.entry: (r.resource_type, r.id, outcomes[(r.resource_type, r.id)]) for r in unit.resources}
    if unit.matched:
        versions = records.current_versions([(t, i) for _, t, i in unit.matched])
        entries.update({n: (t, i, ResourceOutcome("matched", versions.get((t, i), 0))) for n, t, i in unit.matched})
    return entries


def import_units(store: Store, units: Iterable[RawUnit | RecordError], *, actor: str = "system",
                 clock: Clock = utc_now, on_unit: Callable[[UnitReport], None] | None = None,
                 writer: Writer | None = None, force: bool = False) -> ImportReport:
    """Import units in order, each all-or-nothing; a unit that failed to parse is reported as failed.

    The cyclic garbage collector is paused meanwhile (see :func:`gc_paused`)."""
    report = ImportReport()
    with gc_paused(), _released_in_background() as release:
        for raw in units:
            unit_report = UnitReport(source=raw.source or "?", error=raw) if isinstance(raw, RecordError) else \
                import_unit(store, raw, actor=actor, clock=clock, writer=writer, force=force)
            report.units.append(unit_report)
            if on_unit is not None:
                on_unit(unit_report)
            release(raw)
            del raw
    return report


_DONE = object()


@contextmanager
def _released_in_background() -> Iterator[Callable[[object], None]]:
    """``release(obj)`` hands an object to a background thread that drops it. Freeing a unit's parsed JSON
    costs about half as much as parsing it; when the caller held the last reference (units from
    ``read_units``, which keeps none), that happens on the second core while the next unit is stored."""
    queue: SimpleQueue[object] = SimpleQueue()

    def drop() -> None:
        while (item := queue.get()) is not _DONE:
            del item

    thread = threading.Thread(target=drop, name="medtwin-release", daemon=True)
    thread.start()
    try:
        yield queue.put
    finally:
        queue.put(_DONE)
        thread.join()  # the last unit is freed within the import, as it would be without the thread


def patient_summary(store: Store, patient_id: str) -> tuple[PatientSummary, int, dict[str, Any]] | None:
    """The latest twin summary of a patient with its version number and provenance."""
    with store.connect() as connection:
        latest = TwinRepository(connection, store.codec).latest(patient_id, "record")
    if latest is None:
        return None
    return PatientSummary.model_validate(latest.payload), latest.version, latest.provenance


def export_patient(store: Store, patient_id: str, *, base_url: str | None = None, clock: Clock = utc_now
                   ) -> dict[str, Any] | None:
    """The complete record of a patient (``search.mode`` match) plus every resource it references,
    transitively (``include``), as a searchset Bundle; each resource with its ``meta.versionId`` and
    ``meta.lastUpdated`` and its decimals as stored. ``base_url``: the server's FHIR base (fullUrls and the
    self link under it); None for a file (``urn:uuid:`` fullUrls)."""
    with store.connect() as connection:
        records = RecordRepository(connection, store.codec)
        if not records.exists("Patient", patient_id):
            return None
        matched, included = records.everything(patient_id)
    collected = {f"{v.resource_type}/{v.id}": with_version(v.resource(), v.version, v.last_updated)
                 for v in matched + included}
    self_link = f"{base_url.rstrip('/')}/Patient/{patient_id}/$everything" if base_url else None
    return searchset_bundle(collected.values(), base_url=base_url, now=clock(),
                            included=frozenset(f"{v.resource_type}/{v.id}" for v in included), self_link=self_link)
