"""Alembic environment: runs on the connection the Store hands over (online mode only)."""

from __future__ import annotations

from alembic import context

import medtwin.store.schema as schema

target_metadata = schema.metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - used by `alembic` CLI during development only
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///alembic-dev.db"
    with create_engine(url).begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
