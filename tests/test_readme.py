"""The README's SQL examples run as written (with the test model's name) and mean what they say."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text

from clipseek.catalog import Candidate
from clipseek.db import Database
from clipseek.encoder import ClipEncoder
from clipseek.ingest import ingest_inline
from clipseek.settings import Settings
from tests.ranking import assert_scores_descend

README = Path(__file__).resolve().parent.parent / "README.md"


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_sql_examples_run(db: Database, encoder: ClipEncoder, settings: Settings,
                                 sample_photos: list[Candidate]) -> None:
    ingest_inline(db, encoder, sample_photos, settings=settings)
    blocks = _sql_blocks()
    assert len(blocks) == 4
    results = []
    with db.engine.connect() as conn:
        for block in blocks:
            for statement in filter(None, (s.strip() for s in block.split(";"))):
                sql = statement.replace("ViT-B-32/openai", "ViT-B-32/random")
                results.append(conn.execute(text(sql)).all())
    neighbours, cats, hybrid, statuses, failures = results
    assert len(neighbours) == 10 and 3 not in [r.id for r in neighbours]
    scores = [r.score for r in neighbours]
    assert_scores_descend(scores)
    assert [r.text for r in cats] == ["a tabby cat looking to the side"]
    # The only cat caption is in both lists, so the fusion ranks its image first.
    assert hybrid[0].id == cats[0].id and len(hybrid) == 10
    assert dict((r.status, r.count) for r in statuses) == {"indexed": 22}
    assert failures == []


def test_readme_index_rebuild_keeps_search_on_the_bigger_graph(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate]
) -> None:
    ingest_inline(db, encoder, sample_photos, settings=settings)
    blocks = re.findall(r"```postgresql\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    statements = [" ".join(s.split()) for s in blocks[0].split(";") if s.strip()]
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in statements:
            conn.execute(text(statement))
        options = conn.execute(text(
            "SELECT reloptions FROM pg_class WHERE relname = 'embeddings_hnsw_cosine_idx'")).scalar()
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text(
            "EXPLAIN SELECT image_id FROM embeddings "
            "ORDER BY embedding <=> (SELECT embedding FROM embeddings LIMIT 1) LIMIT 5")))
    assert options == ["m=24", "ef_construction=128"]
    assert "embeddings_hnsw_cosine_idx" in plan
