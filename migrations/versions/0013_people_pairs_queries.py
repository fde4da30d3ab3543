"""People (faces found in pictures, grouped), near-duplicate pairs kept, text queries kept.

- `faces` holds where a face is in a picture and which person it belongs to; its 128-d
  descriptor lives apart in `face_descriptors` (biometric data: the read-only SQL role may
  read people and faces, never the descriptors). `people` are the groups, named or not.
- `near_duplicate_pairs` keeps each pair of pictures whose perceptual hashes are close, found
  once when a hash is stored, so listing duplicates never regroups the whole library.
- `query_embeddings` keeps the vector of each text searched (or embedded with `clipseek
  embed --store`) per model, so SQL can rank by a text.
- `library_settings` keeps switches turned on for the whole library (people on or off).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy.dialects.postgresql import JSONB

from clipseek.store.sql_reader import grant_reader_sql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FACES_STATES = "faces_state IN ('found', 'none', 'failed', 'skipped')"


def upgrade() -> None:
    """Add faces, people, near-duplicate pairs, query embeddings and library settings."""
    op.add_column("images", sa.Column("faces_state", sa.String(16), nullable=True))
    op.add_column("images", sa.Column("faces_error", sa.Text(), nullable=True))
    op.add_column("images", sa.Column("faces_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("images", sa.Column("phash_paired_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("images_faces_state_valid", "images", FACES_STATES)
    op.create_index("images_faces_waiting_idx", "images", ["id"],
                    postgresql_where=sa.text("faces_state IS NULL AND status = 'indexed'"))
    op.create_table(
        "people",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("cover_face_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("people_name_key", "people", [sa.text("lower(name)")], unique=True,
                    postgresql_where=sa.text("name IS NOT NULL"))
    op.create_table(
        "faces",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("box_left", sa.Integer(), nullable=False),
        sa.Column("box_top", sa.Integer(), nullable=False),
        sa.Column("box_right", sa.Integer(), nullable=False),
        sa.Column("box_bottom", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("person_locked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("faces_image_id_idx", "faces", ["image_id"])
    op.create_index("faces_person_id_idx", "faces", ["person_id"])
    op.create_table(
        "face_descriptors",
        sa.Column("face_id", sa.BigInteger(), nullable=False),
        sa.Column("descriptor", VECTOR(128), nullable=False),
        sa.ForeignKeyConstraint(["face_id"], ["faces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("face_id"),
    )
    op.execute("CREATE INDEX face_descriptors_hnsw_idx ON face_descriptors "
               "USING hnsw (descriptor vector_l2_ops)")
    op.create_table(
        "near_duplicate_pairs",
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("other_id", sa.BigInteger(), nullable=False),
        sa.Column("distance", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["other_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "other_id"),
        sa.CheckConstraint("image_id < other_id", name="near_duplicate_pairs_ordered"),
    )
    op.create_index("near_duplicate_pairs_other_id_idx", "near_duplicate_pairs", ["other_id"])
    op.create_table(
        "query_embeddings",
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", HALFVEC(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("model", "text"),
    )
    op.create_index("query_embeddings_last_used_at_idx", "query_embeddings", ["last_used_at"])
    op.create_table(
        "library_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", JSONB(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    # Power users' read-only role reads these (where this login made it); never the
    # face descriptors nor the library's settings.
    op.execute(grant_reader_sql(create_if_allowed=False,
                                tables=("people", "faces", "near_duplicate_pairs", "query_embeddings")))


def downgrade() -> None:
    """Drop faces, people, pairs, query embeddings and settings."""
    op.drop_table("library_settings")
    op.drop_index("query_embeddings_last_used_at_idx", table_name="query_embeddings")
    op.drop_table("query_embeddings")
    op.drop_index("near_duplicate_pairs_other_id_idx", table_name="near_duplicate_pairs")
    op.drop_table("near_duplicate_pairs")
    op.drop_index("face_descriptors_hnsw_idx", table_name="face_descriptors")
    op.drop_table("face_descriptors")
    op.drop_index("faces_person_id_idx", table_name="faces")
    op.drop_index("faces_image_id_idx", table_name="faces")
    op.drop_table("faces")
    op.drop_index("people_name_key", table_name="people")
    op.drop_table("people")
    op.drop_index("images_faces_waiting_idx", table_name="images")
    op.drop_constraint("images_faces_state_valid", "images", type_="check")
    for column in ("phash_paired_at", "faces_at", "faces_error", "faces_state"):
        op.drop_column("images", column)
