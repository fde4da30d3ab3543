"""Search that narrows and combines: caption full text, filter indexes, stored examples, cutoffs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy.dialects.postgresql import TSVECTOR

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHOWN_AT_SQL = "COALESCE(taken_at, (created_at AT TIME ZONE 'UTC'))"


def upgrade() -> None:
    """Add the captions' words, the images' filter indexes and the two search tables."""
    op.add_column("captions", sa.Column(
        "words", TSVECTOR(), sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True),
        nullable=True))
    op.create_index("captions_words_idx", "captions", ["words"], postgresql_using="gin")
    op.create_index("images_created_at_idx", "images", ["created_at"])
    op.create_index("images_collection_idx", "images", ["collection"])
    op.create_index("images_path_prefix_idx", "images", ["path"],
                    postgresql_ops={"path": "text_pattern_ops"})
    op.create_index("images_shown_at_idx", "images", [sa.text(SHOWN_AT_SQL)])
    op.create_table(
        "query_examples",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("embedding", HALFVEC(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("query_examples_last_used_at_idx", "query_examples", ["last_used_at"])
    op.create_table(
        "score_cutoffs",
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("cutoff", sa.Double(), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_table("score_cutoffs")
    op.drop_table("query_examples")
    for name in ("images_shown_at_idx", "images_path_prefix_idx", "images_collection_idx",
                 "images_created_at_idx"):
        op.drop_index(name, table_name="images")
    op.drop_index("captions_words_idx", table_name="captions")
    op.drop_column("captions", "words")
