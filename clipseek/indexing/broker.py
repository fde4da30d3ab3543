"""The message broker: the Celery app that sends work, the queue, and what is waiting in it.

Only the sending side lives here; the task bodies are in `worker/`, which builds its app on
top of `create_celery`. Every call that reaches Redis on behalf of a request has a short
timeout, so a broker that hangs costs a request a second or two, never a thread for good.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from clipseek.errors import ClipSeekError
from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.settings import Settings

if TYPE_CHECKING:
    import redis
    from celery import Celery

QUEUE = "clipseek"
INDEX_TASK = "clipseek.index_images"
# Reading the words in indexed pictures: its own queue, which workers take from only while
# QUEUE is empty (see transport_options), so it never delays a picture becoming searchable.
READ_QUEUE = "clipseek.read"
READ_TASK = "clipseek.read_words"
# Finding faces in indexed pictures (people on): on the reading queue, at the same low priority.
FACES_TASK = "clipseek.find_faces"
# Every queue a worker serves, the first first.
WORKER_QUEUES = (QUEUE, READ_QUEUE)
# kombu's Redis transport keeps delivered, unacknowledged messages in this hash (by
# delivery tag) and their delivery times in this sorted set.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
# Seconds a request may wait on the broker before it gives up and says "unknown".
BROKER_TIMEOUT_S = 1.5
# How long a measured queue depth is reused: a burst of status requests makes one call.
DEPTH_CACHE_S = 2.0


def broker_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded Redis in CLIPSEEK_HOME (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.redis_folder).ensure_running()


def transport_options(visibility_timeout_s: int) -> dict[str, float | str]:
    """Redis transport options: short socket timeouts, and a prompt hand-back of a dead worker's task.

    kombu scans for expired unacknowledged messages only every restore interval times the
    throttle (10 x 10 s by default), so a killed worker's batch could wait 100 s past its
    visibility timeout; scanning every tenth of that timeout (at most 10 s) keeps the delay
    proportional. Heartbeats (clipseek.upkeep.recovery) usually hand it back much sooner.

    A worker's BRPOP names its queues in the order given with `--queues`, and Redis pops from
    the first that holds a task; kombu's default `round_robin` moves the queue it last took
    from to the back, which would make indexing and reading take turns. `priority` keeps
    the order, so a worker reads words only while no indexing waits.
    """
    return {
        "queue_order_strategy": "priority",
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 10)),
        "unacked_restore_throttle": 1,
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
    }


def create_celery(settings: Settings, *, broker: str | None = None) -> Celery:
    """A Celery app for these settings; tasks find the settings in `app.conf`."""
    from celery import Celery

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
        broker_connection_timeout=5.0,
        broker_transport_options=transport_options(settings.visibility_timeout_s),
        # A send that cannot reach the broker fails within seconds; the images stay recorded
        # as queued and the recovery loop sends them again.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                                   "interval_max": 1.0},
        worker_hijack_root_logger=False,
        clipseek_settings=settings,
    )
    return app


def send_index_task(app: Celery, image_ids: list[int], model: str) -> None:
    """Send one task: embed these images with `model`."""
    app.send_task(INDEX_TASK, args=[image_ids, model], queue=QUEUE)


def send_read_task(app: Celery, image_ids: list[int]) -> None:
    """Send one task: read the words in these indexed images."""
    app.send_task(READ_TASK, args=[image_ids], queue=READ_QUEUE)


def send_faces_task(app: Celery, image_ids: list[int]) -> None:
    """Send one task: find the faces in these indexed images."""
    app.send_task(FACES_TASK, args=[image_ids], queue=READ_QUEUE)


def broker_client(settings: Settings, *, timeout_s: float = BROKER_TIMEOUT_S) -> redis.Redis:
    """A plain Redis client for the broker with short timeouts (reads the queue, never consumes)."""
    import redis

    url = broker_url(settings)
    if url.startswith("redis+socket://"):
        path = url[len("redis+socket://"):].split("?", 1)[0]
        return redis.Redis(unix_socket_path=path, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s)
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


_depth_lock = threading.Lock()
_depth_cache: dict[str, tuple[float, int | None]] = {}


def queue_depth(settings: Settings) -> int | None:
    """Tasks waiting in the queue, or None when the broker does not answer in time.

    One thread measures while others reuse the last answer for DEPTH_CACHE_S seconds, so a
    burst of requests costs the broker one call and no request waits longer than the timeout.
    """
    import redis

    key = settings.redis_url or str(settings.redis_folder)
    now = time.monotonic()
    cached = _depth_cache.get(key)
    if cached and now - cached[0] < DEPTH_CACHE_S:
        return cached[1]
    if not _depth_lock.acquire(timeout=BROKER_TIMEOUT_S):
        return cached[1] if cached else None
    try:
        cached = _depth_cache.get(key)
        if cached and time.monotonic() - cached[0] < DEPTH_CACHE_S:
            return cached[1]
        depth: int | None
        try:
            client = broker_client(settings)
            try:
                depth = int(client.llen(QUEUE))
            finally:
                client.close()
        except (redis.RedisError, OSError, ClipSeekError):  # ClipSeekError: the embedded one cannot start
            depth = None
        _depth_cache[key] = (time.monotonic(), depth)
        return depth
    finally:
        _depth_lock.release()


def message_task(message: dict[str, object]) -> tuple[list[int], str] | None:
    """The image ids and model an index task message carries, or None if it is not one."""
    args = _task_args(message, INDEX_TASK)
    if args is None:
        return None
    return [int(i) for i in args[0]], str(args[1])


def read_message_ids(message: dict[str, object], task: str = READ_TASK) -> list[int] | None:
    """The image ids a read task message (or a faces task's, with FACES_TASK) carries, or None."""
    args = _task_args(message, task)
    return None if args is None else [int(i) for i in args[0]]


def _task_args(message: dict[str, object], task: str) -> list[Any] | None:
    headers = message.get("headers")
    if not isinstance(headers, dict) or headers.get("task") != task:
        return None
    body = message.get("body")
    properties = message.get("properties")
    if not isinstance(body, str) or not isinstance(properties, dict):
        return None
    raw = base64.b64decode(body) if properties.get("body_encoding") == "base64" else body.encode()
    args: list[Any] = json.loads(raw)[0]
    return args


def _delivered(client: redis.Redis) -> dict[str, dict[str, object]]:
    """Delivered, unacknowledged messages by delivery tag."""
    raw: dict[bytes, bytes] = client.hgetall(UNACKED_KEY)  # type: ignore[assignment]
    return {tag.decode(): json.loads(value)[0] for tag, value in raw.items()}


def _task_id(message: dict[str, object]) -> object:
    headers = message.get("headers")
    return headers.get("id") if isinstance(headers, dict) else None


def ids_in_broker(client: redis.Redis, *, model: str, except_tasks: Iterable[str] = ()) -> set[int]:
    """Ids of the images that index tasks for `model` carry, waiting or delivered and unacknowledged.

    Deliveries of the tasks in `except_tasks` (held by workers known to be dead) are left
    out: their images are as good as lost.
    """
    skip = set(except_tasks)
    raw_waiting: list[bytes] = client.lrange(QUEUE, 0, -1)  # type: ignore[assignment]
    messages = [json.loads(raw) for raw in raw_waiting]
    messages += [m for m in _delivered(client).values() if _task_id(m) not in skip]
    ids: set[int] = set()
    for message in messages:
        task = message_task(message)
        if task is not None and task[1] == model:
            ids.update(task[0])
    return ids


def ids_read_in_broker(client: redis.Redis, *, except_tasks: Iterable[str] = (),
                       task: str = READ_TASK) -> set[int]:
    """Ids of the images that read tasks (or faces tasks, with FACES_TASK) carry, waiting or
    delivered and unacknowledged (leaving out the deliveries of `except_tasks`, held by workers
    known to be dead)."""
    skip = set(except_tasks)
    raw_waiting: list[bytes] = client.lrange(READ_QUEUE, 0, -1)  # type: ignore[assignment]
    messages = [json.loads(raw) for raw in raw_waiting]
    messages += [m for m in _delivered(client).values() if _task_id(m) not in skip]
    ids: set[int] = set()
    for message in messages:
        ids.update(read_message_ids(message, task) or ())
    return ids


def indexing_waits(client: redis.Redis) -> bool:
    """Whether an index task waits in the queue (a reading worker then hands its turn over).

    A broker that does not answer says no: a worker could not receive the task anyway.
    """
    import redis

    try:
        return bool(client.llen(QUEUE))
    except (redis.RedisError, OSError):
        return False


def forget_deliveries(client: redis.Redis, image_ids: Iterable[str]) -> None:
    """Drop the unacknowledged deliveries of these tasks, whose work was queued again.

    Otherwise the broker would hand them out once more after the visibility timeout; that
    would be harmless (embedded images are skipped) but wasted.
    """
    wanted = set(image_ids)
    if not wanted:
        return
    tags = [tag for tag, message in _delivered(client).items() if _task_id(message) in wanted]
    if tags:
        client.hdel(UNACKED_KEY, *tags)
        client.zrem(UNACKED_INDEX_KEY, *tags)
