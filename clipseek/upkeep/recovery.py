"""Finding work that got lost (a dead worker, a broker that lost its queue) and queueing it again.

The database is the record of what must be indexed; the broker only carries it. An image
that the database says is waiting, but that no queued task, no delivered task and no live
worker holds, is lost, and is queued again at once. One scheduler at a time does this
every few seconds (a PostgreSQL advisory lock elects it); `clipseek reindex --stale` does
the same on demand. The same passes empty the trash of pictures deleted more than
CLIPSEEK_TRASH_DAYS ago, and compare the hashes of pictures hashed before near-duplicate
pairs were kept with the others, a few batches a pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, or_, select, text
from sqlalchemy.orm import Session

from clipseek.context import Context
from clipseek.indexing.broker import (
    FACES_TASK,
    broker_client,
    forget_deliveries,
    ids_in_broker,
    ids_read_in_broker,
)
from clipseek.indexing.face_finding import EnqueueFaces, people_on, queue_for_faces, waits_for_faces
from clipseek.indexing.hash_pairs import PAIR_BATCH, pair_waiting
from clipseek.indexing.heartbeats import forget_workers, worker_states
from clipseek.indexing.queueing import Enqueue, lacks_embedding, queue_for_indexing, touch
from clipseek.indexing.reading import EnqueueReading, queue_for_reading, waits_to_be_read
from clipseek.library.trash import empty_trash
from clipseek.search.cutoff import calibrate_if_due
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.sql_reader import end_overrunning_readers
from clipseek.store.tables import WAITING, Image, in_library
from clipseek.switching.switch import active_model, resume_stalled_switch

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# An image just registered or queued may not have reached the broker yet (the commit comes
# before the send); it counts as lost only after this long.
GRACE_S = 10.0
TICK_S = 10.0
# Pictures removed for good from the trash per pass at most, so that a pass stays short.
EMPTY_PER_PASS = 500
# Pictures hashed before pairs were kept that are paired per pass at most, so that a pass
# stays short: a walk and an update each, 13 ms a picture on 2 busy cores (bench/duplicates.py).
PAIRS_PER_PASS = 1_000
# Any 64-bit number unique to ClipSeek: the advisory lock that elects the one scheduler.
SCHEDULER_LOCK = 0x436C697053656B31


@dataclass
class Recovery:
    """What one pass found and did."""

    requeued: list[int] = field(default_factory=list)
    dead_workers: list[str] = field(default_factory=list)
    tasks: int = 0
    # Indexed images whose words were waiting to be read and that nothing held, sent again.
    to_read: list[int] = field(default_factory=list)
    # Pictures hashed before pairs were kept whose near-duplicate pairs were looked up.
    paired: int = 0
    # Indexed images whose faces were waiting to be found (people on) that nothing held, sent again.
    to_find_faces: list[int] = field(default_factory=list)


def waiting_image_ids(session: Session, *, model: str, older_than_s: float) -> list[int]:
    """Images registered or queued for longer than `older_than_s` that still lack `model`'s embedding."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    return list(session.scalars(
        select(Image.id).where(Image.status.in_(WAITING), Image.updated_at <= cutoff, in_library(),
                               lacks_embedding(model)).order_by(Image.id)))


def requeue(session: Session, image_ids: list[int], *, model: str, batch_size: int,
            enqueue: Enqueue, mark: bool = True) -> int:
    """Queue these images again (restarting their waiting clock); return the number of tasks.

    `mark=False` leaves their status alone (embedding indexed images with another model).
    """
    touch(session, image_ids)
    return queue_for_indexing(session, image_ids, model=model, batch_size=batch_size, enqueue=enqueue,
                              mark=mark)


