"""Handing registered images to background workers, and recovering what got lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import Session

from clipseek.store.db import Database
from clipseek.store.tables import WAITING, Embedding, Image, ImageStatus, in_library

# A task carries several model batches, so that inside it the worker decodes the next batch
# and writes the last one while the model runs (one batch per task left the model idle
# during both); four keeps a killed worker's redone work small.
BATCHES_PER_TASK = 4

# Sends one batch of image ids to be embedded by the named model.
Enqueue = Callable[[list[int], str], None]


def queue_for_indexing(session: Session, image_ids: Sequence[int], *, model: str, batch_size: int,
                       enqueue: Enqueue, mark: bool = True) -> int:
    """Mark images queued, commit, then send their ids in tasks; return the number of tasks.

    The commit comes first so a worker never receives an id it cannot see yet.
    """
    ids = sorted(image_ids)
    if mark and ids:
        session.execute(update(Image).where(Image.id.in_(ids), Image.status.in_(WAITING))
                        .values(status=ImageStatus.QUEUED))
    session.commit()
    per_task = batch_size * BATCHES_PER_TASK
    tasks = [ids[i:i + per_task] for i in range(0, len(ids), per_task)]
    for task in tasks:
        enqueue(task, model)
    return len(tasks)


def lacks_embedding(model: str) -> ColumnElement[bool]:
    """SQL condition: the image (in `images`) has no embedding from `model`."""
    return ~exists().where(Embedding.image_id == Image.id, Embedding.model == model)


def touch(session: Session, image_ids: Sequence[int]) -> None:
    """Restart the staleness clock of these images (they were just queued again)."""
    session.execute(update(Image).where(Image.id.in_(image_ids)).values(updated_at=func.now()))


def reset_failed(session: Session) -> list[int]:
    """Move every failed image of the library back to registered so it is tried again; return their ids."""
    ids = list(session.scalars(select(Image.id).where(Image.status == ImageStatus.FAILED, in_library())
                               .order_by(Image.id)))
    session.execute(update(Image).where(Image.id.in_(ids)).values(status=ImageStatus.REGISTERED, error=None))
    return ids


def ids_without(session: Session, *, model: str) -> list[int]:
    """Every usable image of the library that has no embedding from `model` yet (a missing one
    has no file to read; one in the trash is embedded if it is restored)."""
    return list(session.scalars(
        select(Image.id).where(Image.status.not_in((ImageStatus.FAILED, ImageStatus.MISSING)),
                               in_library(), lacks_embedding(model))
        .order_by(Image.id)))


def outstanding(session: Session, image_ids: Sequence[int], *, model: str) -> int:
    """How many of these images are neither failed, in the trash, nor embedded by `model`."""
    return int(session.scalar(
        select(func.count()).select_from(Image)
        .where(Image.id.in_(image_ids), Image.status != ImageStatus.FAILED, in_library(),
               lacks_embedding(model))) or 0)


def wait_until_indexed(db: Database, image_ids: Sequence[int], *, model: str, timeout_s: float,
                       on_progress: Callable[[int], None] | None = None, poll_s: float = 0.5) -> int:
    """Poll until every image is indexed or failed, or the timeout passes; return how many remain."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.session() as session:
            remaining = outstanding(session, image_ids, model=model)
        if on_progress:
            on_progress(len(image_ids) - remaining)
        if remaining == 0 or time.monotonic() >= deadline:
            return remaining
        time.sleep(poll_s)
