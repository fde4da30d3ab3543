"""Example pictures as stored queries: an embedding named by the picture's hash, reused by URL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder
from clipseek.errors import BadQuery
from clipseek.store.tables import Embedding, Image, QueryExample, in_library

# Long enough to page and share a search for a few days; short enough that the table stays small.
KEEP_FOR = timedelta(days=7)
EXPIRED = "That example has expired, drop the picture again."


def store_example(session: Session, encoder: Encoder, picture: PILImage.Image, data: bytes) -> str:
    """Embed an example picture, keep its embedding under the SHA-256 of `data`, and return that id.

    The same picture stored twice is embedded once per model; examples unused for a week go.
    """
    example_id = hashlib.sha256(data).hexdigest()
    known = session.scalar(select(QueryExample.id).where(QueryExample.id == example_id,
                                                         QueryExample.model == encoder.model_id))
    if known is None:
        vector = encoder.encode_images([picture])[0]
        session.execute(insert(QueryExample).values(id=example_id, model=encoder.model_id,
                                                    embedding=vector)
                        .on_conflict_do_update(index_elements=[QueryExample.id],
                                               set_={"model": encoder.model_id, "embedding": vector,
                                                     "last_used_at": func.now()}))
    session.execute(delete(QueryExample).where(
        QueryExample.last_used_at < datetime.now(UTC) - KEEP_FOR))
    return example_id


def example_vector(session: Session, example_id: str, *, model: str) -> np.ndarray:
    """The stored example's embedding, marked as used; BadQuery when it is unknown or expired."""
    vector = session.scalar(
        update(QueryExample).where(QueryExample.id == example_id, QueryExample.model == model)
        .values(last_used_at=func.now()).returning(QueryExample.embedding))
    if vector is None:
        raise BadQuery(EXPIRED)
    return np.asarray(vector, dtype=np.float32)


def image_vector(session: Session, image_id: int, *, model: str) -> np.ndarray:
    """A stored image's own embedding ("more like this"); BadQuery when it has none."""
    vector = session.scalar(select(Embedding.embedding).join(Image, Image.id == Embedding.image_id)
                            .where(Embedding.image_id == image_id, Embedding.model == model,
                                   in_library()))
    if vector is None and session.scalar(select(Image.id).where(Image.id == image_id, ~in_library())):
        raise BadQuery(f"Image {image_id} is in the trash; restore it to look for pictures like it.")
    if vector is None:
        raise BadQuery(f"Image {image_id} is not indexed yet, so there is nothing to compare with; "
                       "try again once it is.")
    return np.asarray(vector, dtype=np.float32)
