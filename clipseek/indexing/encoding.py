"""Encoding registered images: decode in parallel, embed in batches, record the outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder
from clipseek.indexing.hash_pairs import record_hashes
from clipseek.indexing.queueing import lacks_embedding
from clipseek.photo.imaging import OPENAI_PREPROCESS, ImageDecodeError, Preprocess, clip_pixels, load_rgb
from clipseek.photo.perceptual_hash import perceptual_hash
from clipseek.store.tables import WAITING, Embedding, Image, ImageStatus, in_library


@dataclass
class IndexReport:
    """Outcome of an indexing pass."""

    indexed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: int = 0

    def merge(self, other: IndexReport) -> None:
        """Add another pass's outcome to this one."""
        self.indexed += other.indexed
        self.failed.update(other.failed)
        self.skipped += other.skipped


# (image id, the model's input, why there is none, the perceptual hash of the same pixels)
Decoded = tuple[int, np.ndarray | None, str | None, str | None]


def decode_for_clip(image_id: int, path: str, max_pixels: int,
                    preprocess: Preprocess = OPENAI_PREPROCESS) -> Decoded:
    """Decode one file into the model's input and its perceptual hash, or the reason it cannot be used."""
    try:
        rgb = load_rgb(Path(path), max_pixels=max_pixels, min_side=preprocess.size)
        # The hash costs well under a millisecond on pixels decoded anyway; a pass of its
        # own would decode every picture a second time.
        return image_id, clip_pixels(rgb, preprocess), None, perceptual_hash(rgb)
    except ImageDecodeError as exc:
        return image_id, None, str(exc), None
    except MemoryError:
        return image_id, None, "the image is too large to decode in the available memory", None


def images_needing(session: Session, model_id: str, image_ids: Sequence[int]) -> list[tuple[int, str]]:
    """Of these ids, the (id, path) of images that still lack an embedding from `model_id`."""
    rows = session.execute(
        select(Image.id, Image.path)
        .where(Image.id.in_(image_ids), Image.status != ImageStatus.FAILED, in_library(),
               lacks_embedding(model_id))
        .order_by(Image.id)
    )
    return [(row.id, row.path) for row in rows]


def pending_image_ids(session: Session, model_id: str, *,
                      statuses: Sequence[ImageStatus] = WAITING) -> list[int]:
    """Ids of images in the given statuses that have no embedding from `model_id` yet."""
    return list(session.scalars(
        select(Image.id).where(Image.status.in_(statuses), in_library(), lacks_embedding(model_id))
        .order_by(Image.id)
    ))


def record_results(session: Session, model_id: str, ids: Sequence[int], vectors: np.ndarray,
                   failures: dict[int, str], hashes: dict[int, str] | None = None) -> None:
    """Store embeddings (and the perceptual hashes of the same pixels, paired with their
    look-alikes) and move images to indexed, or to failed with their reasons. The caller
    commits at once (clipseek.indexing.hash_pairs.pair_hashed holds a lock until then).

    Images deleted while they were being encoded are left out: their results are dropped.
    """
    # The rows still there are locked against deletion until the commit; a deletion that
    # won the race leaves its id out, so the insert cannot violate the foreign key (which
    # the task would retry, in vain, fifty times).
    present = set(session.scalars(
        select(Image.id).where(Image.id.in_(ids)).order_by(Image.id).with_for_update(key_share=True)))
    rows = [{"image_id": i, "model": model_id, "embedding": v}
            for i, v in zip(ids, vectors, strict=True) if i in present]
    if rows:
        session.execute(
            pg_insert(Embedding)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["image_id", "model"])
        )
        session.execute(
            update(Image).where(Image.id.in_(ids))
            .values(status=ImageStatus.INDEXED, error=None, indexed_at=func.now(),
                    attempts=Image.attempts + 1)
        )
    record_hashes(session, {i: h for i, h in (hashes or {}).items() if i in present})
    for image_id, reason in failures.items():
        session.execute(
            update(Image).where(Image.id == image_id)
            .values(status=ImageStatus.FAILED, error=reason, attempts=Image.attempts + 1)
        )


def encode_decoded(encoder: Encoder, decoded: Sequence[Decoded]) -> tuple[list[int], np.ndarray,
                                                                          dict[int, str]]:
    """Run the model on the decodable part of a batch; return ids, vectors and failures."""
    good = [(i, px) for i, px, _, _ in decoded if px is not None]
    failures = {i: err for i, px, err, _ in decoded if px is None and err is not None}
    if not good:
        return [], np.zeros((0, encoder.dim), dtype=np.float32), failures
    vectors = encoder.encode_pixels(np.stack([px for _, px in good]))
    return [i for i, _ in good], vectors, failures


def _batches(items: Sequence[tuple[int, str]], size: int) -> Iterator[Sequence[tuple[int, str]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def index_images(
    session: Session,
    encoder: Encoder,
    image_ids: Sequence[int],
    *,
    pool: ThreadPoolExecutor,
    batch_size: int,
    max_pixels: int,
    on_batch: Callable[[IndexReport], None] | None = None,
) -> IndexReport:
    """Embed the given images with `encoder`, committing after every batch.

    Images already embedded by this model are skipped, so running it twice (or after a
    crash) is safe. Three stages overlap: the next batch decodes in `pool` and the last
    one is written by a writer thread while the model runs on this one.
    """
    todo = images_needing(session, encoder.model_id, image_ids)
    preprocess = encoder.preprocess
    total = IndexReport(skipped=len(image_ids) - len(todo))
    session.commit()

    def submit(batch: Sequence[tuple[int, str]]) -> list[Future[Decoded]]:
        return [pool.submit(decode_for_clip, i, p, max_pixels, preprocess) for i, p in batch]

    def write(ids: list[int], vectors: np.ndarray, failures: dict[int, str],
              hashes: dict[int, str]) -> IndexReport:
        record_results(session, encoder.model_id, ids, vectors, failures, hashes)
        session.commit()
        return IndexReport(indexed=ids, failed=failures)

    def finish(pending: Future[IndexReport] | None) -> None:
        # Waiting here keeps one write in flight at most and raises its error, if any.
        if pending is not None:
            report = pending.result()
            total.merge(report)
            if on_batch:
                on_batch(report)

    batches = list(_batches(todo, batch_size))
    ahead = submit(batches[0]) if batches else []
    # The session passes to the writer thread batch by batch, never used by two threads at
    # once: this thread touches it only before the loop.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipseek-write") as writer:
        writing: Future[IndexReport] | None = None
        for index in range(len(batches)):
            current, ahead = ahead, (submit(batches[index + 1]) if index + 1 < len(batches) else [])
            decoded = [f.result() for f in current]
            encoded = encode_decoded(encoder, decoded)
            finish(writing)
            writing = writer.submit(write, *encoded, {i: h for i, _, _, h in decoded if h is not None})
        finish(writing)
    return total
