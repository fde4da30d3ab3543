"""Perceptual hashes: the same picture twice (re-encoded, resized, lightly edited) is found.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import BIT

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add images.phash (64 bits) with an HNSW index on Hamming distance."""
    op.add_column("images", sa.Column("phash", BIT(64), nullable=True))
    op.execute("CREATE INDEX images_phash_hnsw_idx ON images USING hnsw (phash bit_hamming_ops)")


def downgrade() -> None:
    """Drop the perceptual hashes."""
    op.drop_index("images_phash_hnsw_idx", table_name="images")
    op.drop_column("images", "phash")
