"""The one SQLAlchemy ``MetaData`` every table of the application is declared on, with the constraint naming
convention the Alembic revisions rely on.

Each table module of this package (``schema``, ``live_tables``, ``security_tables``) imports ``metadata`` from
here and nothing from the others. Why a module of its own: when ``metadata`` lived in ``schema.py``, the other
table modules imported ``schema`` and ``schema`` imported them back to register their tables, an import
circle. ``medtwin.store.schema`` imports every table module, so ``from medtwin.store.schema import metadata``
(key rotation, migrations) sees all tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

__all__ = ["BIG_ID", "NAMING", "metadata"]

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
