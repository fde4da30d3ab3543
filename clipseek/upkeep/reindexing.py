"""Queueing images again on request: lost ones, failed ones, every image for another model, or
those whose words are not read; and reading facts and captions into old rows."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from clipseek.indexing.broker import broker_client
from clipseek.indexing.hash_pairs import PAIR_BATCH, pair_waiting, record_hashes
from clipseek.indexing.queueing import Enqueue, ids_without, reset_failed
from clipseek.indexing.reading import EnqueueReading, queue_for_reading, reset_for_reading
from clipseek.library.captions import add_derived_captions, listed
from clipseek.library.places import (
    Coordinates,
    PlacingReport,
    place_images,
    record_places,
    waiting_to_be_placed,
)
from clipseek.photo.imaging import ImageDecodeError
from clipseek.photo.metadata import read_facts_from
from clipseek.photo.perceptual_hash import hash_file
from clipseek.settings import Settings
from clipseek.store.tables import Caption, Image, ImageStatus, in_library
from clipseek.switching.switch import active_model, register_model
from clipseek.upkeep.recovery import Recovery, requeue, requeue_lost, waiting_image_ids

# Seconds the broker may take to list what it holds before `--stale` gives up.
BROKER_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Requeued:
    """What a re-index queued: the images, the tasks that carry them, and for which model."""

    image_ids: list[int]
    tasks: int
    model: str


def reindex_images(session: Session, *, settings: Settings, enqueue: Enqueue, stale: bool = False,
            older_than_s: int | None = None, failed: bool = False, model: str | None = None) -> Requeued:
    """Queue images again for `model` (the active one by default); commits the session first if
    `model` is another one (its index is built concurrently).

    `stale` queues every waiting image that nothing holds any more (the broker is asked), or,
    with `older_than_s`, every image waiting longer than that; `failed` tries failed images
    again; `model` embeds every usable image with that model, leaving their status alone.
    """
    target = model or active_model(session)
    if target != active_model(session):
        # Its vectors need their own index and a row, or workers would skip its tasks. The
        # index is built concurrently, which waits for every open transaction: this one too.
        session.commit()
        register_model(session.get_bind().engine, target)
    ids: set[int] = set()
    lost = Recovery()
    if stale and older_than_s is None:
        client = broker_client(settings, timeout_s=BROKER_TIMEOUT_S)
        try:
            lost = requeue_lost(session, client, model=target, batch_size=settings.batch_size,
                                enqueue=enqueue, grace_s=0)
        finally:
            client.close()
    elif stale:
        ids |= set(waiting_image_ids(session, model=target, older_than_s=older_than_s or 0))
    if failed:
        ids |= set(reset_failed(session))
    if model:
        ids |= set(ids_without(session, model=model))
    ids -= set(lost.requeued)
    tasks = lost.tasks + requeue(session, sorted(ids), model=target, mark=model is None,
                                 batch_size=settings.batch_size, enqueue=enqueue)
    return Requeued(image_ids=sorted(ids | set(lost.requeued)), tasks=tasks, model=target)


def reread_words(session: Session, *, enqueue: EnqueueReading) -> list[int]:
    """Send every indexed image whose words are not read (waiting, skipped or failed) to be read;
    return them. Pictures indexed before reading existed are among the waiting ones."""
    ids = reset_for_reading(session)
    session.commit()
    queue_for_reading(session, ids, enqueue=enqueue)
    return ids


# Called after each committed batch with how many images have been read so far.
OnFacts = Callable[[int], None]
FACTS_BATCH = 200


def backfill_metadata(session: Session, *, on_batch: OnFacts | None = None) -> int:
    """Read EXIF facts into the rows registered before ClipSeek read them; return how many.

    Rows without a display size have never been read (every readable picture has one);
    missing files are left alone. Commits after each batch, so an interruption keeps the work.
    """
    done = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Image.id, Image.path).where(Image.display_width.is_(None), Image.id > last_id,
                                               Image.status != ImageStatus.MISSING, in_library())
            .order_by(Image.id).limit(FACTS_BATCH)).all()
        if not rows:
            return done
        coordinates: dict[int, Coordinates] = {}
        for image_id, path in rows:
            facts = read_facts_from(Path(path))
            session.execute(update(Image).where(Image.id == image_id).values(**facts.columns()))
            if facts.latitude is not None:
                coordinates[image_id] = (facts.latitude, facts.longitude)
        place_images(session, coordinates)
        session.commit()
        done += len(rows)
        last_id = rows[-1].id
        if on_batch:
            on_batch(done)


def backfill_captions(session: Session, *, on_batch: OnFacts | None = None) -> tuple[int, int]:
    """Derive captions (file name, EXIF and XMP text) for images that have none; return (read, captioned).

    An image with any caption, from its file or written, is left alone (its place and the
    words read in it do not count), so a second run reads
    only the pictures that say nothing. Missing and failed files are skipped. Commits after
    each batch, so an interruption keeps the work.
    """
    read = captioned = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Image.id, Image.path, Image.original_name)
            .where(Image.id > last_id, Image.status.not_in([ImageStatus.MISSING, ImageStatus.FAILED]),
                   in_library(), ~exists().where(Caption.image_id == Image.id, listed()))
            .order_by(Image.id).limit(FACTS_BATCH)).all()
        if not rows:
            return read, captioned
        for image_id, path, name in rows:
            facts = read_facts_from(Path(path))
            add_derived_captions(session, image_id, name=name, text=facts.text)
        session.commit()
        read += len(rows)
        captioned += len(set(session.scalars(select(Caption.image_id).where(
            Caption.image_id.in_([row.id for row in rows]), listed()))))
        last_id = rows[-1].id
        if on_batch:
            on_batch(read)


def _hash_or_none(path: str, max_pixels: int) -> str | None:
    try:
        return hash_file(Path(path), max_pixels=max_pixels)
    except (ImageDecodeError, MemoryError):
        return None


def backfill_hashes(session: Session, *, max_pixels: int, pool: ThreadPoolExecutor,
                    on_batch: OnFacts | None = None) -> tuple[int, int]:
    """Compute the perceptual hash of every indexed image without one; return (hashed, unreadable).

    Images waiting to be indexed get theirs from the worker; failed and missing ones have no
    pixels to hash. Files decode in `pool`, as indexing decodes them; commits after each
    batch, so an interruption keeps the work. An unreadable file is left without a hash.
    """
    hashed = unreadable = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Image.id, Image.path).where(Image.status == ImageStatus.INDEXED, Image.phash.is_(None),
                                               Image.id > last_id)
            .order_by(Image.id).limit(FACTS_BATCH)).all()
        if not rows:
            return hashed, unreadable
        found = list(pool.map(lambda row: (row.id, _hash_or_none(row.path, max_pixels)), rows))
        hashes = {image_id: phash for image_id, phash in found if phash is not None}
        record_hashes(session, hashes)
        session.commit()
        hashed += len(hashes)
        unreadable += len(rows) - len(hashes)
        last_id = rows[-1].id
        if on_batch:
            on_batch(hashed + unreadable)


def backfill_pairs(session: Session, *, batch: int = PAIR_BATCH, on_batch: OnFacts | None = None) -> int:
    """Look up the near-duplicate pairs of every hashed picture that has none looked up (hashed
    before pairs were kept); return how many were paired. Commits after each batch."""
    paired = 0
    while ids := pair_waiting(session, limit=batch):
        session.commit()
        paired += len(ids)
        if on_batch:
            on_batch(paired)
    session.commit()
    return paired


# Called after each committed batch with how many images have been looked up, and of how many.
OnPlaces = Callable[[int, int], None]
PLACES_BATCH = 1_000


def backfill_places(session: Session, *, on_batch: OnPlaces | None = None) -> PlacingReport:
    """Name the place of every picture with coordinates that has not been looked up (those
    registered before ClipSeek named places); return what was done.

    Commits after each batch, so an interruption keeps the work; raises GazetteerUnavailable
    when the list of places cannot be read.
    """
    total = int(session.scalar(select(func.count()).select_from(Image).where(waiting_to_be_placed())) or 0)
    done = PlacingReport()
    last_id = 0
    while True:
        rows = session.execute(
            select(Image.id, Image.latitude, Image.longitude)
            .where(waiting_to_be_placed(), Image.id > last_id)
            .order_by(Image.id).limit(PLACES_BATCH)).all()
        if not rows:
            return done
        done.merge(record_places(session, {row.id: (row.latitude, row.longitude) for row in rows}))
        session.commit()
        last_id = rows[-1].id
        if on_batch:
            on_batch(done.looked_at, max(total, done.looked_at))  # pictures that came meanwhile
