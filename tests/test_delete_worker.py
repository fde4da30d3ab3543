"""Deleting images while a real worker is embedding them: no orphan embedding, no retry loop."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from clipseek.library.deletion import Selection, purge_images
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, Image, ImageStatus, WorkerBeat
from tests.waiting import wait_for
from tests.workers import WorkerProcess


@pytest.fixture
def worker(cli_env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4"},
                            tmp_path / "worker.log")
    yield process
    process.stop()


def _held(db: Database) -> list[int]:
    with db.session() as s:
        return [i for ids in s.scalars(select(WorkerBeat.image_ids)) if ids for i in ids]


@pytest.mark.slow
def test_images_deleted_while_the_worker_embeds_them_leave_no_orphans_and_no_retries(
    cli_env: dict[str, str], redis_url: str, worker: WorkerProcess, db: Database, settings: Settings,
    sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for c in sample_photos:
        shutil.copy(c.path, folder)
    env = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4"}
    out = subprocess.run(["clipseek", "ingest", str(folder), "--copy", "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    assert f"Queued {len(sample_photos)} image(s)" in out.stdout
    worker.wait_ready()
    deleted: set[int] = set()

    def delete(ids: list[int]) -> None:
        with db.session() as session:
            # For good, as emptying the trash does: the rows go while the worker writes.
            deletion = purge_images(session, Selection(image_ids=tuple(ids)),
                                    store=settings.image_store, thumbnails=settings.thumbnails)
            deleted.update(deletion.image_ids)

    # Every other image of the task the worker holds right now, while it embeds them (the
    # import is one task; the worker writes its results 4 images at a time).
    wait_for(lambda: bool(_held(db)), 120, "the worker to take a task")
    held = sorted(_held(db))
    delete(held[::2])
    assert deleted

    queue = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://"))
    try:
        def drained() -> bool:
            log = worker.log.read_text()
            assert "Retry in" not in log, f"the worker retries a batch in vain:\n{log[-3000:]}"
            return (queue.llen("clipseek") == 0 and not _held(db)
                    and log.count(" received") == log.count("batch of "))
        wait_for(drained, 180, "the worker to finish every task")
    finally:
        queue.close()

    with db.session() as s:
        orphans = s.scalar(select(func.count()).select_from(Embedding)
                           .outerjoin(Image, Image.id == Embedding.image_id).where(Image.id.is_(None)))
        left = dict(s.execute(select(Image.status, func.count()).group_by(Image.status)).all())
        embedded = s.scalar(select(func.count()).select_from(Embedding))
        stored = [p for p in settings.image_store.glob("??/*") if not p.name.startswith(".")]
    assert orphans == 0
    assert left == {ImageStatus.INDEXED: len(sample_photos) - len(deleted)}
    assert embedded == len(sample_photos) - len(deleted)
    assert len(stored) == len(sample_photos) - len(deleted)  # the deleted images' copies are gone
    log = worker.log.read_text()
    assert "Retry in" not in log and "IntegrityError" not in log and "ForeignKeyViolation" not in log
