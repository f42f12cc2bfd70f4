"""SQLAlchemy table definitions for the record, samples, imports and twin versions.

One ``metadata`` for the whole application (``medtwin.store.metadata``); other packages' tables (security,
alerts, ...) are declared in their own modules of this package on the same ``metadata`` and get their own
Alembic revision. This module imports them all, so its ``metadata`` holds every table.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Every table module declares its tables on the one ``metadata`` (store/metadata.py); importing them here
# puts all tables on it for whoever imports this module (key rotation and migrations walk all of them).
from medtwin.store import hospital_journal as _hospital_journal  # noqa: F401
from medtwin.store import images as _images  # noqa: F401
from medtwin.store import live_tables as _live_tables  # noqa: F401
from medtwin.store import security_tables as _security_tables  # noqa: F401
from medtwin.store.metadata import BIG_ID, NAMING, metadata

__all__ = ["NAMING", "imports", "metadata", "resource_history", "resource_identifiers", "resource_index",
           "resources", "samples", "twin_versions"]

imports = Table(
    "imports",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source", LargeBinary, nullable=False, info={"sealed": True},
           doc="File name or 'request' (sealed: Synthea file names carry the patient's name)"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("actor", String(200), nullable=False, default="system"),
    Column("status", String(20), nullable=False, doc="running | committed | failed"),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("summary", LargeBinary, info={"sealed": True}, doc="JSON: counts by type, warnings (sealed)"),
)

resources = Table(
    "resources",
    metadata,
    Column("pk", BIG_ID, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False, doc="FHIR logical id"),
    Column("patient_id", String(64), index=True, doc="Patient this resource belongs to, if any"),
    Column("version", Integer, nullable=False, default=1),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("import_id", String(36), ForeignKey("imports.id"), nullable=True),
    Column("content_hash", String(64), nullable=False, doc="SHA-256 of canonical JSON"),
    Column("content", LargeBinary, nullable=False, doc="Full resource JSON, sealed by the codec"),
    Column("sent_last_updated", DateTime(timezone=True),
           doc="meta.lastUpdated as the sender gave it (meta.versionId/lastUpdated are the server's and are "
               "not kept in content): older content does not replace newer (0006)"),
    UniqueConstraint("resource_type", "id", name="uq_resources_type_id"),
)
Index("ix_resources_patient_type", resources.c.patient_id, resources.c.resource_type)

# Superseded versions. The current version stays in ``resources`` (what every query reads); an update first
# copies the row it replaces here, so every version stays readable (vread, _history) and a first import
# writes nothing extra.
resource_history = Table(
    "resource_history",
    metadata,
    Column("pk", BIG_ID, primary_key=True, autoincrement=True),
    Column("resource_pk", BIG_ID,
           ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("patient_id", String(64), doc="Patient this version belonged to"),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("import_id", String(36), ForeignKey("imports.id"), nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False, info={"sealed": True},
           doc="The version's JSON, sealed by the codec (marked: key rotation re-seals earlier versions too)"),
    Column("sent_last_updated", DateTime(timezone=True)),
    UniqueConstraint("resource_pk", "version", name="uq_resource_history_resource_version"),
)
Index("ix_resource_history_type_updated", resource_history.c.resource_type, resource_history.c.last_updated)

resource_index = Table(
    "resource_index",
    metadata,
    Column("pk", BIG_ID, primary_key=True, autoincrement=True),
    Column("resource_pk", BIG_ID,
           ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("patient_id", String(64)),
    Column("resource_type", String(64), nullable=False),
    Column("element", String(64), nullable=False, default="code", doc="code | component | ..."),
    Column("system", String(255)),
    Column("code", String(128)),
    Column("display", Text),
    Column("effective_start", DateTime(timezone=True)),
    Column("effective_end", DateTime(timezone=True)),
    Column("status", String(64)),
    Column("value_num", Float),
    Column("value_unit", String(64), doc="original unit as given"),
    Column("value_code", String(64), doc="original UCUM code as given"),
    Column("value_norm", Float, doc="value in the normalised unit"),
    Column("unit_norm", String(64)),
    Column("unit_valid", Boolean, doc="False when the unit is not valid UCUM"),
    Column("value_text", LargeBinary, info={"sealed": True},
           doc="valueString / valueCodeableConcept code, sealed (free text may hold identifiers)"),
    Column("chart_at", DateTime(timezone=True),
           doc="the time of the reading (record.indexing.reading_time): what charts filter and sort on"),
)
Index("ix_resource_index_lookup", resource_index.c.patient_id, resource_index.c.code, resource_index.c.effective_start)
Index("ix_resource_index_type", resource_index.c.patient_id, resource_index.c.resource_type)

resource_identifiers = Table(
    "resource_identifiers",
    metadata,
    Column("resource_pk", BIG_ID,
           ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("resource_type", String(64), nullable=False),
    Column("token", String(128), nullable=False, doc="codec.blind('system|value')"),
    Column("kind", String(16), nullable=False, default="identifier", doc="identifier | name"),
)
Index("ix_resource_identifiers_token", resource_identifiers.c.token, resource_identifiers.c.resource_type)

samples = Table(
    "samples",
    metadata,
    Column("pk", BIG_ID, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", String(32), nullable=False),
    Column("original_value", Float),
    Column("original_unit", String(32)),
    Column("device", String(128)),
    Column("source", String(64)),
    Column("idempotency_key", String(255), nullable=False),
    Column("received_at", DateTime(timezone=True)),
    UniqueConstraint("idempotency_key", name="uq_samples_idempotency_key"),
)
Index("ix_samples_patient_metric_time", samples.c.patient_id, samples.c.metric, samples.c.time)

twin_versions = Table(
    "twin_versions",
    metadata,
    Column("pk", BIG_ID, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False, doc="summary | glucose | drug | ..."),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False, default="system"),
    Column("provenance", LargeBinary, nullable=False, info={"sealed": True},
           doc="JSON: import ids, source, model, parameter set, algorithm (sealed)"),
    Column("payload", LargeBinary, nullable=False, doc="JSON sealed by the codec"),
    UniqueConstraint("patient_id", "version", name="uq_twin_versions_patient_version"),
)
