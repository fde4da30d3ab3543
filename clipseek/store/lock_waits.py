"""Waiting on another session (a lock, an old transaction) that says whom it waits for.

A sync that waits for a folder lock, or a model's index build that waits for old
transactions, would otherwise hang without a word for as long as the other session lasts.
These report the other sessions (pid, login, program, since when) after a few seconds, on
the `clipseek.store.lock_waits` logger that the command line prints, and keep waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Long enough that an ordinary wait (another sync finishing) stays quiet.
REPORT_AFTER_S = 2.0
REPEAT_EVERY_S = 30.0
_LOCK_NOT_AVAILABLE = "55P03"


def describe_sessions(session: Session | Engine, pids: list[int]) -> str:
    """One line per session in `pids`: its pid, login, program and what it has done since when."""
    query = text("""
        SELECT a.pid, a.usename, a.application_name, a.state,
               to_char(coalesce(a.xact_start, a.backend_start), 'YYYY-MM-DD HH24:MI:SS TZ')
        FROM pg_stat_activity a WHERE a.pid = ANY(:pids) ORDER BY a.pid""")
    if isinstance(session, Engine):
        with session.connect() as conn:
            rows = conn.execute(query, {"pids": pids}).all()
    else:
        rows = session.execute(query, {"pids": pids}).all()
    found = {int(row[0]): row for row in rows}
    lines = []
    for pid in pids:
        row = found.get(pid)
        if row is None:
            lines.append(f"pid {pid} (gone, or not visible to this login)")
            continue
        _, login, program, state, since = row
        lines.append(f"pid {pid}, login {login}" + (f", program {program!r}" if program else "")
                     + (f", {state}" if state else "") + (f" since {since}" if since else ""))
    return "; ".join(lines)


def advisory_holders(session: Session, key: int) -> list[int]:
    """The pids of the other sessions that hold the advisory lock `key` (a bigint key)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return [int(pid) for pid in session.scalars(text("""
        SELECT l.pid FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = :high AND l.objid::bigint = :low AND l.pid <> pg_backend_pid()
        ORDER BY l.pid"""), {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF})]


def take_advisory_xact_lock(session: Session, key: int, *, shared: bool, what: str,
                            report_after_s: float = REPORT_AFTER_S) -> None:
    """Take the transaction-level advisory lock `key`, waiting as long as it takes, and say
    after `report_after_s` (and every half minute after that) which sessions hold it.
    """
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    started = time.monotonic()
    wait_s = report_after_s
    previous = session.scalar(text("SELECT current_setting('lock_timeout')"))
    while True:
        # A real wait (seen in pg_locks, woken at once), cut into rounds by lock_timeout; a
        # savepoint keeps the transaction usable after a round that ended without the lock.
        session.execute(text("SELECT set_config('lock_timeout', :ms, true)"),
                        {"ms": f"{max(1, int(wait_s * 1000))}ms"})
        try:
            with session.begin_nested():
                session.execute(text(f"SELECT {function}(:key)"), {"key": key})
            break
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
        holders = advisory_holders(session, key)
        log.warning("Waiting %.0f s for %s, held by %s.", time.monotonic() - started, what,
                    describe_sessions(session, holders) if holders else "a session that just ended")
        wait_s = REPEAT_EVERY_S
    session.execute(text("SELECT set_config('lock_timeout', :value, true)"), {"value": previous})


class BlockerReport:
    """While a statement runs on backend `pid`, says which sessions it waits for (if any).

    Watches from a connection of its own in a thread, since the waiting one is busy; use as
    a context manager around the statement.
    """

    def __init__(self, engine: Engine, pid: int, *, what: str,
                 report_after_s: float = REPORT_AFTER_S) -> None:
        self.engine = engine
        self.pid = pid
        self.what = what
        self.report_after_s = report_after_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="clipseek-blockers", daemon=True)

    def __enter__(self) -> BlockerReport:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        started = time.monotonic()
        if self._done.wait(self.report_after_s):
            return
        reported: set[int] = set()
        last = 0.0
        while not self._done.is_set():
            try:
                with self.engine.connect() as conn:
                    blockers = [int(p) for p in conn.scalar(
                        text("SELECT pg_blocking_pids(:pid)"), {"pid": self.pid}) or []]
                if blockers and (set(blockers) != reported or time.monotonic() - last > REPEAT_EVERY_S):
                    log.warning("%s has waited %.0f s for %s.", self.what, time.monotonic() - started,
                                describe_sessions(self.engine, blockers))
                    reported, last = set(blockers), time.monotonic()
            except Exception as exc:  # a report is a courtesy: it must never end the build
                log.debug("could not look at what %s waits for: %s", self.what, exc)
            self._done.wait(1.0)
