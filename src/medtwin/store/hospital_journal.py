"""The live hospital's journal: every ADT message (HL7 v2 or FHIR Encounter) the census decided on, and every
equipment telemetry sample the equipment twin accepted, kept so that a restart loses nothing.

Why: the MLLP listener acknowledges a message (``AA``) and the sender, holding that ACK, never sends it
again; a census held only in memory was lost at the next restart. A message is written here, in its own
committed transaction, *before* it is applied and answered; at startup the census is rebuilt by replaying
the accepted messages through the tracker's own handling (``medtwin.hospital.live.LiveHospital.restore``).

* ``hospital_adt_journal``: one row per decision. ``content`` (the message as received and the reason, which
  may quote it) is sealed by the store codec like every PHI blob: HL7 carries names and identifiers. The
  patient column holds the census's keyed hash (HMAC) of PID-3 or of the Encounter id, never a clear
  identifier. ``dedupe_key`` is the control id (MSH-10) of an accepted message and NULL for a quarantined
  one (NULLs are distinct in a unique index on SQLite and PostgreSQL alike), so an accepted message is
  journalled once however often it is sent, and every refusal is kept. ``event_time`` (EVN-2, else MSH-7;
  an Encounter's ``meta.lastUpdated``) orders the replay, so events that arrived out of order are placed in
  time.
* ``hospital_equipment_samples``: a device's samples in its kind's signal unit (the original value and unit
  beside it), once per (asset, time). Device telemetry carries no patient data and is not sealed.
* ``hospital_equipment_quarantine``: telemetry refused (MQTT: acknowledged, redelivery would not make it
  better) with the field and reason; the payload as received is sealed (it is whatever was sent).

Both tables have a ``scope``: the census they belong to (the hospital model's name; ``medtwin demo``'s
generated feed uses one scope per run, its world restarts at "now"). Created by the Alembic revision
``0010_hospital_journal``. :class:`HospitalJournal` opens one transaction per call on the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Float,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from medtwin.clock import as_utc
from medtwin.store.codec import Codec
from medtwin.store.database import Store
from medtwin.store.metadata import keyed_table, sealed, utc_time

hospital_adt_journal = keyed_table(
    "hospital_adt_journal",
    Column("scope", String(128), nullable=False, doc="The census the message belongs to"),
    Column("kind", String(16), nullable=False, doc="hl7v2 | encounter"),
    Column("status", String(16), nullable=False, doc="accepted | quarantined"),
    Column("control_id", String(255), nullable=False, doc="MSH-10 (an Encounter: its keyed id and version)"),
    Column("dedupe_key", String(255), doc="The control id when accepted, NULL when quarantined"),
    Column("event", String(8), doc="A01..A13, or encounter; NULL when unreadable"),
    utc_time("event_time", doc="EVN-2 else MSH-7 (Encounter: meta.lastUpdated), UTC"),
    Column("patient", String(64), doc="The census's keyed hash (HMAC-SHA-256) of the patient, never clear"),
    Column("unit", String(128), doc="PV1-3 / the Encounter's active location, when given"),
    Column("field", String(64), doc="Quarantined: the HL7 location or FHIR path at fault"),
    utc_time("received_at", nullable=False),
    sealed("content", nullable=False,
           doc="JSON {text, reason}: the message as received and why it was refused (sealed)"),
    UniqueConstraint("scope", "dedupe_key", name="uq_hospital_adt_journal_scope_dedupe"),
)
Index("ix_hospital_adt_journal_replay", hospital_adt_journal.c.scope, hospital_adt_journal.c.status,
      hospital_adt_journal.c.event_time)

hospital_equipment_samples = keyed_table(
    "hospital_equipment_samples",
    Column("scope", String(128), nullable=False),
    Column("asset", String(128), nullable=False),
    utc_time("time", nullable=False),
    Column("value", Float, nullable=False, doc="In the asset kind's signal unit (UCUM)"),
    Column("original_value", Float, nullable=False),
    Column("original_unit", String(32), nullable=False),
    Column("source", String(32), nullable=False, doc="http | mqtt | demo"),
    utc_time("received_at", nullable=False),
    UniqueConstraint("scope", "asset", "time", name="uq_hospital_equipment_samples_scope_asset_time"),
)

hospital_equipment_quarantine = keyed_table(
    "hospital_equipment_quarantine",
    Column("scope", String(128), nullable=False),
    Column("topic", String(255), nullable=False, doc="The MQTT topic (or the route) it came on"),
    Column("field", String(255), nullable=False),
    Column("reason", Text, nullable=False, doc="Human-readable; names the field"),
    utc_time("received_at", nullable=False),
    sealed("payload", nullable=False, doc="As received (sealed)"),
)

_CHUNK = 500  #: sample rows per INSERT (9 columns: 4,500 parameters; SQLite allows 32,766)


@dataclass(frozen=True)
class JournalledMessage:
    """A journalled message as read back; its sealed content (``text``, ``reason``) is opened when first read."""

    kind: str
    control_id: str
    event: str | None
    time: datetime | None
    patient: str | None
    unit: str | None
    field: str | None
    sealed: bytes = dc_field(repr=False)
    codec: Codec = dc_field(repr=False, compare=False)

    @cached_property
    def _content(self) -> dict[str, Any]:
        content: dict[str, Any] = orjson.loads(self.codec.open(self.sealed))
        return content

    @property
    def text(self) -> str:
        return str(self._content["text"])

    @property
    def reason(self) -> str | None:
        reason = self._content.get("reason")
        return None if reason is None else str(reason)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class HospitalJournal:
    """The journal of one census (``scope``) in ``store``; each write commits before it returns."""

    def __init__(self, store: Store, scope: str, clock: Callable[[], datetime] | None = None) -> None:
        self.store, self.scope = store, scope[:128]
        self._now = clock or (lambda: datetime.now(UTC))

    # --- ADT messages ----------------------------------------------------------------------------------
    def record(self, kind: str, control_id: str, accepted: bool, text: str, time: datetime | None = None,
               patient: str | None = None, event: str | None = None, unit: str | None = None,
               field: str | None = None, reason: str | None = None) -> bool:
        """Journal one decision (the fields of ``medtwin.hospital.adt.Entry``); False when an accepted message
        with this control id is already journalled (another process took it: a duplicate), True once committed."""
        content = orjson.dumps({"text": text, "reason": reason})
        row = {"scope": self.scope, "kind": kind, "status": "accepted" if accepted else "quarantined",
               "control_id": control_id[:255], "dedupe_key": control_id[:255] if accepted else None,
               "event": event, "event_time": _utc(time), "patient": patient, "unit": unit,
               "field": field[:64] if field else None, "received_at": as_utc(self._now()),
               "content": self.store.codec.seal(content)}
        with self.store.begin() as connection:
            result = connection.execute(self._insert(hospital_adt_journal).values(row).on_conflict_do_nothing())
            return bool(result.rowcount)

    def accepted(self) -> Iterator[JournalledMessage]:
        """The accepted messages in event-time order (ties: control id by code point, as the tracker orders
        a stay; PostgreSQL's own collation may order text otherwise, hence ``C``)."""
        t = hospital_adt_journal
        control = t.c.control_id if self.store.is_sqlite else t.c.control_id.collate("C")
        yield from self._messages(t.c.status == "accepted", (t.c.event_time, control, t.c.pk))

    def quarantined(self) -> Iterator[JournalledMessage]:
        """The refused messages in the order they arrived."""
        t = hospital_adt_journal
        yield from self._messages(t.c.status == "quarantined", (t.c.pk,))

    def _messages(self, where: Any, order: Sequence[Any]) -> Iterator[JournalledMessage]:
        t = hospital_adt_journal
        query = (select(t.c.kind, t.c.control_id, t.c.event, t.c.event_time, t.c.patient, t.c.unit, t.c.field,
                        t.c.content)
                 .where(t.c.scope == self.scope, where).order_by(*order))
        with self.store.connect() as connection:
            for r in connection.execute(query.execution_options(yield_per=1000)):
                yield JournalledMessage(r.kind, r.control_id, r.event, _utc(r.event_time), r.patient, r.unit,
                                        r.field, bytes(r.content), self.store.codec)

    # --- equipment telemetry ---------------------------------------------------------------------------
    def record_samples(self, asset: str, rows: Sequence[tuple[datetime, float, float, str]], source: str) -> None:
        """(time, value in the signal unit, original value, original unit) of one asset; a (asset, time)
        already journalled is kept as it was."""
        now = as_utc(self._now())
        values = [{"scope": self.scope, "asset": asset, "time": as_utc(t), "value": v, "original_value": o,
                   "original_unit": u[:32], "source": source[:32], "received_at": now} for t, v, o, u in rows]
        with self.store.begin() as connection:
            for i in range(0, len(values), _CHUNK):
                insert = self._insert(hospital_equipment_samples).values(values[i:i + _CHUNK])
                connection.execute(insert.on_conflict_do_nothing())

    def samples(self, asset: str, keep: int) -> list[tuple[datetime, float, float, str]]:
        """The newest ``keep`` samples of ``asset``, oldest first: (time, value, original value, original
        unit)."""
        t = hospital_equipment_samples
        query = (select(t.c.time, t.c.value, t.c.original_value, t.c.original_unit)
                 .where(t.c.scope == self.scope, t.c.asset == asset).order_by(t.c.time.desc()).limit(keep))
        with self.store.connect() as connection:
            rows = connection.execute(query).all()
        return [(as_utc(r[0]), float(r[1]), float(r[2]), str(r[3])) for r in rows[::-1]]

    def record_refusal(self, topic: str, field: str, reason: str, payload: bytes) -> None:
        row = {"scope": self.scope, "topic": topic[:255], "field": field[:255], "reason": reason,
               "received_at": as_utc(self._now()), "payload": self.store.codec.seal(payload)}
        with self.store.begin() as connection:
            connection.execute(hospital_equipment_quarantine.insert().values(row))

    def refusals(self) -> list[dict[str, str]]:
        """The refused telemetry in the order it came: topic, field and reason (the payload stays sealed)."""
        t = hospital_equipment_quarantine
        query = select(t.c.topic, t.c.field, t.c.reason).where(t.c.scope == self.scope).order_by(t.c.pk)
        with self.store.connect() as connection:
            return [{"topic": r.topic, "field": r.field, "reason": r.reason} for r in connection.execute(query)]

    def _insert(self, table: Table) -> Any:
        return (sqlite.insert if self.store.is_sqlite else postgresql.insert)(table)
