"""The relevance cutoff: a score that unrelated prompts rarely reach, calibrated per model.

CLIP's cosine scores have no fixed scale: a good match with one model scores what a poor
one scores with another. So the cutoff is measured on the stored collection itself: a
fixed set of generic prompts, which describe no picture in particular, is scored against a
sample of the stored images, and the cutoff is a high percentile of those scores. A result
must score above what a generic prompt gets for 99 of 100 images to be shown by default.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder, is_random_model
from clipseek.store.tables import Embedding, EmbeddingCount, Image, ScoreCutoff, in_library

GENERIC_PROMPTS = (
    "a photo", "a picture", "an image", "a photo of something", "a photo of a thing",
    "a blurry photo", "a close-up photo", "a photo taken outside", "a photo taken inside",
    "a photo of an object", "a snapshot", "a digital image", "a scene", "a view",
    "something", "stuff",
)
PERCENTILE = 99.0
SAMPLE_IMAGES = 2000
# Fewer images than this give too few scores for a stable percentile.
MIN_IMAGES = 50
# Calibrate again once the collection has grown by half since the last time.
REGROWTH = 1.5


def stored_cutoff(session: Session, model: str) -> float | None:
    """The model's calibrated cutoff, or None if it has none yet."""
    return session.scalar(select(ScoreCutoff.cutoff).where(ScoreCutoff.model == model))


def needs_calibration(session: Session, model: str) -> bool:
    """Whether the model has enough images and no cutoff, or one from a much smaller collection."""
    images = session.scalar(select(EmbeddingCount.images).where(EmbeddingCount.model == model)) or 0
    if images < MIN_IMAGES:
        return False
    calibrated = session.scalar(select(ScoreCutoff.images).where(ScoreCutoff.model == model))
    return calibrated is None or images >= calibrated * REGROWTH


def calibrate(session: Session, encoder: Encoder) -> float | None:
    """Measure and store the cutoff of the encoder's model; None when too few images are embedded."""
    model = encoder.model_id
    images = session.scalar(select(EmbeddingCount.images).where(EmbeddingCount.model == model)) or 0
    # Pictures in the trash are no part of the collection a search ranks.
    sample = session.scalars(select(Embedding.embedding).join(Image, Image.id == Embedding.image_id)
                             .where(Embedding.model == model, in_library())
                             .order_by(func.random()).limit(SAMPLE_IMAGES)).all()
    if len(sample) < MIN_IMAGES:
        return None
    stored = np.asarray(sample, dtype=np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    prompts = encoder.encode_texts(list(GENERIC_PROMPTS))
    cutoff = float(np.percentile(stored @ prompts.T, PERCENTILE))
    session.execute(insert(ScoreCutoff).values(model=model, cutoff=cutoff, images=images)
                    .on_conflict_do_update(index_elements=[ScoreCutoff.model],
                                           set_={"cutoff": cutoff, "images": images,
                                                 "computed_at": func.now()}))
    return cutoff


def calibrate_if_due(session: Session, encoder: Encoder) -> float | None:
    """Calibrate when the model has no cutoff or the collection grew by half; the new cutoff or None.

    Never for a model with random weights: its scores mean nothing, so a cutoff would hide
    arbitrary pictures.
    """
    if is_random_model(encoder.model_id) or not needs_calibration(session, encoder.model_id):
        return None
    return calibrate(session, encoder)
