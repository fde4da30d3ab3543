"""Background indexing through real Celery workers on a real Redis, including the faults."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image as PILImage
from sqlalchemy import func, select

from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.library.register import Candidate, stored_path
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.tables import Embedding, Image
from tests.images import write_bad_files
from tests.waiting import wait_for
from tests.workers import WorkerProcess

GOOD = 30


@pytest.fixture
def worker_env(cli_env: dict[str, str], redis_url: str) -> dict[str, str]:
    # Small batches so that a fault lands mid-run; a short visibility timeout so that the
    # batch of a killed worker is handed out again within seconds, not minutes.
    return cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4",
                      "CLIPSEEK_VISIBILITY_TIMEOUT": "5"}


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*, beat: bool = False, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(env or worker_env, tmp_path / f"worker-{len(started)}.log", beat=beat)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def photo_folder(tmp_path: Path, sample_photos: list[Candidate]) -> Path:
    """30 distinct real photos (the 22 samples plus 8 crops of them) and 3 bad files."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for c in sample_photos:
        shutil.copy(c.path, folder)
    for n, c in enumerate(sample_photos[:8]):
        with PILImage.open(c.path) as img:
            w, h = img.size
            img.convert("RGB").crop((w // 8, h // 8, w - w // 8, h - h // 8)).save(folder / f"crop{n}.jpg")
    write_bad_files(folder / "bad", sample_photos[0].path)
    del_empty = folder / "bad" / "empty.jpg"  # keep three bad kinds: text, garbage, truncated
    del_empty.unlink()
    return folder


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["clipseek", *args], env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _count(db: Database, *conditions: object) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Image).where(*conditions)) or 0)  # type: ignore[arg-type]


def _assert_all_indexed_once(db: Database) -> None:
    with db.session() as s:
        images = s.scalars(select(Image).where(Image.status != "failed")).all()
        embeddings = s.scalar(select(func.count()).select_from(Embedding))
        failed = s.scalars(select(Image).where(Image.status == "failed")).all()
    assert len(images) == GOOD and embeddings == GOOD
    assert all(i.status == "indexed" for i in images)
    # attempts counts recorded outcomes: 1 means no image was embedded twice
    assert sorted({i.attempts for i in images}) == [1]
    assert sorted(Path(f.path).name for f in failed) == ["garbage.png", "notes.jpg", "truncated.jpg"]
    assert all(f.error for f in failed)


def test_worker_indexes_good_images_once_and_fails_bad_ones(
    worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], photo_folder: Path,
    db: Database,
) -> None:
    start_worker()
    out = _cli(worker_env, "ingest", str(photo_folder), "--wait", "--no-progress", "--timeout", "240")
    assert "Queued 31 image(s)" in out.stdout  # two files were unreadable at registration
    assert "Done: 30 indexed, 1 failed." in out.stdout  # the truncated JPEG fails at decode time
    assert "No worker is running" not in out.stderr
    _assert_all_indexed_once(db)
    status = json.loads(_cli(worker_env, "status", "--json").stdout)
    assert status["by_status"] == {"registered": 0, "queued": 0, "indexed": GOOD, "failed": 3,
                                   "missing": 0}
    assert status["queue_depth"] == 0 and len(status["workers"]) == 1
    assert {f["path"].rsplit("/", 1)[1] for f in status["recent_failures"]} == {
        "garbage.png", "notes.jpg", "truncated.jpg"}


def _recovery_time(what: str, seconds: float) -> None:
    # Kept for the closing report of a drill; the bound itself is the _wait_for timeout.
    print(f"recovery: {what}: {seconds:.1f} s")


@pytest.mark.slow
def test_worker_killed_mid_batch_is_recovered_long_before_the_visibility_timeout(
    worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], photo_folder: Path,
    db: Database,
) -> None:
    # The default visibility timeout (600 s): only the heartbeats can bring the batch back in time.
    env = worker_env | {"CLIPSEEK_VISIBILITY_TIMEOUT": "600"}
    out = _cli(env, "ingest", str(photo_folder), "--no-progress")
    assert "Queued 31 image(s)" in out.stdout
    assert _count(db, Image.status == "queued") == 31
    first = start_worker(env=env)
    wait_for(lambda: _count(db, Image.status == "indexed") >= 4, 180, "a first batch")
    first.kill()
    killed = time.monotonic()
    assert _count(db, Image.status == "indexed") < GOOD, "the kill came too late to test anything"
    start_worker(env=env, beat=True)
    wait_for(lambda: _count(db, Image.status.in_(("queued", "registered"))) == 0, 60,
              "the killed worker's images to be indexed by the other one")
    _recovery_time("worker SIGKILLed mid-batch", time.monotonic() - killed)
    _assert_all_indexed_once(db)


@pytest.mark.slow
def test_flushed_queue_is_recovered_at_once_by_reindex_stale(
    worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], photo_folder: Path,
    db: Database, redis_url: str,
) -> None:
    _cli(worker_env, "ingest", str(photo_folder), "--no-progress")
    client = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://"))
    assert client.llen("clipseek") > 0
    client.flushall()  # Redis lost its queue
    client.close()
    start_worker()
    time.sleep(2)
    assert _count(db, Image.status == "indexed") == 0  # nothing left to tell the worker
    # The advice printed when the queue is unreachable, taken as it is: no --older-than.
    out = _cli(worker_env, "reindex", "--stale", "--wait")
    assert "Queued 31 image(s)" in out.stdout
    _assert_all_indexed_once(db)
    again = _cli(worker_env, "reindex", "--stale")
    assert "Queued 0 image(s)" in again.stdout  # nothing is lost now: nothing is sent twice


