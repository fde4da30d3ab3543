"""Worker heartbeats: which workers are alive, what each one holds, and which ones are gone."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.store.db import Database
from clipseek.store.tables import WorkerBeat

log = logging.getLogger(__name__)

BEAT_EVERY_S = 5.0
# Four missed beats: long enough for a busy database, short enough to recover within a minute.
DEAD_AFTER_S = 20.0


@dataclass(frozen=True)
class WorkerState:
    """One worker as its heartbeat row describes it."""

    name: str
    hostname: str
    pid: int
    started_at: datetime
    beat_at: datetime
    seconds_since_beat: float
    task_id: str | None
    image_ids: list[int]
    alive: bool

    def to_dict(self) -> dict[str, object]:
        """JSON form for the status API."""
        return {"name": self.name, "alive": self.alive, "pid": self.pid, "hostname": self.hostname,
                "seconds_since_beat": round(self.seconds_since_beat, 1),
                "images_in_hand": len(self.image_ids)}


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def record_beat(session: Session, *, name: str, pid: int, task_id: str | None,
                image_ids: list[int] | None) -> None:
    """Write a worker's heartbeat (and the task it holds); the caller commits."""
    values = {"name": name, "hostname": socket.gethostname(), "pid": pid, "task_id": task_id,
              "image_ids": image_ids, "beat_at": func.now()}
    session.execute(pg_insert(WorkerBeat).values(**values).on_conflict_do_update(
        index_elements=["name"], set_={k: v for k, v in values.items() if k != "name"}))


def forget_workers(session: Session, names: list[str]) -> None:
    """Remove heartbeat rows (a worker that stopped, or one found dead); the caller commits."""
    if names:
        session.execute(delete(WorkerBeat).where(WorkerBeat.name.in_(names)))


def worker_states(session: Session) -> list[WorkerState]:
    """Every worker with a heartbeat row, judged alive or dead by the database's clock.

    A worker on this machine whose process is gone is dead at once; others after
    DEAD_AFTER_S seconds without a beat.
    """
    here = socket.gethostname()
    rows = session.execute(
        select(WorkerBeat, func.extract("epoch", func.now() - WorkerBeat.beat_at))
        .order_by(WorkerBeat.name)).all()
    states = []
    for row, age in rows:
        seconds = float(age)
        gone = row.hostname == here and _pid_gone(row.pid)
        states.append(WorkerState(
            name=row.name, hostname=row.hostname, pid=row.pid, started_at=row.started_at,
            beat_at=row.beat_at, seconds_since_beat=seconds, task_id=row.task_id,
            image_ids=list(row.image_ids or []), alive=not gone and seconds <= DEAD_AFTER_S))
    return states


class Heartbeat:
    """A thread that writes one worker's heartbeat every few seconds until stopped.

    The task in hand is set by the worker as it starts and ends each task, so a worker found
    dead tells which images it was holding.
    """

    def __init__(self, db: Database, name: str, *, every_s: float = BEAT_EVERY_S) -> None:
        self.db = db
        self.name = name
        self.every_s = every_s
        self._task: tuple[str | None, list[int] | None] = (None, None)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipseek-heartbeat", daemon=True)

    def start(self) -> None:
        """Write the first beat now, then keep beating in the background."""
        self._beat()
        self._thread.start()

    def holding(self, task_id: str | None, image_ids: list[int] | None) -> None:
        """Record the task in hand (None, None when idle) and write it at once."""
        self._task = (task_id, image_ids)
        self._wake.set()

    def stop(self) -> None:
        """Stop beating and remove the row: a worker that stops cleanly holds nothing."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        try:
            with self.db.session() as session:
                forget_workers(session, [self.name])
                session.commit()
        except Exception as exc:  # the database may be down at shutdown; the row then ages out
            log.warning("could not remove the heartbeat of %s: %s", self.name, exc)

    def _beat(self) -> None:
        task_id, ids = self._task
        try:
            with self.db.session() as session:
                record_beat(session, name=self.name, pid=os.getpid(), task_id=task_id, image_ids=ids)
                session.commit()
        except Exception as exc:  # a database outage must not end the worker; beats resume after
            log.warning("heartbeat not written: %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_s)
            self._wake.clear()
            if not self._stop.is_set():
                self._beat()
