"""One HNSW index per model, any dimension, and the models' part in search.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from clipseek.store.sql_reader import grant_reader_sql
from clipseek.store.vector_indexes import index_sql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = "state IN ('active', 'incoming', 'kept')"


def upgrade() -> None:
    """Free the embedding column's dimension, index each stored model apart, add search_models."""
    op.execute("DROP INDEX IF EXISTS embeddings_hnsw_cosine_idx")
    op.execute("ALTER TABLE embeddings ALTER COLUMN embedding TYPE halfvec")
    op.execute("ALTER TABLE query_examples ALTER COLUMN embedding TYPE halfvec")
    op.create_table(
        "search_models",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("switch_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(STATES, name="search_models_state_valid"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("search_models_one_active", "search_models", ["state"], unique=True,
                    postgresql_where=sa.text("state = 'active'"))
    op.create_index("search_models_one_incoming", "search_models", ["state"], unique=True,
                    postgresql_where=sa.text("state = 'incoming'"))
    # Power users' read-only role may see which model is active (where this login made it).
    op.execute(grant_reader_sql(create_if_allowed=False, tables=("search_models",)))
    # Every model with stored vectors keeps them and gets its own index; which one is active
    # is decided at the first start after this (CLIPSEEK_MODEL, as before).
    conn = op.get_bind()
    for (model,) in conn.execute(sa.text("SELECT model FROM embedding_counts WHERE images > 0")).all():
        dim = conn.execute(sa.text("SELECT vector_dims(embedding) FROM embeddings WHERE model = :m LIMIT 1"),
                           {"m": model}).scalar()
        if dim is None:
            continue
        conn.execute(sa.text("INSERT INTO search_models (name, dim, state) VALUES (:m, :d, 'kept')"),
                     {"m": model, "d": dim})
        op.execute(index_sql(model, int(dim), concurrently=False))


def downgrade() -> None:
    """Back to one 512-d column and one shared index (refused while other dimensions are stored)."""
    conn = op.get_bind()
    other = conn.execute(sa.text("SELECT count(*) FROM embeddings "
                                 "WHERE vector_dims(embedding) <> 512")).scalar()
    if other:
        raise RuntimeError(f"{other} stored embeddings are not 512-d: drop their models "
                           "(`clipseek model drop NAME`) before downgrading.")
    for (name,) in conn.execute(sa.text("SELECT relname FROM pg_class WHERE relkind = 'i' "
                                        "AND relname LIKE 'embeddings\\_hnsw\\_%'")).all():
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
    op.drop_table("search_models")
    op.execute("ALTER TABLE query_examples ALTER COLUMN embedding TYPE halfvec(512)")
    op.execute("ALTER TABLE embeddings ALTER COLUMN embedding TYPE halfvec(512)")
    op.execute("CREATE INDEX embeddings_hnsw_cosine_idx ON embeddings USING hnsw "
               "(embedding halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)")
