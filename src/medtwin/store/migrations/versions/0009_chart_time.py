"""record: index the time of a reading for charts (``resource_index.chart_at``) and fill it (data)

Revision ID: 0009_chart_time
Revises: 0008_search_index

Why: since the index holds each type's R4 date parameter's own elements (0008), an Observation dated only by
``issued`` (no effective[x]) had no indexed time, so the time-filtered chart series of /api/v1 and the
dashboard dropped it. FHIR's ``date`` search keeps effective[x] (``effective_start``); charts read the new
``chart_at``: the time of the reading as the domain defines it (``record.indexing.reading_time``: effective[x],
else ``issued``). Added, then filled by rebuilding every resource's index rows from its stored content
(``medtwin.store.reindex``, with the store's codec: ``Store.migrate`` hands it over). Idempotent; SQLite and
PostgreSQL alike. Downgrade drops the column.
"""

from alembic import op

from medtwin.store.migrations import ddl
from medtwin.store.reindex import reindex

revision = "0009_chart_time"
down_revision = "0008_search_index"


def upgrade() -> None:
    codec = ddl.store_codec(revision)  # before any change: without it the revision must not start
    ddl.add_column("resource_index", ddl.timestamp("chart_at", nullable=True))
    reindex(op.get_bind(), codec)


def downgrade() -> None:
    ddl.drop_column("resource_index", "chart_at")
