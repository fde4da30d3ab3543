"""Views of the active model's vectors for SQL that outlives a switch; texts kept on purpose.

- `active_embeddings` and `active_query_embeddings` hold the active model's rows cast to its
  dimension, so the model's HNSW index serves queries on them; a switch recreates them
  (clipseek.store.active_views). A database without an active model yet gets them when
  ClipSeek first starts on it.
- `query_embeddings.kept` marks the texts stored with `clipseek embed --store`, which are
  never pruned; those stored by searches go a week after their last use.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from clipseek.store.active_views import replace_active_views
from clipseek.store.sql_reader import READER_VIEWS

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add query_embeddings.kept and the active model's views."""
    op.add_column("query_embeddings", sa.Column("kept", sa.Boolean(), server_default=sa.false(),
                                                nullable=False))
    conn = op.get_bind()
    active = conn.execute(sa.text("SELECT name, dim FROM search_models WHERE state = 'active'")).first()
    if active is not None:
        replace_active_views(conn, active.name, active.dim)


def downgrade() -> None:
    """Drop the views and query_embeddings.kept."""
    op.execute(f"DROP VIEW IF EXISTS {', '.join(READER_VIEWS)}")
    op.drop_column("query_embeddings", "kept")
