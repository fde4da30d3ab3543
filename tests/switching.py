"""A collection in the middle of a switch to another model, built through the service layer."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text, update

from clipseek.settings import RANDOM_MODEL
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, Image, ModelState, SearchModel
from clipseek.switching.switch import register_model

# Another dimension than the active model's, so the two live side by side as in a real switch.
INCOMING = "RN50/random"
IMAGES = 10


def unit_vector(dim: int, seed: int) -> np.ndarray:
    """A random unit vector of `dim` dimensions, the same for the same seed."""
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def collection(db: Database) -> list[int]:
    """Ten indexed images, each embedded by the active model."""
    with db.session() as s:
        images = [Image(sha256=f"{n:064x}", path=f"/x/{n}.jpg", original_name=f"{n}.jpg",
                        source="test", file_size=1, status="indexed") for n in range(IMAGES)]
        s.add_all(images)
        s.flush()
        s.add_all([Embedding(image_id=i.id, model=RANDOM_MODEL, embedding=unit_vector(512, i.id))
                   for i in images])
        s.commit()
        return [i.id for i in images]


def half_switched(db: Database, *, started_s_ago: int = 100, embedded_s_ago: int = 0) -> None:
    """RN50/random incoming since `started_s_ago` seconds, having embedded half of the images."""
    ids = collection(db)
    register_model(db.engine, INCOMING)
    with db.session() as s:
        s.execute(update(SearchModel).where(SearchModel.name == INCOMING)
                  .values(state=ModelState.INCOMING,
                          switch_started_at=text(f"now() - interval '{started_s_ago} seconds'")))
        s.add_all([Embedding(image_id=i, model=INCOMING, embedding=unit_vector(1024, i))
                   for i in ids[:IMAGES // 2]])
        s.flush()
        s.execute(update(Embedding).where(Embedding.model == INCOMING)
                  .values(created_at=text(f"now() - interval '{embedded_s_ago} seconds'")))
        s.commit()
