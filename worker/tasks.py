"""Celery tasks: thin adapters that call the indexing services with this process's context."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from sqlalchemy.exc import DBAPIError, OperationalError

from clipseek.context import shared_context, shared_face_finder
from clipseek.errors import DatabaseUnavailable
from clipseek.indexing.broker import FACES_TASK, INDEX_TASK, READ_TASK, broker_client, indexing_waits
from clipseek.indexing.encoding import index_images
from clipseek.indexing.face_finding import find_faces, people_on, queue_for_faces, skip_faces
from clipseek.indexing.reading import make_way_for_indexing, queue_for_reading, read_words, skip_reading
from clipseek.switching.switch import after_index_task, is_known

log = logging.getLogger("clipseek.worker")

# Errors that pass when the database comes back: retry the whole batch later.
TRANSIENT = (OperationalError, DBAPIError, DatabaseUnavailable)


@shared_task(bind=True, name=INDEX_TASK, autoretry_for=TRANSIENT, retry_backoff=1,
             retry_backoff_max=30, retry_jitter=False, max_retries=50)
def index_images_task(self: Task, image_ids: list[int], model: str) -> dict[str, int]:
    """Embed a batch of images with `model`; images already embedded by it are skipped."""
    # One database pool, model and decode pool per worker process, created on the first task.
    ctx = shared_context(self.app.conf.clipseek_settings)
    with ctx.db.session() as session:
        if not is_known(session, model):
            # Its model was dropped (`clipseek model drop`) after the task was queued.
            log.info("batch of %d skipped: the model %s was dropped", len(image_ids), model)
            return {"indexed": 0, "failed": 0, "skipped": len(image_ids)}
        report = index_images(session, ctx.encoder_for(model), image_ids, pool=ctx.decode_pool,
                              batch_size=ctx.settings.batch_size,
                              max_pixels=ctx.settings.max_image_pixels)
        switched = after_index_task(session, image_ids, model=model,
                                    batch_size=ctx.settings.batch_size, enqueue=ctx.enqueue)
        # Their words are read next, on the reading queue, which waits while indexing does.
        if ctx.settings.ocr:
            queue_for_reading(session, report.indexed, enqueue=ctx.enqueue_reading)
        else:
            skip_reading(session, report.indexed)
            session.commit()
        # Their faces too, when people is on; off, they are marked skipped for `people enable`.
        if people_on(session, ctx.settings):
            queue_for_faces(session, report.indexed, enqueue=ctx.enqueue_faces)
        else:
            skip_faces(session, report.indexed)
            session.commit()
    if switched:
        log.info("%s now covers every image: searches use it from now on", switched)
    log.info("batch of %d: %d indexed, %d failed, %d skipped", len(image_ids),
             len(report.indexed), len(report.failed), report.skipped)
    return {"indexed": len(report.indexed), "failed": len(report.failed), "skipped": report.skipped}


@shared_task(bind=True, name=READ_TASK, autoretry_for=TRANSIENT, retry_backoff=1,
             retry_backoff_max=30, retry_jitter=False, max_retries=50)
def read_words_task(self: Task, image_ids: list[int]) -> dict[str, int]:
    """Read the words in a batch of indexed images; images read already are skipped.

    Before each picture it looks at indexing: when an index task waits, or pictures wait
    for theirs, the rest of this batch is sent again (behind it) and the worker goes back
    to indexing (clipseek.indexing.reading.make_way_for_indexing).
    """
    ctx = shared_context(self.app.conf.clipseek_settings)
    client = broker_client(ctx.settings)
    try:
        with ctx.db.session() as session:
            report = read_words(session, ctx.text_reader, image_ids,
                                max_pixels=ctx.settings.max_image_pixels,
                                hand_over=lambda: make_way_for_indexing(session,
                                                                        lambda: indexing_waits(client)))
    finally:
        client.close()
    if report.handed_back:
        ctx.enqueue_reading(report.handed_back)
    log.info("read %d of %d image(s): %d with text, %d failed, %d skipped, %d handed back to "
             "let indexing go first", len(report.read), len(image_ids), len(report.with_text),
             len(report.failed), len(report.skipped), len(report.handed_back))
    return {"read": len(report.read), "with_text": len(report.with_text), "failed": len(report.failed),
            "skipped": len(report.skipped), "handed_back": len(report.handed_back)}


@shared_task(bind=True, name=FACES_TASK, autoretry_for=TRANSIENT, retry_backoff=1,
             retry_backoff_max=30, retry_jitter=False, max_retries=50)
def find_faces_task(self: Task, image_ids: list[int]) -> dict[str, int]:
    """Find and group the faces in a batch of indexed images; images looked at already are skipped.

    It gives way to indexing as reading does (clipseek.indexing.reading.make_way_for_indexing).
    """
    ctx = shared_context(self.app.conf.clipseek_settings)
    client = broker_client(ctx.settings)
    try:
        with ctx.db.session() as session:
            finder = shared_face_finder() if people_on(session, ctx.settings) else None
            session.commit()
            report = find_faces(session, finder, image_ids, max_pixels=ctx.settings.max_image_pixels,
                                distance=ctx.settings.people_distance,
                                hand_over=lambda: make_way_for_indexing(session,
                                                                        lambda: indexing_waits(client)))
    finally:
        client.close()
    if report.handed_back:
        ctx.enqueue_faces(report.handed_back)
    log.info("looked for faces in %d of %d image(s): %d face(s), %d failed, %d skipped, %d handed back "
             "to let indexing go first", len(report.looked), len(image_ids), report.faces,
             len(report.failed), len(report.skipped), len(report.handed_back))
    return {"looked": len(report.looked), "faces": report.faces, "failed": len(report.failed),
            "skipped": len(report.skipped), "handed_back": len(report.handed_back)}
