"""A living library: the missing status, mtimes and known duplicates for re-syncs, EXIF facts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("registered", "queued", "indexed", "failed", "missing")
COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("file_mtime", sa.Double()),
    ("missing_since", sa.DateTime(timezone=True)),
    ("taken_at", sa.DateTime(timezone=False)),
    ("taken_offset_minutes", sa.Integer()),
    ("camera_make", sa.Text()),
    ("camera_model", sa.Text()),
    ("latitude", sa.Double()),
    ("longitude", sa.Double()),
    ("display_width", sa.Integer()),
    ("display_height", sa.Integer()),
)


def _status_check(statuses: Sequence[str]) -> None:
    op.drop_constraint("images_status_valid", "images", type_="check")
    op.create_check_constraint("images_status_valid", "images",
                               "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")")


def upgrade() -> None:
    """Allow the missing status; add the sync and metadata columns and the duplicates' table."""
    _status_check(STATUSES)
    for name, kind in COLUMNS:
        op.add_column("images", sa.Column(name, kind, nullable=True))
    op.create_index("images_taken_at_idx", "images", ["taken_at"])
    op.create_table(
        "duplicate_files",
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("file_mtime", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("path"),
    )
    op.create_index("duplicate_files_image_id_idx", "duplicate_files", ["image_id"])


def downgrade() -> None:
    """Drop the table and columns; missing images become failed so the old constraint holds."""
    op.drop_table("duplicate_files")
    op.drop_index("images_taken_at_idx", table_name="images")
    for name, _ in reversed(COLUMNS):
        op.drop_column("images", name)
    op.execute("UPDATE images SET status = 'failed', error = 'its file is missing' "
               "WHERE status = 'missing'")
    _status_check(STATUSES[:-1])
