"""Celery tasks: thin adapters that call the indexing services with this process's context."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Task, shared_task
from sqlalchemy.exc import DBAPIError, OperationalError

from clipseek.broker import INDEX_TASK
from clipseek.context import Context
from clipseek.errors import DatabaseUnavailable
from clipseek.indexing import index_images
from clipseek.settings import Settings

log = logging.getLogger("clipseek.worker")

# Errors that pass when the database comes back: retry the whole batch later.
TRANSIENT = (OperationalError, DBAPIError, DatabaseUnavailable)

_contexts: dict[Settings, tuple[Context, ThreadPoolExecutor]] = {}


def _context(task: Task) -> tuple[Context, ThreadPoolExecutor]:
    # One database pool, model and decode pool per worker process, created on first task.
    settings: Settings = task.app.conf.clipseek_settings
    if settings not in _contexts:
        pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode")
        _contexts[settings] = (Context(settings), pool)
    return _contexts[settings]


@shared_task(bind=True, name=INDEX_TASK, autoretry_for=TRANSIENT, retry_backoff=1,
             retry_backoff_max=30, retry_jitter=False, max_retries=50)
def index_images_task(self: Task, image_ids: list[int], model: str) -> dict[str, int]:
    """Embed a batch of images with `model`; images already embedded by it are skipped."""
    ctx, pool = _context(self)
    encoder = ctx.encoder if model == ctx.settings.model else \
        Context(ctx.settings.with_changes(model=model)).encoder
    with ctx.db.session() as session:
        report = index_images(session, encoder, image_ids, pool=pool,
                              batch_size=ctx.settings.batch_size,
                              max_pixels=ctx.settings.max_image_pixels)
    log.info("batch of %d: %d indexed, %d failed, %d skipped", len(image_ids),
             len(report.indexed), len(report.failed), report.skipped)
    return {"indexed": len(report.indexed), "failed": len(report.failed), "skipped": report.skipped}