@pytest.mark.slow
def test_batch_survives_an_immediate_database_stop(
    worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], photo_folder: Path,
    db: Database, pg_server: EmbeddedPostgres,
) -> None:
    worker = start_worker(beat=True)
    _cli(worker_env, "ingest", str(photo_folder), "--no-progress")
    wait_for(lambda: _count(db, Image.status == "indexed") >= 4, 180, "a first batch")
    pg_server.stop(mode="immediate")  # no clean shutdown: crash recovery at the next start
    try:
        time.sleep(3)  # the worker's next write fails and its task is retried with backoff
    finally:
        pg_server.ensure_running()
    back = time.monotonic()
    db.engine.dispose()
    wait_for(lambda: _count(db, Image.status.in_(("queued", "registered"))) == 0, 60,
              "the batch to be retried")
    _recovery_time("PostgreSQL stopped -m immediate mid-indexing", time.monotonic() - back)
    _assert_all_indexed_once(db)
    assert "retry: Retry in" in worker.log.read_text()  # the outage was felt, and survived


@pytest.mark.slow
def test_redis_killed_mid_indexing_and_its_queue_lost_is_recovered(
    worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], photo_folder: Path,
    db: Database, tmp_path: Path,
) -> None:
    broker = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="clipseek-drill-", dir="/tmp")))
    env = worker_env | {"REDIS_URL": broker.ensure_running()}
    try:
        start_worker(env=env, beat=True)
        _cli(env, "ingest", str(photo_folder), "--no-progress")
        wait_for(lambda: _count(db, Image.status == "indexed") >= 4, 180, "a first batch")
        os.kill(int(broker.pidfile.read_text()), signal.SIGKILL)
        shutil.rmtree(broker.folder / "appendonlydir", ignore_errors=True)  # and its queue with it
        assert _count(db, Image.status == "indexed") < GOOD, "the kill came too late to test anything"
        time.sleep(3)
        broker.ensure_running()
        back = time.monotonic()
        wait_for(lambda: _count(db, Image.status.in_(("queued", "registered"))) == 0, 60,
                  "the lost queue to be refilled and indexed")
        _recovery_time("Redis SIGKILLed mid-indexing, queue lost", time.monotonic() - back)
        _assert_all_indexed_once(db)
    finally:
        broker.stop()
        shutil.rmtree(broker.folder, ignore_errors=True)


def test_unreachable_queue_keeps_images_registered_and_says_what_to_do(
    cli_env: dict[str, str], photo_folder: Path, db: Database, tmp_path: Path,
) -> None:
    env = cli_env | {"REDIS_URL": f"redis+socket://{tmp_path}/nothing.sock"}
    result = subprocess.run(["clipseek", "ingest", str(photo_folder), "--no-progress"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "reindex --stale" in result.stderr
    assert _count(db) == 33  # registered, nothing lost


@pytest.mark.slow
def test_a_worker_with_beat_requeues_a_lost_queue_by_itself(
    worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], photo_folder: Path,
    db: Database, redis_url: str,
) -> None:
    _cli(worker_env, "ingest", str(photo_folder), "--no-progress")
    client = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://"))
    client.flushall()  # the queue is lost; the rows stay queued
    client.close()
    lost = time.monotonic()
    worker = start_worker(beat=True)
    # Minutes at most, where the broker's visibility timeout is an hour: on a busy 2-core
    # machine the worker's start alone (PyTorch, the model) can take most of a minute.
    wait_for(lambda: _count(db, Image.status.in_(("queued", "registered"))) == 0, 180,
              "the scheduler to queue the lost images again and the worker to index them")
    _recovery_time("queue flushed", time.monotonic() - lost)
    _assert_all_indexed_once(db)
    assert "queued 31 lost image(s) again" in worker.log.read_text()


@pytest.mark.slow
def test_a_starting_worker_registers_and_indexes_files_a_killed_upload_left(
    start_worker: Callable[..., WorkerProcess], db: Database, settings: Settings,
    sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    data = sample_photos[0].path.read_bytes()
    left = stored_path(settings.image_store, hashlib.sha256(data).hexdigest(), ".jpg")
    left.parent.mkdir(parents=True)
    left.write_bytes(data)
    temporary = settings.image_store / ".incoming" / "tmp0001.upload"
    temporary.parent.mkdir()
    temporary.write_bytes(data[:100])
    hours_ago = time.time() - 7200
    for path in (left, temporary):
        os.utime(path, (hours_ago, hours_ago))
    start_worker()
    wait_for(lambda: _count(db, Image.status == "indexed") == 1, 120, "the recovered file to be indexed")
    with db.session() as s:
        assert s.scalars(select(Image.path)).all() == [str(left)]
    assert not temporary.exists()
    assert "without a row" in (tmp_path / "worker-0.log").read_text()
