"""Celery tasks: thin adapters that call the indexing services with this process's context."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Task, shared_task
from sqlalchemy.exc import DBAPIError, OperationalError

from clipseek.context import Context
from clipseek.errors import DatabaseUnavailable
from clipseek.indexing import index_images
from clipseek.queueing import queue_for_indexing, stale_image_ids, touch
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


@shared_task(bind=True, name="clipseek.index_images", autoretry_for=TRANSIENT, retry_backoff=1,
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


@shared_task(bind=True, name="clipseek.requeue_stale", autoretry_for=TRANSIENT, retry_backoff=5,
             max_retries=3)
def requeue_stale_task(self: Task) -> int:
    """Queue again images left registered or queued too long (e.g. after Redis lost its queue)."""
    ctx, _ = _context(self)
    settings = ctx.settings

    def send(ids: list[int], model: str) -> None:
        self.app.send_task("clipseek.index_images", args=[ids, model])

    with ctx.db.session() as session:
        ids = stale_image_ids(session, model=settings.model, older_than_s=settings.stale_after_s)
        touch(session, ids)
        queue_for_indexing(session, ids, model=settings.model, batch_size=settings.batch_size,
                           enqueue=send)
    if ids:
        log.warning("re-queued %d stale image(s)", len(ids))
    return len(ids)
