"""The schema: migrations match the models, and pgvector is installed by the first one."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from clipseek.db import Database
from clipseek.models import Base


def test_autogenerate_finds_nothing_to_change(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_vector_extension_and_hnsw_index_exist(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname='vector'"))
        indexdef = conn.scalar(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'embeddings_hnsw_cosine_idx'"))
        coltype = conn.scalar(text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'"))
    assert "hnsw" in indexdef and "halfvec_cosine_ops" in indexdef
    assert coltype == "halfvec(512)"
