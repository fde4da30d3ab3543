"""Faults around the web app and the processes: a hung broker, dead parents, two schedulers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.upkeep.recovery import SCHEDULER_LOCK
from tests.httpserver import serve_app
from tests.waiting import wait_for
from tests.workers import WorkerProcess


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def hung_broker() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a broker that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_a_burst_of_status_requests_against_a_hung_broker_leaves_search_working(
    settings: Settings, db: Database, hung_broker: str
) -> None:
    with serve_app(settings.with_changes(redis_url=hung_broker)) as port, \
            ThreadPoolExecutor(max_workers=64) as pool:
        base = f"http://127.0.0.1:{port}"
        statuses = [pool.submit(_get, f"{base}/api/status", 60) for _ in range(64)]
        time.sleep(0.5)  # the burst is in flight
        # Before: every status request held a database connection while it waited on the
        # broker, the pool ran dry, and this page failed after 30 s.
        code, body = _get(f"{base}/", timeout=15)
        assert code == 200 and b'role="search"' in body
        answers = [f.result(timeout=60) for f in statuses]
    assert all(code == 200 for code, _ in answers)
    assert all(b'"queue_depth":null' in body.replace(b" ", b"") for _, body in answers)


def _advisory_holders(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = :hi AND objid = :lo"),
            {"hi": SCHEDULER_LOCK >> 32, "lo": SCHEDULER_LOCK & 0xFFFFFFFF}) or 0)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in found.stdout.split()]


@pytest.mark.slow
def test_workers_with_beat_elect_one_scheduler_and_leave_no_process_behind(
    cli_env: dict[str, str], redis_url: str, db: Database, tmp_path: Path
) -> None:
    env = cli_env | {"REDIS_URL": redis_url}
    first = WorkerProcess(env, tmp_path / "first.log", beat=True)
    second = WorkerProcess(env, tmp_path / "second.log", beat=True)
    try:
        first.wait_ready()
        second.wait_ready()
        wait_for(lambda: _advisory_holders(db) == 1, 30, "a scheduler to take the lock")
        time.sleep(2)
        assert _advisory_holders(db) == 1  # never two
        # The scheduler is a thread: no process of its own to outlive the worker.
        assert _children(first.process.pid) == [] and _children(second.process.pid) == []
        leader, other = (first, second) if "now runs the recovery" in first.log.read_text() \
            else (second, first)
        leader.kill()
        wait_for(lambda: "now runs the recovery" in other.log.read_text(), 30,
                  "the other worker to take over the checks")
        assert _advisory_holders(db) == 1
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_clipseek_up_restarts_what_dies_and_its_worker_dies_with_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    home = Path(cli_env["CLIPSEEK_HOME"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "up.log"
    env = {k: v for k, v in cli_env.items() if k != "REDIS_URL"}  # its own embedded Redis
    with open(log, "w") as out:
        up = subprocess.Popen(["clipseek", "up", "--port", str(port), "--no-samples"], env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    redis_server = EmbeddedRedis(home / "redis")
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/api/status", 5)[0] == 200
                  if "ClipSeek is running" in log.read_text() else False, 120, "clipseek up")
        wait_for(lambda: len(_children(up.pid)) == 1, 30, "the worker")
        (worker,) = _children(up.pid)

        pid = int(redis_server.pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        # The watchdog, or the worker's next call to the broker, starts it again.
        wait_for(lambda: redis_server.is_running() and int(redis_server.pidfile.read_text()) != pid,
                  30, "Redis to run again")
        code, body = _get(f"http://127.0.0.1:{port}/api/status", 10)
        assert code == 200 and b'"queue_depth":0' in body.replace(b" ", b"")

        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        # Before: the worker went on running without its parent.
        wait_for(lambda: not Path(f"/proc/{worker}").exists(), 60, "the orphaned worker to stop")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        redis_server.stop()


@pytest.mark.slow
def test_the_watchdog_starts_dead_servers_again(tmp_path: Path) -> None:
    from clipseek.cli.launcher import Watchdog
    from clipseek.store.embedded_db import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="clipseek-watch-", dir="/tmp"))
    pg, broker = EmbeddedPostgres(folder / "pgdata"), EmbeddedRedis(folder / "redis")
    said: list[str] = []
    try:
        pg.ensure_running()
        broker.ensure_running()
        pg.stop(mode="immediate")
        os.kill(int(broker.pidfile.read_text()), signal.SIGKILL)
        wait_for(lambda: not broker.is_running(), 10, "Redis to die")
        stopped_on_purpose = subprocess.Popen(["true"])
        stopped_on_purpose.wait()
        watchdog = Watchdog([pg, broker], said.append, worker=stopped_on_purpose, worker_backoff_s=0)
        watchdog.check()
        assert pg.is_running() and broker.is_running()
        assert watchdog.worker is stopped_on_purpose  # a clean exit is not replaced
        assert "The embedded PostgreSQL is running again." in said
        assert "The embedded Redis is running again." in said
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "clipseekdrill"
    body = b""
    for name, data in files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                 f"filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.slow
def test_web_server_killed_mid_upload_leaves_no_file_without_a_row(
    cli_env: dict[str, str], redis_url: str, db: Database, settings: Settings,
    sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    import hashlib

    from sqlalchemy import func, select

    from clipseek.store.tables import Image

    env = cli_env | {"REDIS_URL": redis_url}
    first, second = (c.path.read_bytes() for c in sample_photos[:2])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        server = subprocess.Popen(["clipseek", "up", "--port", str(port), "--no-samples", "--no-worker"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    # Another session holds an uncommitted row with the second picture's hash: the upload
    # stores the first file, then waits on that row, with its own row not yet committed.
    blocker = db.engine.connect()
    try:
        wait_for(lambda: "ClipSeek is running" in log.read_text(), 120, "the web server")
        blocker.execute(text("INSERT INTO images (sha256, path, original_name, source, file_size) "
                             "VALUES (:sha, '/elsewhere.jpg', 'x.jpg', 'folder', 1)"),
                        {"sha": hashlib.sha256(second).hexdigest()})
        body, content_type = _multipart([("first.jpg", first), ("second.jpg", second)])
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/images", data=body, method="POST",
                                         headers={"Content-Type": content_type,
                                                  "X-Requested-With": "drill"})
        threading.Thread(target=lambda: _get_quietly(request), daemon=True).start()

        def stored() -> list[Path]:
            return list(settings.image_store.rglob("*.jpg"))

        wait_for(lambda: len(stored()) == 1, 30, "the first file to be placed in the store")
        server.kill()  # SIGKILL, mid-upload
        server.wait(timeout=10)
        killed = time.monotonic()
    finally:
        blocker.rollback()
        blocker.close()
        if server.poll() is None:
            server.kill()
            server.wait()
    (orphan,) = stored()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 0  # nothing was committed
    # The next start settles the store: the orphan is registered and its worker indexes it.
    with open(log, "a") as out:
        again = subprocess.Popen(["clipseek", "up", "--port", str(port), "--no-samples"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        def indexed() -> list[str]:
            with db.session() as s:
                return list(s.scalars(select(Image.path).where(Image.status == "indexed")))
        wait_for(lambda: indexed() == [str(orphan)], 120, "the orphan to be registered and indexed")
        print(f"recovery: web server SIGKILLed mid-upload: {time.monotonic() - killed:.1f} s "
              "(restart and model loading included)")
        assert not list((settings.image_store / ".incoming").glob("*"))
    finally:
        again.send_signal(signal.SIGINT)
        try:
            again.wait(timeout=60)
        except subprocess.TimeoutExpired:
            again.kill()
            again.wait()


def _get_quietly(request: urllib.request.Request) -> None:
    # The server dies under this request: no answer is the expected outcome.
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=60).close()
