"""record: rebuild the search index of stored resources (data only)

Revision ID: 0008_search_index
Revises: 0007_images

Why: the index grew (issue 16): ``category`` tokens, each type's R4 date parameter's own elements, ImagingStudy
by series modality, a time/status row for a resource without a code. A store filled before answered those
searches from rows that lack them: a ``category`` search silently missed resources. This revision rebuilds
every resource's index rows and category tokens from its stored content (``medtwin.store.reindex``), with the
store's codec (``Store.migrate`` hands it over: the content is sealed with it, the tokens are its blinds).
Idempotent; SQLite and PostgreSQL alike (SQLAlchemy core). Downgrade leaves the rows (older code ignores what
it does not search).
"""

from alembic import op

from medtwin.store.migrations import ddl
from medtwin.store.reindex import reindex

revision = "0008_search_index"
down_revision = "0007_images"


def upgrade() -> None:
    reindex(op.get_bind(), ddl.store_codec(revision))


def downgrade() -> None:
    pass
