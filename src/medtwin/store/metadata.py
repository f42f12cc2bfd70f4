"""The one SQLAlchemy ``MetaData`` every table of the application is declared on, with the constraint naming
convention the Alembic revisions rely on.

Each table module of this package (``schema``, ``live_tables``, ``security_tables``) imports ``metadata`` from
here and nothing from the others. Why a module of its own: when ``metadata`` lived in ``schema.py``, the other
table modules imported ``schema`` and ``schema`` imported them back to register their tables, an import
circle. ``medtwin.store.schema`` imports every table module, so ``from medtwin.store.schema import metadata``
(key rotation, migrations) sees all tables. What every table module declares alike (a table with its own
numbered key, times with a zone, sealed blobs, the patient id) is defined here once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, String, Table
from sqlalchemy.schema import SchemaItem

__all__ = ["BIG_ID", "NAMING", "keyed_table", "metadata", "patient_column", "sealed", "utc_time"]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

#: The type of every surrogate key and of the columns that refer to one: BIGINT on PostgreSQL, INTEGER on
#: SQLite, where only an ``INTEGER PRIMARY KEY`` is the rowid and autoincrements.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")


# Column groups every table module declares alike. Each takes the column's own options (``nullable``, ``doc``,
# ``index``, ...) unchanged, so a table reads as before and the shared part is said once.


def keyed_table(name: str, *items: SchemaItem) -> Table:
    """A table on :data:`metadata` whose rows have their own key, numbered by the database: ``pk``
    (:data:`BIG_ID`, autoincrement) first, then ``items`` (columns, constraints)."""
    return Table(name, metadata, Column("pk", BIG_ID, primary_key=True, autoincrement=True), *items)


def utc_time(name: str, **options: Any) -> Column[datetime]:
    """A point in time, stored with its time zone (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL)."""
    return Column(name, DateTime(timezone=True), **options)


def sealed(name: str, **options: Any) -> Column[bytes]:
    """A blob sealed by the store's codec (it may hold PHI). The mark makes key rotation re-seal it
    (``medtwin.security.crypto.sealed_columns``)."""
    return Column(name, LargeBinary, info={"sealed": True}, **options)


def patient_column(**options: Any) -> Column[str]:
    """``patient_id``: the FHIR logical id of the Patient the row belongs to (at most 64 characters)."""
    return Column("patient_id", String(64), **options)
