"""`clipseek up`: the database, the broker, a worker and the web server, started and stopped together."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.settings import Settings
from clipseek.store.embedded_db import EmbeddedPostgres

Say = Callable[[str], None]
EmbeddedServer = EmbeddedPostgres | EmbeddedRedis


def embedded_servers(settings: Settings) -> list[EmbeddedServer]:
    """The embedded servers these settings use: PostgreSQL unless DATABASE_URL, Redis unless REDIS_URL."""
    servers: list[EmbeddedServer] = []
    if not settings.database_url:
        servers.append(EmbeddedPostgres(settings.pgdata))
    if not settings.redis_url:
        servers.append(EmbeddedRedis(settings.redis_folder))
    return servers


def server_name(server: EmbeddedServer) -> str:
    """What a person calls the server: PostgreSQL or Redis."""
    return "PostgreSQL" if isinstance(server, EmbeddedPostgres) else "Redis"


def check_port_free(host: str, port: int) -> None:
    """Raise a readable error if something already listens on host:port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ClipSeekError(f"Port {port} on {host} is in use: stop what runs there, or choose "
                                "another port with --port or CLIPSEEK_PORT.") from None


class Services:
    """Embedded servers this process started, so that it stops exactly those."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.started: list[EmbeddedPostgres | EmbeddedRedis] = []
        self.embedded: list[EmbeddedPostgres | EmbeddedRedis] = []

    def start(self, say: Say) -> None:
        """Start (or reuse) the embedded PostgreSQL and Redis unless URLs point elsewhere."""
        settings = self.ctx.settings
        if not settings.database_url:
            pg = EmbeddedPostgres(settings.pgdata, say=say)
            self.embedded.append(pg)
            if not pg.is_running():
                self.started.append(pg)
            pg.ensure_running()  # here, so that what it has to say reaches the terminal
            say(f"PostgreSQL: embedded, in {settings.pgdata}")
        else:
            say("PostgreSQL: DATABASE_URL")
        self.ctx.db.ping()
        if not settings.redis_url:
            redis = EmbeddedRedis(settings.redis_folder)
            self.embedded.append(redis)
            if not redis.is_running():
                self.started.append(redis)
            redis.ensure_running()
            say(f"Redis: embedded, in {settings.redis_folder}")
        else:
            say("Redis: REDIS_URL")

    def stop(self) -> None:
        """Stop the servers this process started (newest first)."""
        self.ctx.close()
        for server in reversed(self.started):
            with contextlib.suppress(ClipSeekError):
                server.stop()


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec function: the child gets SIGTERM (a warm shutdown) when its parent dies.

    Without it a SIGKILLed `clipseek up` would leave its worker running, and a second start
    would add another one.
    """
    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
    return arm


def start_worker() -> subprocess.Popen[bytes]:
    """A `clipseek worker --beat` child process with this process's environment.

    `up` measures the precisions itself (`start_measuring`), so its worker does not.
    """
    return subprocess.Popen([sys.executable, "-m", "clipseek", "worker", "--beat", "--no-measure",
                             "--loglevel", "WARNING"], preexec_fn=_die_with_parent(os.getpid()))


def _spare_time(parent: int) -> Callable[[], None]:
    """A preexec function: the lowest CPU priority, and SIGTERM when the parent dies."""
    arm = _die_with_parent(parent)

    def lower() -> None:
        os.nice(19)
        arm()
    return lower


def start_measuring() -> subprocess.Popen[bytes]:
    """A `clipseek measure-precision` child on one thread at the lowest priority.

    It measures the precisions while searches are already answered in the safe one, taking
    only the CPU they leave (one core at most), and exits when the choice is remembered or
    when another process is already measuring.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "clipseek", "measure-precision"], env=env,
                            preexec_fn=_spare_time(os.getpid()))


class Watchdog:
    """Restarts what `clipseek up` depends on when it dies: the embedded servers and the worker.

    Checks every `every_s` seconds in a thread; a worker that keeps dying is restarted at
    most once every `worker_backoff_s` seconds.
    """

    def __init__(self, servers: list[EmbeddedPostgres | EmbeddedRedis], say: Say, *,
                 worker: subprocess.Popen[bytes] | None = None, every_s: float = 2.0,
                 worker_backoff_s: float = 10.0) -> None:
        self.servers = servers
        self.worker = worker
        self.say = say
        self.every_s = every_s
        self.worker_backoff_s = worker_backoff_s
        self._last_worker_start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipseek-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the servers are stopped on purpose)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        """One round: restart whatever died."""
        for server in self.servers:
            if not server.is_running() and not self._stop.is_set():
                name = server_name(server)
                self.say(f"The embedded {name} stopped; starting it again.")
                try:
                    server.ensure_running()
                    self.say(f"The embedded {name} is running again.")
                except ClipSeekError as exc:
                    self.say(f"The embedded {name} could not be started again: {exc}")
        worker = self.worker
        # Exit status 0 is a warm shutdown someone asked for (Ctrl-C reaches the whole process
        # group): only a worker that crashed or was killed is replaced.
        if (worker is not None and worker.poll() is not None and worker.returncode != 0
                and not self._stop.is_set()
                and time.monotonic() - self._last_worker_start >= self.worker_backoff_s):
            self.say(f"The worker stopped (exit status {worker.returncode}); starting another.")
            self._last_worker_start = time.monotonic()
            self.worker = start_worker()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except Exception as exc:  # the watchdog itself must keep watching
                self.say(f"Watchdog: {exc}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Ask a child to stop (SIGTERM: Celery's warm shutdown), kill it if it does not."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_until_stopped(ctx: Context, host: str, port: int, say: Say) -> None:
    """Run the web server in this process until SIGINT or SIGTERM."""
    from werkzeug.serving import make_server

    from webapp import create_app

    server = make_server(host, port, create_app(settings=ctx.settings), threaded=True)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        say(f"ClipSeek is running at http://{host}:{port}/  (Ctrl-C stops everything)")
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
