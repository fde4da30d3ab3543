"""Syncing a photo folder that changes: moves, edits, deletions, returns, and bad input."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.encoding import index_images
from clipseek.indexing.queueing import ids_without
from clipseek.indexing.reading import record_text
from clipseek.indexing.text_reader import TextFound, TextLine
from clipseek.library.derivatives import thumbnail_path
from clipseek.library.ingest import decode_pool
from clipseek.library.register import Candidate, Inspected, inspect_file
from clipseek.library.sync import SyncRefused, SyncReport, prune_missing, sync_folder
from clipseek.search.run import count_searchable, search_images, similar_images
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, DuplicateFile, Embedding, Image, ImageStatus
from clipseek.upkeep.status import collection_status


def _folder(tmp_path: Path, samples: list[Candidate], count: int = 4) -> Path:
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    for c in samples[:count]:
        shutil.copy(c.path, folder / "2024" / c.path.name)
    return folder


def _sync(db: Database, settings: Settings, folder: Path, encoder: ClipEncoder | None = None, *,
          allow_missing_root: bool = False, all_files: bool = False,
          collection: str | None = None) -> SyncReport:
    with db.session() as session, decode_pool(settings) as pool:
        found = sync_folder(session, folder, model=settings.model,
                            max_pixels=settings.max_image_pixels, pool=pool,
                            allow_missing_root=allow_missing_root, all_files=all_files,
                            collection=collection)
        session.commit()
        if encoder is not None and found.to_queue:
            index_images(session, encoder, found.to_queue, pool=pool, batch_size=8,
                         max_pixels=settings.max_image_pixels)
    return found


def _rows(db: Database) -> dict[str, Image]:
    with db.session() as session:
        return {Path(i.path).name: i for i in session.scalars(select(Image))}


def _embeddings(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Embedding)) or 0)


def test_a_moved_file_takes_its_new_path_and_keeps_its_embedding(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    first = _sync(db, settings, folder, encoder)
    assert len(first.new_ids) == 4 and first.to_queue == sorted(first.new_ids)
    name = sample_photos[0].path.name
    before = _rows(db)[name]
    (folder / "moved").mkdir()
    (folder / "2024" / name).rename(folder / "moved" / f"renamed-{name}")
    found = _sync(db, settings, folder, encoder)
    assert found.counts()["moved"] == 1 and found.moved_ids == [before.id]
    assert not found.duplicate_ids and not found.to_queue and found.unchanged == 3
    after = _rows(db)[f"renamed-{name}"]
    assert after.id == before.id and after.status == ImageStatus.INDEXED
    assert after.path == str(folder / "moved" / f"renamed-{name}")
    assert _embeddings(db) == 4


def test_a_deleted_file_is_missing_and_out_of_search_counts_and_status(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder, encoder)
    gone = sample_photos[1].path.name
    (folder / "2024" / gone).unlink()
    found = _sync(db, settings, folder, encoder)
    row = _rows(db)[gone]
    assert found.missing_ids == [row.id] and row.status == ImageStatus.MISSING and row.missing_since
    with db.session() as session:
        page = search_images(session, encoder, "a photo", per_page=10)
        assert row.id not in [hit.image_id for hit in page.hits]
        assert page.total == 3 and count_searchable(session, settings.model) == 3
        assert collection_status(session, model=settings.model).searchable == 3
        other = _rows(db)[sample_photos[0].path.name].id
        similar = similar_images(session, other, model=settings.model)
        assert similar is not None and similar.total == 2
        assert row.id not in [hit.image_id for hit in similar.hits]
    assert _embeddings(db) == 4  # kept, in case the file comes back


def test_a_file_that_comes_back_is_indexed_again_without_the_model(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder, encoder)
    name, other = sample_photos[0].path.name, sample_photos[1].path.name
    (folder / "2024" / name).rename(tmp_path / name)
    (folder / "2024" / other).rename(tmp_path / other)
    assert len(_sync(db, settings, folder).missing_ids) == 2
    (tmp_path / name).rename(folder / "2024" / name)  # same path
    (tmp_path / other).rename(folder / f"back-{other}")  # same content elsewhere
    found = _sync(db, settings, folder)
    rows = _rows(db)
    assert sorted(found.returned_ids) == sorted([rows[name].id, rows[f"back-{other}"].id])
    assert not found.to_queue and not found.new_ids
    assert rows[name].status == rows[f"back-{other}"].status == ImageStatus.INDEXED
    assert rows[name].missing_since is None


def test_an_edited_file_is_read_again_and_indexed_anew(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder, encoder)
    name = sample_photos[2].path.name
    before = _rows(db)[name]
    with db.session() as session:  # the words a worker read in the old content
        box = [[0.0, 0.0], [9.0, 0.0], [9.0, 9.0], [0.0, 9.0]]
        record_text(session, before.id, TextFound([TextLine("OLD SIGN", "OLDSIGN", 0.9, box)]))
        session.commit()
    with PILImage.open(folder / "2024" / name) as img:
        edited = img.convert("RGB").rotate(90, expand=True)
    edited.save(folder / "2024" / name, format=before.format)
    found = _sync(db, settings, folder)
    after = _rows(db)[name]
    assert found.changed_ids == [before.id] and found.to_queue == [before.id]
    assert after.sha256 != before.sha256 and (after.width, after.height) == edited.size
    assert after.status == ImageStatus.REGISTERED and _embeddings(db) == 3
    # Its words are read again from the new content once it is indexed.
    with db.session() as session:
        assert after.ocr_state is None and session.scalar(
            select(func.count()).select_from(Caption).where(Caption.source == "ocr")) == 0
    with db.session() as session, decode_pool(settings) as pool:
        index_images(session, encoder, found.to_queue, pool=pool, batch_size=8,
                     max_pixels=settings.max_image_pixels)
    assert _rows(db)[name].status == ImageStatus.INDEXED and _embeddings(db) == 4


def test_a_touched_but_identical_file_is_not_queued_again(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    os.utime(folder / "2024" / sample_photos[0].path.name, (1e9, 1e9))
    found = _sync(db, settings, folder)
    assert found.unchanged == 4 and not found.changed_ids and not found.to_queue


def test_a_second_sync_of_an_unchanged_folder_reads_no_file(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)

    def must_not_read(*args: object) -> None:
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr("clipseek.library.sync.inspect_file", must_not_read)
    assert _sync(db, settings, folder).counts() == {
        "new": 0, "changed": 0, "moved": 0, "missing": 0, "returned": 0, "unchanged": 4,
        "duplicates": 0, "failed": 0, "skipped": 0, "deleted": 0, "restored": 0, "excluded": 0,
        "litter": 0}


def test_a_vanished_folder_is_refused_unless_allowed(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    folder.rename(tmp_path / "unmounted")
    with pytest.raises(SyncRefused, match="does not exist"):
        _sync(db, settings, folder)
    assert all(r.status == ImageStatus.REGISTERED for r in _rows(db).values())
    assert len(_sync(db, settings, folder, allow_missing_root=True).missing_ids) == 4


def test_a_file_or_an_unknown_missing_folder_is_refused_in_one_sentence(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    with pytest.raises(SyncRefused, match="is a file, not a folder"):
        _sync(db, settings, sample_photos[0].path)
    with pytest.raises(SyncRefused, match="nowhere does not exist"):
        _sync(db, settings, tmp_path / "nowhere")


def test_a_file_replaced_by_a_broken_one_is_failed_with_its_reason_not_queued(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    broken = folder / "2024" / sample_photos[0].path.name
    broken.write_bytes(broken.read_bytes()[:200])
    found = _sync(db, settings, folder)
    row = _rows(db)[broken.name]
    assert found.changed_ids == [row.id] and not found.to_queue
    assert row.status == ImageStatus.FAILED and found.failed[str(broken)] == row.error


def test_link_loops_vanishing_and_unlisted_files_are_reported_and_nothing_is_lost(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a folder that contains itself
    (folder / "self.jpg").symlink_to(folder / "self.jpg")  # a link to itself
    shutil.copy(sample_photos[5].path, folder / "fleeting.jpg")
    (folder / "notes.txt").write_text("not a picture")

    def vanish_first(candidate: Candidate, max_pixels: int) -> Inspected:
        if candidate.path.name == "fleeting.jpg":
            candidate.path.unlink()
        return inspect_file(candidate, max_pixels)

    monkeypatch.setattr("clipseek.library.sync.inspect_file", vanish_first)
    found = _sync(db, settings, folder)
    assert "cannot read the file" in found.failed[str(folder / "self.jpg")]
    assert found.failed[str(folder / "fleeting.jpg")] == "the file vanished while it was being read"
    assert found.skipped_by_extension == 1 and found.skipped_names == [str(folder / "notes.txt")]
    assert found.unchanged == 4 and not found.missing_ids and not found.new_ids
    assert len(_rows(db)) == 4


def test_two_syncs_of_one_folder_at_once_register_each_file_once(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos, count=8)
    reports: list[SyncReport] = []
    threads = [threading.Thread(target=lambda: reports.append(_sync(db, settings, folder)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r.new_ids) for r in reports) == [0, 8]
    assert sorted(r.unchanged for r in reports) == [0, 8]
    assert len(_rows(db)) == 8


def test_prune_forgets_missing_images_but_never_touches_files(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    name = sample_photos[3].path.name
    row = _rows(db)[name]
    with db.session() as session:
        session.add(Caption(image_id=row.id, text="a caption", source="folder"))
        session.commit()
    thumb = thumbnail_path(settings.thumbnails, row.sha256)
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"thumbnail")
    (folder / "2024" / name).rename(tmp_path / name)
    _sync(db, settings, folder)
    with db.session() as session:
        store, thumbnails = settings.image_store, settings.thumbnails
        assert prune_missing(session, store=store, thumbnails=thumbnails, older_than_days=30) == 0
        assert prune_missing(session, store=store, thumbnails=thumbnails) == 1
        session.commit()
        # The other images keep the captions their file names gave them.
        assert session.scalar(select(func.count()).select_from(Caption)
                              .where(Caption.image_id == row.id)) == 0
    assert name not in _rows(db) and len(_rows(db)) == 3
    assert not thumb.exists() and (tmp_path / name).exists()


def test_a_missing_image_is_not_queued_for_another_model(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    (folder / "2024" / sample_photos[0].path.name).unlink()
    missing = _sync(db, settings, folder).missing_ids
    with db.session() as session:
        waiting = ids_without(session, model="ViT-B-16/openai")
    assert len(waiting) == 3 and missing[0] not in waiting


def _too_deep(folder: Path) -> Path:
    """A real folder whose path is longer than the system allows: it cannot be listed."""
    fd = os.open(folder, os.O_RDONLY)
    name = "d" * 250
    try:
        for _ in range(18):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return folder / "/".join([name] * 18)


def test_a_folder_that_cannot_be_listed_is_reported_and_what_it_held_is_not_missing(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    _sync(db, settings, folder)
    deep = _too_deep(folder)
    with db.session() as session:
        session.add(Image(sha256="f" * 64, path=str(deep / "kept.jpg"), original_name="kept.jpg",
                          source="folder", file_size=1, status=ImageStatus.INDEXED))
        session.commit()
    try:
        found = _sync(db, settings, folder)
    finally:
        shutil.rmtree(folder / ("d" * 250))
    assert any("cannot list the folder" in reason for reason in found.failed.values())
    assert found.unchanged == 4 and not found.missing_ids
    assert _rows(db)["kept.jpg"].status == ImageStatus.INDEXED


def test_a_second_copy_is_read_once_and_takes_over_when_the_original_goes(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    name = sample_photos[0].path.name
    shutil.copy(folder / "2024" / name, folder / f"copy-{name}")
    first = _sync(db, settings, folder)
    assert len(first.new_ids) == 4 and len(first.duplicate_ids) == 1
    with monkeypatch.context() as patched:
        patched.setattr("clipseek.library.sync.inspect_file", lambda *args: pytest.fail("a file was read"))
        again = _sync(db, settings, folder)
    assert again.unchanged == 5 and not again.duplicate_ids
    edited = folder / "edited.jpg"
    shutil.copy(folder / "2024" / sample_photos[1].path.name, edited)
    assert len(_sync(db, settings, folder).duplicate_ids) == 1
    with PILImage.open(edited) as img:
        img.convert("RGB").rotate(180).save(edited, format="JPEG")
    assert len(_sync(db, settings, folder).new_ids) == 1  # no longer a copy: a picture of its own
    copies = {str(folder / "2024" / name), str(folder / f"copy-{name}")}
    (original,) = [r for r in _rows(db).values() if r.path in copies]
    Path(original.path).unlink()
    found = _sync(db, settings, folder)
    (row,) = [r for r in _rows(db).values() if r.id == original.id]
    assert found.moved_ids == [row.id] and not found.missing_ids
    assert row.path == (copies - {original.path}).pop()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DuplicateFile)) == 0  # none left


def test_files_named_otherwise_are_counted_and_all_files_reads_them(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos, count=1)
    shutil.copy(sample_photos[1].path, folder / "DSC0001.raw-export")
    (folder / "notes.txt").write_text("not a picture")
    found = _sync(db, settings, folder)
    assert found.skipped_by_extension == 2 and len(found.new_ids) == 1
    found = _sync(db, settings, folder, all_files=True)
    assert found.skipped_by_extension == 0 and len(found.new_ids) == 1
    assert list(found.failed) == [str(folder / "notes.txt")]
    assert _rows(db)["DSC0001.raw-export"].status == ImageStatus.REGISTERED


def test_new_files_join_the_folders_collection_and_moved_ones_keep_theirs(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path
) -> None:
    folder = _folder(tmp_path, sample_photos, count=2)
    _sync(db, settings, folder, collection="Holidays")
    shutil.copy(sample_photos[2].path, folder / "2024" / "new.png")
    (folder / "2024" / sample_photos[0].path.name).rename(folder / "moved.png")
    _sync(db, settings, folder)
    collections = {Path(path).name: row.collection for path, row in _rows(db).items()}
    assert collections == {"moved.png": "Holidays", sample_photos[1].path.name: "Holidays",
                           "new.png": "photos"}


def test_a_file_renamed_before_the_worker_read_it_is_queued_again_by_the_next_sync(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos)
    first = _sync(db, settings, folder)  # registered and queued, not read yet
    moved, returned = sample_photos[0].path.name, sample_photos[1].path.name
    (folder / "2024" / moved).rename(folder / f"renamed-{moved}")
    (folder / "2024" / returned).rename(tmp_path / returned)
    with db.session() as session, decode_pool(settings) as pool:
        index_images(session, encoder, first.to_queue, pool=pool, batch_size=8,
                     max_pixels=settings.max_image_pixels)
    rows = _rows(db)
    assert rows[moved].status == rows[returned].status == ImageStatus.FAILED
    assert "no longer exists" in (rows[moved].error or "")
    (tmp_path / returned).rename(folder / "2024" / returned)  # back where it was
    found = _sync(db, settings, folder)
    rows = _rows(db)
    again = [rows[f"renamed-{moved}"].id, rows[returned].id]
    assert found.moved_ids == [again[0]]
    assert sorted(again) == sorted(set(found.to_queue) & set(again))
    for name in (f"renamed-{moved}", returned):
        assert rows[name].status == ImageStatus.REGISTERED and rows[name].error is None
    with db.session() as session, decode_pool(settings) as pool:
        index_images(session, encoder, found.to_queue, pool=pool, batch_size=8,
                     max_pixels=settings.max_image_pixels)
    assert {row.status for row in _rows(db).values()} == {ImageStatus.INDEXED}