def requeue_lost(session: Session, broker: redis.Redis, *, model: str, batch_size: int, enqueue: Enqueue,
                 grace_s: float = GRACE_S) -> Recovery:
    """Queue again every waiting image that nothing holds any more; forget dead workers.

    `broker` is a Redis client of the broker (see clipseek.indexing.broker.broker_client); if it cannot
    be read, nothing is queued (the error propagates), since lost cannot be told from queued.
    """
    states = worker_states(session)
    dead = [w for w in states if not w.alive]
    held = {i for w in states if w.alive for i in w.image_ids}
    dead_tasks = [w.task_id for w in dead if w.task_id]
    present = ids_in_broker(broker, model=model, except_tasks=dead_tasks) | held
    lost = [i for i in waiting_image_ids(session, model=model, older_than_s=grace_s) if i not in present]
    tasks = requeue(session, lost, model=model, batch_size=batch_size, enqueue=enqueue) if lost else 0
    # Only once their images are queued again: the database still names them if this fails.
    forget_deliveries(broker, dead_tasks)
    forget_workers(session, [w.name for w in dead])
    session.commit()
    return Recovery(requeued=lost, dead_workers=[w.name for w in dead], tasks=tasks)


def pair_some_waiting(session: Session, *, most: int = PAIRS_PER_PASS) -> int:
    """Pair up to `most` pictures waiting to be paired, committing each batch; return how many."""
    paired = 0
    while paired < most and (ids := pair_waiting(session, limit=min(PAIR_BATCH, most - paired))):
        session.commit()
        paired += len(ids)
    return paired


