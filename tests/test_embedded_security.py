"""The embedded servers are private: no other local user reaches them, every login needs a password."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.store.embedded_db import APP_ROLE, PASSWORDS_FILE, EmbeddedPostgres
from clipseek.util.private_dir import UnsafeFolder, short_socket_dir

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another local user needs root")

# As another local user, reach the server's socket (the attack's first step). In Perl, which
# Debian always has: the Python that runs the tests may sit where that user cannot read.
_INTRUDER = """
use Socket;
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
if (connect($s, pack_sockaddr_un($ARGV[0]))) { print "CONNECTED\\n" } else { print "REFUSED $!\\n" }
"""


@pytest.fixture
def long_home() -> Iterator[Path]:
    """A data folder deep enough that its sockets cannot live in it, under a 0700 folder."""
    top = Path(tempfile.mkdtemp(prefix="clipseek-long-", dir="/tmp"))
    private = top / "private"
    private.mkdir(mode=0o700)
    home = private / ("a-rather-long-folder-name-for-a-photo-collection-" * 2) / "clipseek"
    assert len(str(home / "pgdata" / ".s.PGSQL.5432")) > 107
    yield home
    EmbeddedPostgres(home / "pgdata").stop()
    EmbeddedRedis(home / "redis").stop()
    shutil.rmtree(top, ignore_errors=True)


def _as_nobody(script: str, *args: str) -> str:
    result = subprocess.run(["runuser", "-u", "nobody", "--", "perl", "-e", script, *args],
                            capture_output=True, text=True, timeout=60, check=False, cwd="/")
    return result.stdout + result.stderr


@needs_root
def test_long_data_path_keeps_the_socket_private_and_logins_need_a_password(long_home: Path) -> None:
    said: list[str] = []
    server = EmbeddedPostgres(long_home / "pgdata", say=said.append)
    url = server.ensure_running()

    socket_dir = server.socket_dir
    assert socket_dir == short_socket_dir("pg", server.pgdata)
    info = socket_dir.lstat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == pwd.getpwnam("embedded_postgres").pw_uid
    # The 0700 folder above the data had to let the server's user through; that was said.
    private = long_home.parents[1]
    assert stat.S_IMODE(private.stat().st_mode) == 0o701
    assert any(str(private) in line and "0o" not in line for line in said), said

    intruder = _as_nobody(_INTRUDER, str(socket_dir / ".s.PGSQL.5432"))
    assert "REFUSED" in intruder and "CONNECTED" not in intruder, intruder
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=str(socket_dir), user="postgres", dbname="clipseek").close()

    passwords = server.pgdata.parent / PASSWORDS_FILE
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (APP_ROLE, False)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")


@needs_root
def test_redis_on_a_long_data_path_listens_on_a_whole_private_socket(long_home: Path) -> None:
    server = EmbeddedRedis(long_home / "redis")
    server.ensure_running()
    import redis

    client = redis.Redis(unix_socket_path=str(server.socket))
    assert client.ping()
    client.close()
    assert server.socket.name == "redis.sock" and server.socket.exists()
    assert stat.S_IMODE(server.socket.parent.stat().st_mode) == 0o700
    assert server.stop()
    assert not server.is_running()
    leftover = subprocess.run(["pgrep", "-f", str(long_home)], capture_output=True, check=False)
    assert leftover.returncode == 1, leftover.stdout


@needs_root
def test_a_socket_folder_prepared_by_someone_else_is_refused(long_home: Path) -> None:
    server = EmbeddedPostgres(long_home / "pgdata")
    trap = server.socket_dir
    trap.mkdir(mode=0o777)
    trap.chmod(0o777)
    nobody = pwd.getpwnam("nobody")
    os.chown(trap, nobody.pw_uid, nobody.pw_gid)
    try:
        with pytest.raises(UnsafeFolder, match="someone else made it"):
            server.ensure_running()
        assert not server.is_running()
    finally:
        trap.rmdir()


def test_an_older_trusting_server_is_secured_and_its_tables_handed_over(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="clipseek-old-", dir="/tmp"))
    server = EmbeddedPostgres(folder / "pgdata")
    try:
        server.ensure_running()
        with server.admin_connection("clipseek") as conn:
            conn.execute("CREATE TABLE made_by_an_older_version (id int)")
        server.stop()
        # What an older version left: trusted local logins and no password file.
        (server.pgdata / "pg_hba.conf").write_text("local all all trust\n")
        (folder / PASSWORDS_FILE).unlink()

        url = EmbeddedPostgres(folder / "pgdata").ensure_running()
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host=str(server.socket_dir), user="postgres", dbname="clipseek").close()
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = "
                                 "'made_by_an_older_version'").fetchone()
            assert owner == (APP_ROLE,)
            conn.execute("INSERT INTO made_by_an_older_version VALUES (1)")
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_lost_password_file_is_replaced_without_losing_data(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="clipseek-lost-", dir="/tmp"))
    server = EmbeddedPostgres(folder / "pgdata")
    try:
        first = server.ensure_running()
        with psycopg.connect(first.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        (folder / PASSWORDS_FILE).unlink()
        second = EmbeddedPostgres(folder / "pgdata").ensure_running()
        assert second != first
        with psycopg.connect(second.replace("postgresql+psycopg", "postgresql")) as conn:
            assert conn.execute("SELECT id FROM kept").fetchall() == [(7,)]
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
