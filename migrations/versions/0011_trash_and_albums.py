"""A trash, files that stay forgotten, and albums.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from clipseek.store.sql_reader import grant_reader_sql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add images.trashed_at/trashed_by, forgotten_files, albums and album_images."""
    op.add_column("images", sa.Column("trashed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("images", sa.Column("trashed_by", sa.BigInteger(), nullable=True))
    op.create_foreign_key("images_trashed_by_fkey", "images", "users", ["trashed_by"], ["id"],
                          ondelete="SET NULL")
    op.create_index("images_trashed_at_idx", "images", ["trashed_at"],
                    postgresql_where=sa.text("trashed_at IS NOT NULL"))
    op.create_table(
        "forgotten_files",
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("path"),
    )
    op.create_index("forgotten_files_sha256_idx", "forgotten_files", ["sha256"])
    op.create_table(
        "albums",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("albums_name_key", "albums", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "album_images",
        sa.Column("album_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("added_by", sa.BigInteger(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["album_id"], ["albums.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["added_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("album_id", "image_id"),
    )
    op.create_index("album_images_image_id_idx", "album_images", ["image_id"])
    # Power users' read-only role may read albums too (where this login made it).
    op.execute(grant_reader_sql(create_if_allowed=False, tables=("albums", "album_images")))


def downgrade() -> None:
    """Drop albums, forgotten files and the trash columns (trashed pictures come back)."""
    op.drop_table("album_images")
    op.drop_table("albums")
    op.drop_table("forgotten_files")
    op.drop_index("images_trashed_at_idx", table_name="images")
    op.drop_constraint("images_trashed_by_fkey", "images", type_="foreignkey")
    op.drop_column("images", "trashed_by")
    op.drop_column("images", "trashed_at")
