"""Deleting pictures: rows, embeddings, derived files and own copies, never the originals."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, select

from clipseek.catalog import Candidate
from clipseek.db import Database
from clipseek.indexing import record_results
from clipseek.ingest import decode_pool, register_candidates
from clipseek.models import Embedding, Image, ImageStatus
from clipseek.settings import Settings


def test_results_for_an_image_deleted_meanwhile_are_dropped_not_an_error(
    db: Database, settings: Settings, sample_photos: list[Candidate],
) -> None:
    with decode_pool(settings) as pool:
        kept, gone = register_candidates(db, sample_photos[:2], settings=settings, pool=pool).new_ids
    with db.session() as session:
        session.execute(delete(Image).where(Image.id == gone))
        session.commit()
        vectors = np.ones((2, 512), dtype=np.float32) / np.sqrt(512)
        record_results(session, "m", [kept, gone], vectors, {gone: "gone"})
        session.commit()
        assert list(session.scalars(select(Embedding.image_id))) == [kept]
        assert session.scalar(select(Image.status).where(Image.id == kept)) == ImageStatus.INDEXED
