"""The Celery application, built from ClipSeek's settings (Redis is the broker)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from clipseek.embedded_redis import EmbeddedRedis
from clipseek.settings import Settings

QUEUE = "clipseek"
INDEX_TASK = "clipseek.index_images"
STALE_TASK = "clipseek.requeue_stale"


def broker_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded Redis in CLIPSEEK_HOME (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.redis_folder).ensure_running()


def create_celery(settings: Settings, *, broker: str | None = None) -> Celery:
    """A Celery app for these settings; tasks find the settings in `app.conf`."""
    app = Celery("clipseek", broker=broker or broker_url(settings), set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        # Acknowledge after the batch is written: a worker killed mid-batch loses nothing,
        # its batch is handed to another worker.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings.visibility_timeout_s),
        worker_hijack_root_logger=False,
        beat_schedule={
            "requeue-stale": {"task": STALE_TASK, "schedule": max(30.0, settings.stale_after_s / 2)},
        },
        clipseek_settings=settings,
    )
    app.autodiscover_tasks(["worker"], related_name="tasks", force=True)
    return app


def queue_report(app: Celery) -> dict[str, Any]:
    """Batches waiting in the queue and the workers answering a ping (None/[] if unreachable).

    A worker busy with a batch answers only after it, so it may be missing from the list.
    """
    from kombu.exceptions import OperationalError as BrokerError

    try:
        with app.connection_for_read() as conn:
            depth = conn.default_channel.client.llen(QUEUE)
        workers = sorted(name for reply in app.control.ping(timeout=1.0) for name in reply)
    except (BrokerError, OSError):
        return {"queue_depth": None, "workers": []}
    return {"queue_depth": int(depth), "workers": workers}


def _transport_options(visibility_timeout_s: int) -> dict[str, int]:
    """Redis transport options that hand a dead worker's batch out again promptly.

    kombu scans for expired unacknowledged messages only every restore interval times
    the throttle (10 x 10 s by default), so a killed worker's batch could wait 100 s past
    its visibility timeout; scanning every tenth of that timeout (at most 10 s) keeps the
    delay proportional, and the scan is one sorted-set range query under a lock.
    """
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 10)),
        "unacked_restore_throttle": 1,
    }
