"""Read-only PostgreSQL replicas (DATABASE_READ_URL): which one may answer a read now.

Each replica is checked every few seconds, in the request that finds the last check stale:
one that does not answer within a short connect timeout, is not in recovery, or has fallen
further behind the primary than CLIPSEEK_REPLICA_MAX_LAG seconds is skipped until a later
check finds it well again. A read that must see a given write (its author's next pages) goes
only to a replica that has replayed past that write's WAL position, or else to the primary.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

# How old a replica's last check may be before a read asks again.
CHECK_EVERY_S = 2.0
# A replica that does not accept a connection in this long counts as down.
CONNECT_TIMEOUT_S = 2
# Primary WAL positions remembered to tell how far behind a replica is, in seconds.
_HISTORY = 512


class ReplicaHealth(StrEnum):
    """What the last check found."""

    UNCHECKED = "unchecked"
    UP = "up"
    LAGGING = "lagging"
    DOWN = "down"


def parse_lsn(lsn: str) -> int:
    """A WAL position as PostgreSQL writes it ("16/B374D848") as one comparable number."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class ReplicaState:
    """One replica as the last check saw it (what the status page, `clipseek status` and
    /api/status show)."""

    name: str
    health: ReplicaHealth
    # Seconds behind the primary (an upper bound, to within one check), and WAL bytes behind.
    lag_s: float | None = None
    lag_bytes: int | None = None
    replay_lsn: int | None = None
    error: str | None = None
    checked_at: float | None = None

    @property
    def usable(self) -> bool:
        """Whether reads may go to it."""
        return self.health is ReplicaHealth.UP

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"name": self.name, "state": self.health.value,
                "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
                "lag_bytes": self.lag_bytes, "error": self.error}

    def summary(self) -> str:
        """One line for people: the replica, its state and its lag."""
        if self.health is ReplicaHealth.DOWN:
            return f"{self.name}: down ({self.error})"
        if self.lag_s is None:
            return f"{self.name}: {self.health.value}"
        return (f"{self.name}: {self.health.value}, {self.lag_s:.1f} s "
                f"({self.lag_bytes or 0:,} bytes) behind the primary")


class Replica:
    """One replica's engine, its sessions and its last known state."""

    def __init__(self, url: str) -> None:
        # A short connect timeout: a replica host that vanished must not hold a request long.
        self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                    connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        # Where it is, without who logs in: the status page shows it.
        where = self.engine.url.host or str(self.engine.url.query.get("host", ""))
        self.name = f"{where}:{self.engine.url.port or 5432}/{self.engine.url.database}"
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.state = ReplicaState(self.name, ReplicaHealth.UNCHECKED)


class ReplicaSet:
    """The replicas of one primary, taken in turn among those that are up."""

    def __init__(self, urls: list[str], primary: Engine, *, max_lag_s: float,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self.replicas = [Replica(url) for url in urls]
        self.max_lag_s = max_lag_s
        self.check_every_s = check_every_s
        self._primary = primary
        self._turn = itertools.count()
        self._checking = threading.Lock()
        self._checked_at = float("-inf")
        # (monotonic time, primary WAL position then), oldest first.
        self._history: deque[tuple[float, int]] = deque(maxlen=_HISTORY)

    def read_session(self, *, after_lsn: int | None = None) -> Session | None:
        """A session on a replica that is up (and has replayed past `after_lsn`), or None."""
        self.refresh_if_due()
        usable = [r for r in self.replicas if r.state.usable and
                  (after_lsn is None or (r.state.replay_lsn or 0) >= after_lsn)]
        if not usable:
            return None
        replica = usable[next(self._turn) % len(usable)]
        session = replica.sessions()
        session.info["replica"] = replica
        return session

    def mark_down(self, replica: Replica, error: BaseException | str) -> None:
        """Skip a replica that just failed a read, until a later check finds it answering."""
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        replica.state = ReplicaState(replica.name, ReplicaHealth.DOWN, error=reason,
                                     checked_at=time.monotonic())
        # Its pool is left as it is: other requests may hold its connections, and the pool's
        # ping replaces every dead one when the replica is used again.

    def states(self) -> list[ReplicaState]:
        """Every replica's state, checked again if the last check is stale."""
        self.refresh_if_due()
        return [r.state for r in self.replicas]

    def refresh_if_due(self) -> None:
        """Check the replicas if the last check is older than `check_every_s`.

        One request checks while the others go on with the states found last time.
        """
        if time.monotonic() - self._checked_at < self.check_every_s:
            return
        if not self._checking.acquire(blocking=False):
            return
        try:
            self.refresh()
        finally:
            self._checking.release()

    def refresh(self) -> None:
        """Check every replica now: reachable, in recovery, and how far behind the primary."""
        now = time.monotonic()
        self._checked_at = now
        try:
            with self._primary.connect() as conn:
                row = conn.execute(text("SELECT pg_current_wal_flush_lsn()::text, "
                                        "extract(epoch FROM clock_timestamp())")).one()
            primary_lsn, primary_clock = parse_lsn(row[0]), float(row[1])
        except SQLAlchemyError:
            # Without the primary's position no lag can be told; the states stay as they were.
            return
        self._history.append((now, primary_lsn))
        for replica in self.replicas:
            replica.state = self._check(replica, primary_lsn, primary_clock, now)

    def _check(self, replica: Replica, primary_lsn: int, primary_clock: float,
               now: float) -> ReplicaState:
        try:
            with replica.engine.connect() as conn:
                conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"),
                             {"ms": str(CONNECT_TIMEOUT_S * 1000)})
                row = conn.execute(text(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                    "extract(epoch FROM pg_last_xact_replay_timestamp())")).one()
                conn.rollback()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            return ReplicaState(replica.name, ReplicaHealth.DOWN, error=reason, checked_at=now)
        in_recovery, replay, replayed_commit_at = row
        if not in_recovery or replay is None:
            # A promoted replica takes writes of its own: what it holds may differ from the primary.
            return ReplicaState(replica.name, ReplicaHealth.DOWN, checked_at=now,
                                error="not a streaming replica (promoted, or not replaying WAL)")
        replay_lsn = parse_lsn(replay)
        lag_bytes = max(0, primary_lsn - replay_lsn)
        lag_s = self._lag_seconds(replay_lsn, primary_lsn, now,
                                  None if replayed_commit_at is None
                                  else primary_clock - float(replayed_commit_at))
        health = ReplicaHealth.UP if lag_s <= self.max_lag_s else ReplicaHealth.LAGGING
        return ReplicaState(replica.name, health, lag_s=lag_s, lag_bytes=lag_bytes,
                            replay_lsn=replay_lsn, checked_at=now)

    def _lag_seconds(self, replay_lsn: int, primary_lsn: int, now: float,
                     since_commit: float | None) -> float:
        """How long ago the primary stood where the replica stands now (an upper bound).

        Two bounds, the smaller kept: the last check at which the primary had written no
        more than the replica has replayed, and the age of the last transaction replayed
        (by the primary's clock, so no clocks are compared; on its own it would be far too
        high after a long quiet spell).
        """
        if replay_lsn >= primary_lsn:
            return 0.0
        bounds = [now - at for at, lsn in self._history if lsn <= replay_lsn]
        if since_commit is not None:
            bounds.append(max(0.0, since_commit))
        if not bounds:
            # Behind every position seen since this process started.
            bounds.append(now - self._history[0][0])
        return min(bounds)

    def close(self) -> None:
        """Release every replica's pooled connections."""
        for replica in self.replicas:
            replica.engine.dispose()
