"""SQLAlchemy table definitions for the record, samples, imports and twin versions.

One ``metadata`` for the whole application (``medtwin.store.metadata``); other packages' tables (security,
alerts, ...) are declared in their own modules of this package on the same ``metadata`` and get their own
Alembic revision. This module imports them all, so its ``metadata`` holds every table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
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
from medtwin.store.metadata import BIG_ID, NAMING, keyed_table, metadata, patient_column, sealed, utc_time

__all__ = ["NAMING", "VERSION_COLUMNS", "imports", "metadata", "resource_history", "resource_identifiers",
           "resource_index", "resources", "samples", "twin_versions"]

imports = Table(
    "imports",
    metadata,
    Column("id", String(36), primary_key=True),
    sealed("source", nullable=False,
           doc="File name or 'request' (sealed: Synthea file names carry the patient's name)"),
    utc_time("started_at", nullable=False),
    utc_time("finished_at"),
    Column("actor", String(200), nullable=False, default="system"),
    Column("status", String(20), nullable=False, doc="running | committed | failed"),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    sealed("summary", doc="JSON: counts by type, warnings (sealed)"),
)


def _version_columns(*, patient_id: Column[str], version: Column[int], content: Column[bytes]) -> list[Column[Any]]:
    """The columns of one version of a resource (:data:`VERSION_COLUMNS`, in that order), as ``resources``
    holds the current version and ``resource_history`` each superseded one; the three that differ between
    the two tables are given."""
    return [
        Column("resource_type", String(64), nullable=False),
        Column("id", String(64), nullable=False, doc="FHIR logical id"),
        patient_id,
        version,
        utc_time("last_updated", nullable=False),
        Column("import_id", String(36), ForeignKey("imports.id"), nullable=True),
        Column("content_hash", String(64), nullable=False, doc="SHA-256 of canonical JSON"),
        content,
        utc_time("sent_last_updated",
                 doc="meta.lastUpdated as the sender gave it (meta.versionId/lastUpdated are the server's and are "
                     "not kept in content): older content does not replace newer (0006)"),
    ]


def _resource_ref(**options: Any) -> Column[int]:
    """``resource_pk``: the ``resources`` row this row belongs to, deleted with it."""
    return Column("resource_pk", BIG_ID, ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False, **options)


resources = keyed_table(
    "resources",
    *_version_columns(
        patient_id=patient_column(index=True, doc="Patient this resource belongs to, if any"),
        version=Column("version", Integer, nullable=False, default=1),
        content=sealed("content", nullable=False, doc="Full resource JSON, sealed by the codec"),
    ),
    UniqueConstraint("resource_type", "id", name="uq_resources_type_id"),
)
Index("ix_resources_patient_type", resources.c.patient_id, resources.c.resource_type)

#: What one version of a resource is: an update copies these columns of the current row from ``resources``
#: to ``resource_history`` (``RecordRepository._keep_history``), and both tables declare them alike
#: (``_version_columns``); derived from ``resources`` so the names are written once.
VERSION_COLUMNS = tuple(c.name for c in resources.c if c.name != "pk")

# Superseded versions. The current version stays in ``resources`` (what every query reads); an update first
# copies the row it replaces here, so every version stays readable (vread, _history) and a first import
# writes nothing extra.
resource_history = keyed_table(
    "resource_history",
    _resource_ref(),
    *_version_columns(
        patient_id=patient_column(doc="Patient this version belonged to"),
        version=Column("version", Integer, nullable=False),
        content=sealed("content", nullable=False,
                       doc="The version's JSON, sealed by the codec (marked: key rotation re-seals earlier versions "
                           "too)"),
    ),
    UniqueConstraint("resource_pk", "version", name="uq_resource_history_resource_version"),
)
Index("ix_resource_history_type_updated", resource_history.c.resource_type, resource_history.c.last_updated)

resource_index = keyed_table(
    "resource_index",
    _resource_ref(index=True),
    patient_column(),
    Column("resource_type", String(64), nullable=False),
    Column("element", String(64), nullable=False, default="code", doc="code | component | ..."),
    Column("system", String(255)),
    Column("code", String(128)),
    Column("display", Text),
    utc_time("effective_start"),
    utc_time("effective_end"),
    Column("status", String(64)),
    Column("value_num", Float),
    Column("value_unit", String(64), doc="original unit as given"),
    Column("value_code", String(64), doc="original UCUM code as given"),
    Column("value_norm", Float, doc="value in the normalised unit"),
    Column("unit_norm", String(64)),
    Column("unit_valid", Boolean, doc="False when the unit is not valid UCUM"),
    sealed("value_text", doc="valueString / valueCodeableConcept code, sealed (free text may hold identifiers)"),
    utc_time("chart_at", doc="the time of the reading (record.indexing.reading_time): what charts filter and sort on"),
)
Index("ix_resource_index_lookup", resource_index.c.patient_id, resource_index.c.code, resource_index.c.effective_start)
Index("ix_resource_index_type", resource_index.c.patient_id, resource_index.c.resource_type)

resource_identifiers = Table(
    "resource_identifiers",
    metadata,
    _resource_ref(index=True),
    Column("resource_type", String(64), nullable=False),
    Column("token", String(128), nullable=False, doc="codec.blind('system|value')"),
    Column("kind", String(16), nullable=False, default="identifier", doc="identifier | name"),
)
Index("ix_resource_identifiers_token", resource_identifiers.c.token, resource_identifiers.c.resource_type)

samples = keyed_table(
    "samples",
    patient_column(nullable=False),
    Column("metric", String(64), nullable=False),
    utc_time("time", nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", String(32), nullable=False),
    Column("original_value", Float),
    Column("original_unit", String(32)),
    Column("device", String(128)),
    Column("source", String(64)),
    Column("idempotency_key", String(255), nullable=False),
    utc_time("received_at"),
    UniqueConstraint("idempotency_key", name="uq_samples_idempotency_key"),
)
Index("ix_samples_patient_metric_time", samples.c.patient_id, samples.c.metric, samples.c.time)

twin_versions = keyed_table(
    "twin_versions",
    patient_column(nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False, doc="summary | glucose | drug | ..."),
    utc_time("created_at", nullable=False),
    Column("actor", String(200), nullable=False, default="system"),
    sealed("provenance", nullable=False, doc="JSON: import ids, source, model, parameter set, algorithm (sealed)"),
    sealed("payload", nullable=False, doc="JSON sealed by the codec"),
    UniqueConstraint("patient_id", "version", name="uq_twin_versions_patient_version"),
)
