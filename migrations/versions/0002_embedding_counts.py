"""Per-model embedding counts, kept by triggers, so a search need not count the table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Statement-level triggers with transition tables: one UPDATE per statement and model,
# however many rows a batch inserts or a cascade deletes.
TRIGGERS = """
CREATE FUNCTION embedding_counts_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embedding_counts (model, images)
    SELECT model, count(*) FROM new_rows GROUP BY model
    ON CONFLICT (model) DO UPDATE SET images = embedding_counts.images + EXCLUDED.images;
    RETURN NULL;
END $$;

CREATE FUNCTION embedding_counts_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE embedding_counts c SET images = c.images - d.n
    FROM (SELECT model, count(*) AS n FROM old_rows GROUP BY model) d
    WHERE c.model = d.model;
    RETURN NULL;
END $$;

CREATE FUNCTION embedding_counts_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM embedding_counts;
    RETURN NULL;
END $$;

CREATE TRIGGER embedding_counts_insert AFTER INSERT ON embeddings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION embedding_counts_after_insert();
CREATE TRIGGER embedding_counts_delete AFTER DELETE ON embeddings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION embedding_counts_after_delete();
CREATE TRIGGER embedding_counts_truncate AFTER TRUNCATE ON embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION embedding_counts_after_truncate();
"""


def upgrade() -> None:
    """Create the counts table, fill it, and keep it current with triggers."""
    op.create_table(
        "embedding_counts",
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )
    op.execute("INSERT INTO embedding_counts (model, images) "
               "SELECT model, count(*) FROM embeddings GROUP BY model")
    op.execute(TRIGGERS)


def downgrade() -> None:
    """Drop the triggers, their functions and the table."""
    for name in ("insert", "delete", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS embedding_counts_{name} ON embeddings")
        op.execute(f"DROP FUNCTION IF EXISTS embedding_counts_after_{name}()")
    op.drop_table("embedding_counts")
