"""`clipseek up`: the database, the broker, a worker and the web server, started and stopped together."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType

from clipseek.context import Context
from clipseek.embedded_db import EmbeddedPostgres
from clipseek.embedded_redis import EmbeddedRedis
from clipseek.errors import ClipSeekError

Say = Callable[[str], None]


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

    def start(self, say: Say) -> None:
        """Start (or reuse) the embedded PostgreSQL and Redis unless URLs point elsewhere."""
        settings = self.ctx.settings
        if not settings.database_url:
            pg = EmbeddedPostgres(settings.pgdata)
            if not pg.is_running():
                self.started.append(pg)
            say(f"PostgreSQL: embedded, in {settings.pgdata}")
        else:
            say("PostgreSQL: DATABASE_URL")
        self.ctx.db.ping()
        if not settings.redis_url:
            redis = EmbeddedRedis(settings.redis_folder)
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


def start_worker() -> subprocess.Popen[bytes]:
    """A `clipseek worker --beat` child process with this process's environment."""
    return subprocess.Popen([sys.executable, "-m", "clipseek", "worker", "--beat",
                             "--loglevel", "WARNING"])


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
