"""Ingestion: real photos get indexed, bad files fail with reasons, re-runs skip what is done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.queueing import BATCHES_PER_TASK
from clipseek.library.coco import coco_candidates
from clipseek.library.ingest import REGISTER_CHUNK, ingest_inline, ingest_queued
from clipseek.library.register import Candidate, discover_files
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Embedding, Image
from tests.images import photo_array, write_bad_files


def _folder_with_photos_and_bad_files(tmp_path: Path, samples: list[Candidate]) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for n, c in enumerate(samples[:8]):
        shutil.copy(c.path, (folder / "nested" if n % 2 else folder) / c.path.name)
    write_bad_files(folder / "bad", samples[0].path)
    (folder / "readme.txt").write_text("not an image and not named like one")
    return folder


def _candidates(folder: Path) -> list[Candidate]:
    return [Candidate(path=p, source="folder") for p in discover_files([folder])]


def test_corrupt_files_are_marked_failed_and_good_ones_indexed(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder_with_photos_and_bad_files(tmp_path, sample_photos)
    summary = ingest_inline(db, encoder, _candidates(folder), settings=settings)
    with db.session() as s:
        rows = {Path(i.path).name: i for i in s.scalars(select(Image))}
        embedded = s.scalar(select(func.count()).select_from(Embedding))
    assert "readme.txt" not in rows  # folders are walked for image names only
    assert embedded == 8 and len(summary.indexed.indexed) == 8
    for name in ("empty.jpg", "notes.jpg", "garbage.png", "truncated.jpg"):
        assert rows[name].status == "failed", name
        assert rows[name].error
    assert rows["empty.jpg"].error == "the file is empty"
    assert "truncated" in (rows["truncated.jpg"].error or "")
    good = [r for r in rows.values() if r.status != "failed"]
    assert len(good) == 8 and all(r.status == "indexed" and r.width for r in good)


def test_second_run_skips_everything_already_done(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder_with_photos_and_bad_files(tmp_path, sample_photos)
    ingest_inline(db, encoder, _candidates(folder), settings=settings)
    again = ingest_inline(db, encoder, _candidates(folder), settings=settings)
    assert again.registered.already_known == 12
    assert again.registered.new_ids == [] and again.indexed.indexed == []


def test_same_picture_under_another_name_is_a_duplicate(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    copy = tmp_path / "copy-of-cat.jpg"
    shutil.copy(sample_photos[2].path, copy)
    first = ingest_inline(db, encoder, [sample_photos[2]], settings=settings)
    second = ingest_inline(db, encoder, [Candidate(path=copy, source="folder")],
                           settings=settings)
    assert second.registered.duplicate_ids == first.registered.new_ids
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1


def test_interrupted_indexing_is_finished_by_the_next_run(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
) -> None:
    from clipseek.indexing.encoding import pending_image_ids
    from clipseek.library.ingest import decode_pool, register_candidates

    with decode_pool(settings) as pool:
        register_candidates(db, sample_photos[:5], settings=settings, pool=pool)
    with db.session() as s:
        pending = pending_image_ids(s, encoder.model_id)
    assert len(pending) == 5
    summary = ingest_inline(db, encoder, sample_photos[:5], settings=settings,
                            extra_ids=pending)
    assert sorted(summary.indexed.indexed) == sorted(pending)


def test_copy_keeps_the_file_in_the_image_store(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
) -> None:
    summary = ingest_inline(db, encoder, sample_photos[:1], settings=settings, copy=True)
    with db.session() as s:
        image = s.get(Image, summary.registered.new_ids[0])
        assert image is not None
        assert Path(image.path).is_relative_to(settings.image_store)
        assert Path(image.path).read_bytes() == sample_photos[0].path.read_bytes()


def test_coco_images_are_ingested_with_their_five_captions(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    images = tmp_path / "val2017"
    images.mkdir()
    names = []
    for n, c in enumerate(sample_photos[:3]):
        name = f"{n + 1:012d}.jpg"
        shutil.copy(c.path, images / name)
        names.append(name)
    annotations = {
        "images": [{"id": n + 1, "file_name": name} for n, name in enumerate(names)]
        + [{"id": 99, "file_name": "000000000099.jpg"}],  # listed but not downloaded
        "annotations": [{"id": 10 * i + k, "image_id": i, "caption": f"caption {k} of {i}"}
                        for i in (1, 2, 3) for k in range(5)],
    }
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps(annotations))
    candidates, missing = coco_candidates(images, path)
    assert missing == 1
    summary = ingest_inline(db, encoder, candidates, settings=settings)
    assert len(summary.indexed.indexed) == 3
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Caption)) == 15
        assert set(s.scalars(select(Image.collection))) == {"coco/val2017"}


def test_a_large_import_is_queued_chunk_by_chunk_while_it_registers(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    count = REGISTER_CHUNK + 44
    for n in range(count):
        PILImage.fromarray(photo_array(n, (48, 64))).save(folder / f"{n:04}.jpg")
    registered_when_sent: list[int] = []
    sent: list[int] = []

    def enqueue(ids: list[int], model: str) -> None:
        # What a worker receiving this task would find: its ids committed, and how many
        # files are registered so far.
        with db.session() as s:
            registered_when_sent.append(int(s.scalar(select(func.count()).select_from(Image)) or 0))
            visible = set(s.scalars(select(Image.id).where(Image.id.in_(ids), Image.status == "queued")))
        assert visible == set(ids) and model == settings.model
        sent.extend(ids)

    summary = ingest_queued(db, _candidates(folder), settings=settings, enqueue=enqueue)
    assert summary.queued == count and sorted(sent) == sorted(summary.registered.new_ids)
    assert len(sent) == len(set(sent)) == count
    assert registered_when_sent[0] == REGISTER_CHUNK  # the first chunk left before the rest was read
    per_task = settings.batch_size * BATCHES_PER_TASK
    assert len(registered_when_sent) == -(-REGISTER_CHUNK // per_task) + -(-44 // per_task)


def test_an_import_reports_its_progress_through_callbacks(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
) -> None:
    registered: list[int] = []
    indexed: list[tuple[int, int]] = []
    ingest_inline(db, encoder, sample_photos[:10], settings=settings, on_registered=registered.append,
                  on_indexed=lambda done, total: indexed.append((done, total)))
    assert sum(registered) == 10
    assert indexed[-1] == (10, 10)
    assert [done for done, _ in indexed] == sorted(done for done, _ in indexed)
    queued: list[int] = []
    ingest_queued(db, sample_photos[10:15], settings=settings, enqueue=lambda ids, model: None,
                  on_registered=queued.append)
    assert sum(queued) == 5


class _BrokenModel(ClipEncoder):
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model failed")


@pytest.mark.slow
def test_a_failing_model_stops_registration_at_the_next_chunk(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    count = REGISTER_CHUNK * 6
    for n in range(count):
        PILImage.fromarray(photo_array(n, (48, 64))).save(folder / f"{n:04}.jpg")
    # fp32: what is tested is registration, not auto's measuring of every precision.
    broken = _BrokenModel(RANDOM_MODEL, allow_download=False, precision="fp32")
    broken.load()
    with pytest.raises(RuntimeError, match="the model failed"):
        ingest_inline(db, broken, _candidates(folder), settings=settings)
    with db.session() as s:
        registered = int(s.scalar(select(func.count()).select_from(Image)) or 0)
        statuses = set(s.scalars(select(Image.status).distinct()))
    # Registration ran ahead of the model, then stopped instead of reading every file;
    # what it registered stays, to be indexed by the next run.
    assert REGISTER_CHUNK <= registered < count and statuses == {"registered"}
