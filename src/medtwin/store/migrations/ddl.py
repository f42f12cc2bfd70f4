"""The building blocks the Alembic revisions in ``versions/`` share: columns NOT NULL by default, the 64-bit
surrogate key with its primary key, timestamp columns, tables declared with their indexes (created in order,
dropped in reverse by the downgrade), a column added or dropped the SQLite way, and the store's codec for the
data revisions. (The revisions state ``branch_labels`` and ``depends_on`` only when they have one: Alembic
reads a missing one as None; ``script.py.mako`` writes them so.)

Why here and not in ``versions/``: Alembic loads every ``*.py`` file of ``versions/`` as a revision (and stops
at one without ``revision``). Why not the application's ``medtwin.store.metadata``: a revision is history, it
must emit the same DDL for as long as a store of that revision may exist, whatever the application's tables
become. For the same reason a helper here never changes what it emits: a revision that needs something else
gets a new helper. ``tests/store/test_migrations.py`` checks that upgrading an empty store on SQLite and on
PostgreSQL gives exactly the application's ``MetaData``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.schema import SchemaItem

from medtwin.store.codec import Codec

__all__ = ["KEY", "Index", "Table", "add_column", "column", "create_tables", "drop_column", "drop_tables",
           "index", "keyed_table", "store_codec", "table", "timestamp"]

#: The type of every surrogate key and of the columns that refer to one: BIGINT on PostgreSQL, INTEGER on
#: SQLite, where only an ``INTEGER PRIMARY KEY`` is the rowid and autoincrements. (The revisions' own copy of
#: ``medtwin.store.metadata.BIG_ID``: see the module's docstring.)
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def column(name: str, type_: Any, *, nullable: bool = False, **kw: Any) -> sa.Column[Any]:
    """A column, NOT NULL unless ``nullable`` (the revisions' default, the reverse of ``sa.Column``'s)."""
    return sa.Column(name, type_, nullable=nullable, **kw)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A timezone-aware timestamp column, NOT NULL unless ``nullable``."""
    return column(name, sa.DateTime(timezone=True), nullable=nullable)


class Index(NamedTuple):
    """An index created right after its table."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False


def index(name: str, *columns: str, unique: bool = False) -> Index:
    """The index ``name`` on ``columns`` (in that order)."""
    return Index(name, columns, unique)


class Table(NamedTuple):
    """A table a revision adds: its columns and constraints, and its indexes."""

    name: str
    items: tuple[SchemaItem, ...]
    indexes: tuple[Index, ...]


def table(name: str, *items: SchemaItem, primary_key: Sequence[str] | None,
          indexes: Iterable[Index] = ()) -> Table:
    """A table whose primary key, named ``pk_<name>``, is the columns ``primary_key`` (None: it has none)."""
    if primary_key is not None:
        items = (*items, sa.PrimaryKeyConstraint(*primary_key, name=op.f(f"pk_{name}")))
    return Table(name, items, tuple(indexes))


def keyed_table(name: str, *items: SchemaItem, indexes: Iterable[Index] = ()) -> Table:
    """A table keyed by its first column ``pk``, the autoincrementing surrogate key."""
    key = sa.Column("pk", KEY, autoincrement=True, nullable=False)
    return table(name, key, *items, primary_key=("pk",), indexes=indexes)


def create_tables(tables: Iterable[Table]) -> dict[str, sa.Table]:
    """Create each table and then its indexes, in the order given; the created tables by name."""
    created: dict[str, sa.Table] = {}
    for spec in tables:
        created[spec.name] = op.create_table(spec.name, *spec.items)
        for ix in spec.indexes:
            op.create_index(ix.name, spec.name, list(ix.columns), unique=ix.unique)
    return created


def drop_tables(tables: Sequence[Table]) -> None:
    """Undo :func:`create_tables`: the tables in reverse order, each after its indexes (in reverse order)."""
    for spec in reversed(tables):
        for ix in reversed(spec.indexes):
            op.drop_index(ix.name, table_name=spec.name)
        op.drop_table(spec.name)


def add_column(table_name: str, added: sa.Column[Any]) -> None:
    """Add a column to an existing table (in a batch: SQLite rebuilds the table where ALTER cannot do it)."""
    with op.batch_alter_table(table_name) as batch:
        batch.add_column(added)


def drop_column(table_name: str, column_name: str) -> None:
    """Undo :func:`add_column`."""
    with op.batch_alter_table(table_name) as batch:
        batch.drop_column(column_name)


def store_codec(revision: str) -> Codec:
    """The store's codec, which a data revision needs to read and re-seal stored content (``Store.migrate``
    hands it over); a clear error when the revision runs without it."""
    codec: Codec | None = context.config.attributes.get("codec")
    if codec is None:
        raise RuntimeError(f"revision {revision} reindexes sealed content and needs the store's codec: "
                           "migrate through medtwin (Store.migrate), not the bare alembic command")
    return codec
