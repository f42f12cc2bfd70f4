"""The Alembic revisions against the application's tables: upgrading an empty database to head gives exactly
the schema of ``medtwin.store.schema.metadata`` (Alembic's own comparison finds nothing), on SQLite and on
PostgreSQL; every downgrade undoes its upgrade (downgrading to base leaves only Alembic's version table, and
upgrading again gives the same schema); a data revision run without the store's codec stops with a clear
error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from medtwin.store.database import MIGRATIONS_DIR, Store
from medtwin.store.schema import metadata

GENESIS_ROW = (1, 0, "0" * 64)  # revision 0002 seeds the audit chain's head


def _run(store: Store, step: Callable[[Config, str], Any], revision: str, *, codec: bool = True) -> None:
    """What ``Store.migrate`` does, to any revision and in either direction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        if codec:
            config.attributes["codec"] = store.codec
        step(config, revision)


def _differences(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def _audit_head(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text("SELECT id, seq, hash FROM audit_head"))]


def test_head_is_the_metadata_and_downgrade_undoes_every_revision(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.migrate()
        assert store.schema_revision() == "0010_hospital_journal"
        assert _differences(store) == []
        assert _audit_head(store) == [GENESIS_ROW]

        _run(store, command.downgrade, "base")
        assert set(inspect(store.engine).get_table_names()) == {"alembic_version"}
        assert store.schema_revision() is None

        store.migrate()
        assert _differences(store) == []
        assert _audit_head(store) == [GENESIS_ROW]
    finally:
        store.dispose()


def test_comparison_sees_a_table_the_revisions_do_not_make(tmp_path: Path) -> None:
    """The check above can fail: a table the metadata has and the database lacks is a difference."""
    store = Store(f"sqlite:///{tmp_path / 'medtwin.db'}")
    try:
        store.migrate()
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE login_throttle"))
        differences = _differences(store)
        assert [(kind, table.name) for kind, table in differences] == [("add_table", "login_throttle")]
    finally:
        store.dispose()


def test_a_data_revision_without_the_codec_stops_and_says_why(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'medtwin.db'}")
    try:
        _run(store, command.upgrade, "0007_images", codec=False)  # schema revisions need no codec
        refusal = (r"^revision 0008_search_index reindexes sealed content and needs the store's codec: "
                   r"migrate through medtwin \(Store.migrate\), not the bare alembic command$")
        with pytest.raises(RuntimeError, match=refusal):
            _run(store, command.upgrade, "head", codec=False)
        assert store.schema_revision() == "0007_images"
    finally:
        store.dispose()
