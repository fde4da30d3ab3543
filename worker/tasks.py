"""Celery tasks: thin adapters that call the indexing services with this process's context."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from sqlalchemy.exc import DBAPIError, OperationalError

from clipseek.broker import INDEX_TASK
from clipseek.context import shared_context, shared_encoder
from clipseek.errors import DatabaseUnavailable
from clipseek.indexing import index_images

log = logging.getLogger("clipseek.worker")

# Errors that pass when the database comes back: retry the whole batch later.
TRANSIENT = (OperationalError, DBAPIError, DatabaseUnavailable)


@shared_task(bind=True, name=INDEX_TASK, autoretry_for=TRANSIENT, retry_backoff=1,
             retry_backoff_max=30, retry_jitter=False, max_retries=50)
def index_images_task(self: Task, image_ids: list[int], model: str) -> dict[str, int]:
    """Embed a batch of images with `model`; images already embedded by it are skipped."""
    # One database pool, model and decode pool per worker process, created on the first task.
    ctx = shared_context(self.app.conf.clipseek_settings)
    encoder = shared_encoder(ctx.settings.with_changes(model=model))
    with ctx.db.session() as session:
        report = index_images(session, encoder, image_ids, pool=ctx.decode_pool,
                              batch_size=ctx.settings.batch_size,
                              max_pixels=ctx.settings.max_image_pixels)
    log.info("batch of %d: %d indexed, %d failed, %d skipped", len(image_ids),
             len(report.indexed), len(report.failed), report.skipped)
    return {"indexed": len(report.indexed), "failed": len(report.failed), "skipped": report.skipped}
