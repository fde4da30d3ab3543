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

from clipseek.accounts import NO_ACCOUNT, accounts_required
from clipseek.clip.checkpoint import checkpoint_path
from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.settings import Settings
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.upkeep.status import count_pending

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


def new_embedded_database(settings: Settings) -> bool:
    """Whether the database is the embedded one and has not been created yet (a new home)."""
    return not settings.database_url and not (settings.pgdata / "PG_VERSION").exists()


def refuse_before_starting(settings: Settings, encoder: ClipEncoder) -> None:
    """The refusals a new home can give before any server starts: no account, no weights.

    A new embedded database has no account and will serve `encoder`'s model (CLIPSEEK_MODEL),
    so neither answer needs PostgreSQL: creating it and starting Redis only to refuse would
    cost seconds, and leave a data folder behind. An existing database is asked after it starts.
    """
    if not new_embedded_database(settings):
        return
    if accounts_required(settings) and settings.admin_password is None:
        raise ClipSeekError(NO_ACCOUNT)
    if not encoder.is_random:
        checkpoint_path(encoder.policy)  # raises, in one sentence, where the weights are missing


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


# How long after the web server starts listening its worker starts at the latest: the first
# search comes first (the worker's start, PyTorch and the model again, is seconds of CPU).
WORKER_AFTER_S = 5.0
# How long after that the precision measurement starts at the latest (see `measure_later`).
MEASURE_AFTER_S = 120.0


class StartLater:
    """Starts a child process from a thread once `ready()` holds, or after `at_most_s` in any case.

    `clipseek up` answers its first search sooner when what it does not need for it (the
    worker's start, the precision measurement) waits: on two cores every process started
    beside the web server's own start takes the CPU that start needs.
    """

    def __init__(self, start: Callable[[], subprocess.Popen[bytes] | None], ready: Callable[[], bool], *,
                 at_most_s: float, every_s: float = 0.5,
                 on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
                 name: str = "clipseek-start-later") -> None:
        self.start_child = start
        self.ready = ready
        self.at_most_s = at_most_s
        self.every_s = every_s
        self.on_start = on_start
        self.process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Begin waiting for the moment to start the child."""
        self._thread.start()

    def stop(self) -> None:
        """Stop waiting (the child, if it started, is the caller's to stop)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.at_most_s
        while not self._stop.wait(self.every_s):
            try:
                due = time.monotonic() >= deadline or self.ready()
            except Exception:  # a database restarting, say: the deadline still comes
                due = time.monotonic() >= deadline
            if due:
                self.process = self.start_child()
                if self.process is not None and self.on_start is not None:
                    self.on_start(self.process)
                # The child's death signal is armed for the thread that started it (Linux's
                # PR_SET_PDEATHSIG): this one lives on until `stop`.
                self._stop.wait()
                return


def searched(ctx: Context) -> bool:
    """Whether this process has answered a search (embedded a query) since it started."""
    return ctx.encoder.queries_embedded > 0


def nothing_to_index(ctx: Context) -> bool:
    """Whether no picture waits for a worker (registered or queued)."""
    with ctx.db.session() as session:
        return count_pending(session) == 0


def worker_later(ctx: Context, on_start: Callable[[subprocess.Popen[bytes]], None]) -> StartLater:
    """The worker, started once the first search is answered or WORKER_AFTER_S after serving began."""
    return StartLater(start_worker, lambda: searched(ctx), at_most_s=WORKER_AFTER_S, on_start=on_start,
                      name="clipseek-worker-later")


def measure_later(ctx: Context) -> StartLater:
    """The precision measurement (`start_measuring`), once the start is over.

    Measuring exports a tower and times every precision: even at the lowest priority it takes
    memory, disk and whatever CPU the start leaves. So it waits until the first search has been
    answered or nothing waits to be indexed (the worker is idle), and starts MEASURE_AFTER_S
    after serving began in any case, so that a large first import is not all indexed in the
    slower safe precision.
    """
    def start() -> subprocess.Popen[bytes] | None:
        return start_measuring() if ctx.encoder.precision_pending else None

    return StartLater(start, lambda: searched(ctx) or nothing_to_index(ctx), at_most_s=MEASURE_AFTER_S,
                      every_s=1.0, name="clipseek-measure-later")


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

    def adopt_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """Watch this worker from now on (started after the watchdog was)."""
        self._last_worker_start = time.monotonic()
        self.worker = worker

    def stop(self) -> None:
        """Stop watching (before the servers are stopped on purpose)."""
        self._stop.set()
        if self._thread.is_alive():
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


def serve_until_stopped(ctx: Context, host: str, port: int, say: Say, *,
                        on_serving: Callable[[], None] | None = None) -> None:
    """Run the web server in this process until SIGINT or SIGTERM; `on_serving` once it listens."""
    from werkzeug.serving import make_server

    from webapp import create_app

    server = make_server(host, port, create_app(settings=ctx.settings, context=ctx), threaded=True)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        say(f"ClipSeek is running at http://{host}:{port}/  (Ctrl-C stops everything)")
        if on_serving is not None:
            on_serving()
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
