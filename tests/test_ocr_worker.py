"""A real worker indexes first and reads words after: reading never delays a picture becoming searchable."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Image
from tests.cli import run_in_process
from tests.images import photo_with_sign
from tests.waiting import wait_for
from tests.workers import WorkerProcess


@pytest.fixture
def worker_env(cli_env: dict[str, str], redis_url: str) -> dict[str, str]:
    # Batches of one: the new pictures make two index tasks, and the words of the first
    # task's pictures are queued for reading while the second still waits.
    return cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "1", "CLIPSEEK_OCR": "1"}


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        started.append(WorkerProcess(worker_env, tmp_path / "worker.log"))
        started[-1].wait_ready()
        return started[-1]

    yield start
    for process in started:
        process.stop()


def test_the_worker_indexes_waiting_pictures_before_it_reads_words_queued_earlier(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    worker_env: dict[str, str], start_worker: Callable[[], WorkerProcess], tmp_path: Path,
) -> None:
    by_name = {c.path.name: c.path for c in sample_photos}
    # Indexed before, their words not read: sent to be read first, while no worker runs.
    sign = photo_with_sign(by_name["rocket.jpg"], "FARMERSMARKET", tmp_path / "old" / "IMG_0007.jpg")
    ingest_inline(db, encoder, [Candidate(path=sign, source="folder"),
                                Candidate(path=by_name["coffee.jpg"], source="samples")], settings=settings)
    sent = run_in_process(worker_env, "reindex", "--ocr")
    assert "Sent 2 picture(s) to be read for words." in sent.stdout, sent.stderr
    # Then new pictures are queued for indexing, behind the reading in time.
    folder = tmp_path / "new"
    folder.mkdir()
    for name in ("cat.jpg", "horse.png", "clock.png", "moon.png", "coins.png"):
        (folder / name).write_bytes(by_name[name].read_bytes())
    queued = run_in_process(worker_env, "ingest", str(folder), "--no-progress")
    assert queued.returncode == 0, queued.stderr

    start_worker()  # only now: everything above waits in the queues when it starts

    def everything_read() -> bool:
        with db.session() as s:
            return all(i.ocr_state == "read" for i in s.scalars(select(Image)))

    wait_for(everything_read, timeout=180, what="every picture indexed and read")
    with db.session() as s:
        images = {Path(i.path).parent.name + "/" + Path(i.path).name: i for i in s.scalars(select(Image))}
        texts = {c.image_id: c.text for c in s.scalars(select(Caption).where(Caption.source == "ocr"))}
    new = [i for key, i in images.items() if key.startswith("new/")]
    old = [i for key, i in images.items() if not key.startswith("new/")]
    assert len(new) == 5 and all(i.status == "indexed" for i in images.values())
    # Indexing's queue went first although the reading was queued before it ...
    assert max(i.indexed_at for i in new if i.indexed_at) <= min(i.ocr_at for i in old if i.ocr_at)
    # ... and every picture was searchable before its words were read.
    assert all(i.indexed_at and i.ocr_at and i.indexed_at <= i.ocr_at for i in images.values())
    assert texts[images["old/IMG_0007.jpg"].id] == "FARMERS MARKET"
    status = json.loads(run_in_process(worker_env, "status", "--json").stdout)["words_in_pictures"]
    assert (status["read"], status["waiting"], status["failed"]) == (7, 0, 0)
