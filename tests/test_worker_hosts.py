"""A worker on another host: its own CLIPSEEK_HOME, the same database and Redis, and the image
store mounted at the same path (here: the first home's store, read where it lies)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, Image, ImageStatus
from tests.waiting import wait_for
from tests.workers import WorkerProcess

PHOTOS = 8


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["clipseek", *args], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _indexed(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Image)
                                  .where(Image.status == ImageStatus.INDEXED)) or 0)


@pytest.mark.slow  # a worker process loads the model and indexes: about two minutes on 2 cores
def test_a_worker_with_its_own_home_indexes_the_first_hosts_images_exactly_once(
    cli_env: dict[str, str], redis_url: str, settings: Settings, db: Database,
    sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    first_host = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4"}
    folder = tmp_path / "import"
    folder.mkdir()
    for photo in sample_photos[:PHOTOS]:
        shutil.copy(photo.path, folder)
    # The first host copies the pictures into its store and queues them; no worker runs there.
    _cli(first_host, "ingest", str(folder), "--copy", "--no-progress")
    shutil.rmtree(folder)  # from now on the pictures are only in the first host's store
    other_home = tmp_path / "other-host"
    worker = WorkerProcess(first_host | {"CLIPSEEK_HOME": str(other_home)}, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        wait_for(lambda: _indexed(db) == PHOTOS, 240, "the other host's worker to index every picture")
        status = json.loads(_cli(first_host, "status", "--json"))
    finally:
        worker.stop()
    with db.session() as session:
        images = session.scalars(select(Image)).all()
        embeddings = session.execute(select(Embedding.image_id, Embedding.model)).all()
    assert len(images) == PHOTOS and all(i.status == ImageStatus.INDEXED for i in images)
    assert all(Path(i.path).is_relative_to(settings.image_store) for i in images)
    # One embedding per picture and model, each made at the first attempt.
    assert sorted(e.image_id for e in embeddings) == sorted(i.id for i in images)
    assert {i.attempts for i in images} == {1}
    # The first host sees the other host's worker by its heartbeat.
    assert len(status["workers"]) == 1 and status["queue_depth"] == 0
    assert not (other_home / "images").exists()


@pytest.mark.slow  # two worker processes in turn: minutes on 2 cores
def test_the_lost_batch_of_a_worker_killed_on_another_host_is_recovered_on_the_first(
    cli_env: dict[str, str], redis_url: str, db: Database, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    # The default visibility timeout: only the dead worker's heartbeat going stale brings its
    # batch back, found by a scheduler on the first host.
    first_host = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4"}
    folder = tmp_path / "import"
    folder.mkdir()
    for photo in sample_photos:
        shutil.copy(photo.path, folder)
    _cli(first_host, "ingest", str(folder), "--copy", "--no-progress")
    other = WorkerProcess(first_host | {"CLIPSEEK_HOME": str(tmp_path / "other-host")},
                          tmp_path / "other.log")
    try:
        other.wait_ready()
        wait_for(lambda: _indexed(db) >= 4, 180, "a first batch on the other host")
        other.kill()
    finally:
        other.stop()
    assert _indexed(db) < len(sample_photos), "the kill came too late to test anything"
    local = WorkerProcess(first_host, tmp_path / "local.log", beat=True)
    try:
        local.wait_ready()
        wait_for(lambda: _indexed(db) == len(sample_photos), 180,
                 "the other host's lost batch to be indexed on the first")
    finally:
        local.stop()
    with db.session() as session:
        attempts = set(session.scalars(select(Image.attempts)))
        embeddings = session.scalar(select(func.count()).select_from(Embedding))
    assert embeddings == len(sample_photos) and attempts == {1}
