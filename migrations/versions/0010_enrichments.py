"""Enrichments beyond CLIP: the words read in a picture and the place it was taken.

Text read in a picture is kept as a caption with source 'ocr' (so the full-text column and
every text search cover it) with the recognizer's confidence and the boxes it was read in;
the place named from GPS is kept on the image and as a caption with source 'place'.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OCR_STATES = "ocr_state IN ('read', 'failed', 'skipped')"


def upgrade() -> None:
    """Add the place and text-reading columns to images, confidence and boxes to captions."""
    for column in ("place_city", "place_region", "place_country", "place_country_code"):
        op.add_column("images", sa.Column(column, sa.Text(), nullable=True))
    op.add_column("images", sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("images", sa.Column("ocr_state", sa.String(16), nullable=True))
    op.add_column("images", sa.Column("ocr_error", sa.Text(), nullable=True))
    op.add_column("images", sa.Column("ocr_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("images_ocr_state_valid", "images", OCR_STATES)
    # The pictures still to be read are found without a scan of the whole table.
    op.create_index("images_ocr_waiting_idx", "images", ["id"],
                    postgresql_where=sa.text("ocr_state IS NULL AND status = 'indexed'"))
    op.create_index("images_place_country_idx", "images", ["place_country"])
    op.add_column("captions", sa.Column("confidence", sa.Double(), nullable=True))
    op.add_column("captions", sa.Column("boxes", JSONB(), nullable=True))
    # A text search finds the derived captions that hold part of it without a pass over all.
    op.create_index("captions_derived_words_idx", "captions", ["words"], postgresql_using="gin",
                    postgresql_where=sa.text("source IN ('ocr', 'place')"))


def downgrade() -> None:
    """Drop the enrichment columns and the captions they wrote."""
    op.execute("DELETE FROM captions WHERE source IN ('ocr', 'place')")
    op.drop_index("captions_derived_words_idx", table_name="captions")
    op.drop_column("captions", "boxes")
    op.drop_column("captions", "confidence")
    op.drop_index("images_place_country_idx", table_name="images")
    op.drop_index("images_ocr_waiting_idx", table_name="images")
    op.drop_constraint("images_ocr_state_valid", "images", type_="check")
    for column in ("ocr_at", "ocr_error", "ocr_state", "placed_at", "place_country_code",
                   "place_country", "place_region", "place_city"):
        op.drop_column("images", column)
