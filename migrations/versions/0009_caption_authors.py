"""Captions remember who wrote them, so contributors change only their own or those on their pictures.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add captions.added_by; captions written before have no recorded author."""
    op.add_column("captions", sa.Column("added_by", sa.BigInteger(), nullable=True))
    op.create_foreign_key("captions_added_by_fkey", "captions", "users", ["added_by"], ["id"],
                          ondelete="SET NULL")


def downgrade() -> None:
    """Drop captions.added_by."""
    op.drop_constraint("captions_added_by_fkey", "captions", type_="foreignkey")
    op.drop_column("captions", "added_by")
