"""The worker process: the core's Celery app with the task bodies, heartbeats and the scheduler."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Celery
from celery import signals as celery_signals

from clipseek.context import Context
from clipseek.indexing.broker import FACES_TASK, INDEX_TASK, READ_TASK, WORKER_QUEUES, create_celery
from clipseek.indexing.heartbeats import Heartbeat
from clipseek.settings import Settings
from clipseek.upkeep.recovery import scheduler_for

log = logging.getLogger("clipseek.worker")


def create_worker_app(settings: Settings) -> Celery:
    """The Celery app with ClipSeek's tasks registered."""
    app = create_celery(settings)
    app.autodiscover_tasks(["worker"], related_name="tasks", force=True)
    return app


def run_worker(ctx: Context, *, beat: bool, loglevel: str) -> None:
    """Run a worker in this process until it is stopped (SIGTERM: finish the task in hand).

    The worker writes a heartbeat, with the task it holds, every few seconds; with `beat` it
    also runs the recovery scheduler in a thread, so nothing of it outlives the process.
    """
    name = f"clipseek-{os.getpid()}@{socket.gethostname()}"
    app = create_worker_app(ctx.settings)
    heartbeat = Heartbeat(ctx.db, name)
    scheduler = scheduler_for(ctx, name=name) if beat else None

    def ready(**_: Any) -> None:
        heartbeat.start()
        if scheduler is not None:
            scheduler.start()

    def task_starts(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        if task is not None and task.name in (INDEX_TASK, READ_TASK, FACES_TASK) and args:
            heartbeat.holding(task_id, [int(i) for i in args[0]])

    def task_ends(**_: Any) -> None:
        heartbeat.holding(None, None)

    def shutdown(**_: Any) -> None:
        if scheduler is not None:
            scheduler.stop()
        heartbeat.stop()

    # Strong references: the handlers are closures that would otherwise be collected.
    celery_signals.worker_ready.connect(ready, weak=False)
    celery_signals.task_prerun.connect(task_starts, weak=False)
    celery_signals.task_postrun.connect(task_ends, weak=False)
    celery_signals.worker_shutdown.connect(shutdown, weak=False)
    # Indexing's queue first: with the broker's `priority` order (clipseek.indexing.broker) a
    # worker reads words only while no picture waits to become searchable.
    argv = ["worker", "--pool=solo", f"--queues={','.join(WORKER_QUEUES)}", f"--loglevel={loglevel}",
            f"--hostname={name}", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(argv)
