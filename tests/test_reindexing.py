"""Re-indexing on request: failed images tried again, waiting ones queued again, another model for all."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import decode_pool, ingest_inline, register_candidates
from clipseek.library.register import Candidate, discover_files
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from clipseek.upkeep.reindexing import reindex_images
from tests.images import write_bad_files


class _Sent:
    """What the workers would receive: (image ids, model) per task."""

    def __init__(self) -> None:
        self.tasks: list[tuple[list[int], str]] = []

    def __call__(self, image_ids: list[int], model: str) -> None:
        self.tasks.append((image_ids, model))

    def ids(self) -> list[int]:
        return sorted(i for ids, _ in self.tasks for i in ids)


def _statuses(db: Database) -> dict[int, str]:
    with db.session() as s:
        return dict(s.execute(select(Image.id, Image.status)).all())


def test_failed_images_are_tried_again_and_nothing_else_is_queued(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sample_photos[0].path, folder)
    write_bad_files(folder, sample_photos[0].path)
    ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in discover_files([folder])],
                  settings=settings)
    failed = sorted(i for i, status in _statuses(db).items() if status == "failed")
    sent = _Sent()
    with db.session() as s:
        queued = reindex_images(s, settings=settings, enqueue=sent, failed=True)
    assert len(failed) == 4 and queued.image_ids == failed == sent.ids()
    assert queued.model == settings.model and queued.tasks == len(sent.tasks) == 1
    after = _statuses(db)
    assert [after[i] for i in failed] == ["queued"] * 4
    assert sorted(status for i, status in after.items() if i not in failed) == ["indexed"]


def test_another_model_is_queued_for_every_usable_image_whose_status_stays(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
) -> None:
    ingest_inline(db, encoder, sample_photos[:5], settings=settings)
    before = _statuses(db)
    sent = _Sent()
    with db.session() as s:
        queued = reindex_images(s, settings=settings, enqueue=sent, model="ViT-B-16/random")
    assert queued.model == "ViT-B-16/random" and {model for _, model in sent.tasks} == {"ViT-B-16/random"}
    assert queued.image_ids == sent.ids() == sorted(before)
    assert _statuses(db) == before == dict.fromkeys(before, "indexed")


def test_images_waiting_longer_than_asked_are_queued_again(
    db: Database, settings: Settings, sample_photos: list[Candidate],
) -> None:
    with decode_pool(settings) as pool:
        registered = register_candidates(db, sample_photos[:3], settings=settings, pool=pool).new_ids
    sent = _Sent()
    with db.session() as s:
        queued = reindex_images(s, settings=settings, enqueue=sent, stale=True, older_than_s=0)
    assert queued.image_ids == sent.ids() == sorted(registered)
    assert _statuses(db) == dict.fromkeys(registered, "queued")
