"""Celery tasks: thin adapters that call the indexing services with this process's context."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from sqlalchemy.exc import DBAPIError, OperationalError

from clipseek.context import shared_context
from clipseek.errors import DatabaseUnavailable
from clipseek.indexing.broker import INDEX_TASK
from clipseek.indexing.encoding import index_images
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
    if switched:
        log.info("%s now covers every image: searches use it from now on", switched)
    log.info("batch of %d: %d indexed, %d failed, %d skipped", len(image_ids),
             len(report.indexed), len(report.failed), report.skipped)
    return {"indexed": len(report.indexed), "failed": len(report.failed), "skipped": report.skipped}
