"""The counts pages show: embeddings per model (exact through inserts, cascading deletes and
truncation) and the images still waiting to be indexed."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, select, text

from clipseek.search.run import count_searchable
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, EmbeddingCount, Image
from clipseek.upkeep.status import count_pending


def _image(n: int, status: str = "indexed") -> Image:
    return Image(sha256=f"{n:064x}", path=f"/x/{n}.jpg", original_name=f"{n}.jpg", source="test",
                 file_size=1, status=status)


def test_counts_follow_inserts_deletes_and_truncate(db: Database) -> None:
    vector = np.ones(512, dtype=np.float32) / np.sqrt(512)
    with db.session() as s:
        images = [_image(n) for n in range(5)]
        s.add_all(images)
        s.flush()
        s.add_all([Embedding(image_id=i.id, model="a", embedding=vector) for i in images])
        s.add_all([Embedding(image_id=i.id, model="b", embedding=vector) for i in images[:2]])
        s.commit()
        assert (count_searchable(s, "a"), count_searchable(s, "b"), count_searchable(s, "c")) == (5, 2, 0)
        s.execute(delete(Image).where(Image.id == images[0].id))  # cascades to both models
        s.commit()
        assert (count_searchable(s, "a"), count_searchable(s, "b")) == (4, 1)
        s.execute(text("TRUNCATE images CASCADE"))
        s.commit()
        assert s.scalars(select(EmbeddingCount)).all() == []


def test_pending_counts_registered_and_queued_images_only(db: Database) -> None:
    statuses = ["registered", "queued", "queued", "indexed", "failed"]
    with db.session() as s:
        assert count_pending(s) == 0
        s.add_all([_image(n, status) for n, status in enumerate(statuses)])
        s.commit()
        assert count_pending(s) == 3