def unread_image_ids(session: Session, *, older_than_s: float) -> list[int]:
    """Images indexed longer ago than `older_than_s` whose words are not read yet."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    # A row indexed by an old version may have no time: it has waited long enough.
    return list(session.scalars(select(Image.id).where(
        waits_to_be_read(), or_(Image.indexed_at.is_(None), Image.indexed_at <= cutoff)).order_by(Image.id)))


def requeue_lost_reading(session: Session, broker: redis.Redis, *, enqueue: EnqueueReading,
                         grace_s: float = GRACE_S) -> list[int]:
    """Send again every image waiting to be read that no read task and no live worker holds;
    return them. Images indexed before reading existed wait too, so they are read this way.

    Run after `requeue_lost`, which forgets dead workers and their deliveries.
    """
    held = {i for w in worker_states(session) if w.alive for i in w.image_ids}
    present = ids_read_in_broker(broker) | held
    lost = [i for i in unread_image_ids(session, older_than_s=grace_s) if i not in present]
    if lost:
        queue_for_reading(session, lost, enqueue=enqueue)
    session.commit()
    return lost


def requeue_lost_faces(session: Session, broker: redis.Redis, settings: Settings, *,
                       enqueue: EnqueueFaces, grace_s: float = GRACE_S) -> list[int]:
    """While people is on, send again every image waiting for its faces that no faces task and
    no live worker holds; return them (pictures indexed by `ingest --inline` get found this way)."""
    if not people_on(session, settings):
        return []
    held = {i for w in worker_states(session) if w.alive for i in w.image_ids}
    present = ids_read_in_broker(broker, task=FACES_TASK) | held
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    lost = [i for i in session.scalars(select(Image.id).where(
        waits_for_faces(), or_(Image.indexed_at.is_(None), Image.indexed_at <= cutoff)).order_by(Image.id))
        if i not in present]
    if lost:
        queue_for_faces(session, lost, enqueue=enqueue)
    session.commit()
    return lost


class Scheduler:
    """Runs `requeue_lost` every TICK_S seconds while it holds the scheduler lock.

    Any number may run (every worker started with --beat, `clipseek beat`); the advisory
    lock lets exactly one act, and another takes over within a tick when that one dies,
    because PostgreSQL drops the lock with its connection.
    """

    def __init__(self, db: Database, pass_: Callable[[Session], Recovery], *, tick_s: float = TICK_S,
                 name: str = "scheduler") -> None:
        self.db = db
        self.pass_ = pass_
        self.tick_s = tick_s
        self.name = name
        self._lock_conn: Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run in a background thread (a worker's), which ends with its process."""
        self._thread = threading.Thread(target=self.run, name="clipseek-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and release the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._release()

    def run(self) -> None:
        """Tick until stopped (in the foreground for `clipseek beat`)."""
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.tick_s)

    def tick(self) -> Recovery | None:
        """One pass if this scheduler leads; None when another one does or the pass failed."""
        try:
            if not self._lead():
                return None
            with self.db.session() as session:
                found = self.pass_(session)
        except Exception as exc:  # the database or broker being down must not end the loop
            log.warning("%s: recovery pass failed (%s); trying again in %.0f s", self.name,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                        self.tick_s)
            self._release_if_broken()
            return None
        if found.requeued or found.dead_workers:
            log.warning("%s: queued %d lost image(s) again; gone worker(s): %s", self.name,
                        len(found.requeued), ", ".join(found.dead_workers) or "none")
        if found.to_read:
            log.info("%s: sent %d image(s) waiting to be read for words", self.name, len(found.to_read))
        if found.paired:
            log.info("%s: compared the hashes of %d picture(s) hashed before with the others", self.name,
                     found.paired)
        if found.to_find_faces:
            log.info("%s: sent %d image(s) waiting for their faces to be found", self.name,
                     len(found.to_find_faces))
        return found

    def _lead(self) -> bool:
        if self._lock_conn is not None:
            self._lock_conn.execute(text("SELECT 1"))  # raises if the connection (and lock) is gone
            self._lock_conn.commit()  # never left idle in a transaction between ticks
            return True
        conn = self.db.engine.connect()
        try:
            got = bool(conn.scalar(select(func.pg_try_advisory_lock(SCHEDULER_LOCK))))
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._lock_conn = conn
        log.info("%s: this process now runs the recovery checks", self.name)
        return True

    def _release_if_broken(self) -> None:
        if self._lock_conn is None:
            return
        try:
            self._lock_conn.execute(text("SELECT 1"))
            self._lock_conn.commit()
        except Exception:
            self._lock_conn.invalidate()
            self._lock_conn = None

    def _release(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute(select(func.pg_advisory_unlock(SCHEDULER_LOCK)))
                self._lock_conn.commit()
                self._lock_conn.close()
            except Exception:
                self._lock_conn.invalidate()
            self._lock_conn = None


def scheduler_for(ctx: Context, *, name: str) -> Scheduler:
    """A scheduler whose passes use this context's database, broker and model."""
    settings = ctx.settings

    def one_pass(session: Session) -> Recovery:
        client = broker_client(settings, timeout_s=5.0)
        try:
            found = requeue_lost(session, client, model=active_model(session), batch_size=settings.batch_size,
                                 enqueue=ctx.enqueue)
            found.to_read = requeue_lost_reading(session, client, enqueue=ctx.enqueue_reading)
            found.to_find_faces = requeue_lost_faces(session, client, settings, enqueue=ctx.enqueue_faces)
        finally:
            client.close()
        # A switch to another model whose tasks were lost is sent again (clipseek.switching.switch).
        if resume_stalled_switch(session, batch_size=settings.batch_size, enqueue=ctx.enqueue):
            log.info("the model switch had stalled: its missing images were queued again")
        # A reader that SET its own time bounds off must still not hold back index builds.
        end_overrunning_readers(session)
        session.commit()
        emptied = empty_trash(session, store=settings.image_store, thumbnails=settings.thumbnails,
                              older_than_days=settings.trash_days, limit=EMPTY_PER_PASS)
        if emptied.image_ids:
            log.info("removed %d picture(s) for good from the trash (deleted more than %d days ago)",
                     len(emptied.image_ids), settings.trash_days)
        found.paired = pair_some_waiting(session)
        # The search's relevance cutoff follows the collection as it grows (clipseek.search.cutoff).
        if calibrate_if_due(session, ctx.encoder) is not None:
            session.commit()
        return found

    return Scheduler(ctx.db, one_pass, name=name)
