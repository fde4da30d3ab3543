"""Deleting pictures for good (emptying the trash, `--delete-files`): rows, embeddings, derived
files and own copies, and the originals only when asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.encoding import record_results
from clipseek.library.deletion import Deletion, Selection, count_selected, purge_images
from clipseek.library.derivatives import ensure_thumbnail
from clipseek.library.ingest import decode_pool, ingest_inline, register_candidates
from clipseek.library.register import Candidate
from clipseek.library.store import reconcile_image_store
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Embedding, EmbeddingCount, Image, ImageStatus


def test_results_for_an_image_deleted_meanwhile_are_dropped_not_an_error(
    db: Database, settings: Settings, sample_photos: list[Candidate],
) -> None:
    with decode_pool(settings) as pool:
        kept, gone = register_candidates(db, sample_photos[:2], settings=settings, pool=pool).new_ids
    with db.session() as session:
        session.execute(delete(Image).where(Image.id == gone))
        session.commit()
        vectors = np.ones((2, 512), dtype=np.float32) / np.sqrt(512)
        record_results(session, "m", [kept, gone], vectors, {gone: "gone"})
        session.commit()
        assert list(session.scalars(select(Embedding.image_id))) == [kept]
        assert session.scalar(select(Image.status).where(Image.id == kept)) == ImageStatus.INDEXED


def _folder(tmp_path: Path, sample_photos: list[Candidate], name: str, count: int) -> list[Candidate]:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    copies = [Path(shutil.copy(c.path, folder)) for c in sample_photos[:count]]
    return [Candidate(path=p, source="folder", collection=name, captions=("a caption",)) for p in copies]


def _delete(db: Database, settings: Settings, selection: Selection, **options: bool) -> Deletion:
    with db.session() as session:
        return purge_images(session, selection, store=settings.image_store,
                            thumbnails=settings.thumbnails, **options)


def _counts(db: Database) -> tuple[int, int, int, int]:
    with db.session() as s:
        return (s.scalar(select(func.count()).select_from(Image)) or 0,
                s.scalar(select(func.count()).select_from(Caption)) or 0,
                s.scalar(select(func.count()).select_from(Embedding)) or 0,
                s.scalar(select(func.sum(EmbeddingCount.images))) or 0)


def test_deleting_an_indexed_image_removes_its_rows_and_thumbnail_but_not_the_original(
    db: Database, settings: Settings, encoder: ClipEncoder, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    candidates = _folder(tmp_path, sample_photos, "trips", 3)
    ids = sorted(ingest_inline(db, encoder, candidates, settings=settings).indexed.indexed)
    with db.session() as s:
        picture = s.get(Image, ids[0])
        assert picture is not None
        thumb = ensure_thumbnail(settings.thumbnails, sha256=picture.sha256, source=Path(picture.path),
                                 max_pixels=settings.max_image_pixels)
    deletion = _delete(db, settings, Selection(image_ids=(ids[0],)))
    assert deletion.image_ids == [ids[0]] and deletion.removed_derived == 1
    assert deletion.removed_files == [] and deletion.kept_originals == 1
    assert not thumb.exists() and candidates[0].path.exists()
    assert _counts(db) == (2, 2, 2, 2)  # the trigger-kept count follows the cascade
    assert _delete(db, settings, Selection(image_ids=(ids[0],))).image_ids == []


def test_copies_in_the_image_store_are_removed_and_originals_only_when_asked(
    db: Database, settings: Settings, encoder: ClipEncoder, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    copied = _folder(tmp_path, sample_photos, "copied", 2)
    ingest_inline(db, encoder, copied, settings=settings, copy=True)
    deletion = _delete(db, settings, Selection(collection="copied"))
    assert len(deletion.image_ids) == 2 and len(deletion.removed_files) == 2
    assert all(p.is_relative_to(settings.image_store) and not p.exists() for p in deletion.removed_files)
    assert all(c.path.exists() for c in copied)
    with db.session() as session:  # nothing left in the store for a start-up repair to revive
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
        assert repair.registered_ids == [] and repair.removed == [] and not repair.busy

    in_place = _folder(tmp_path, sample_photos[2:], "in-place", 2)
    ingest_inline(db, encoder, in_place, settings=settings)
    deletion = _delete(db, settings, Selection(collection="in-place"), delete_files=True)
    assert sorted(deletion.removed_files) == sorted(c.path for c in in_place)
    assert not any(c.path.exists() for c in in_place)
    assert _counts(db) == (0, 0, 0, 0)


def test_a_path_prefix_is_a_folder_not_a_string_prefix(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    inside = _folder(tmp_path, sample_photos, "2019", 2)
    beside = _folder(tmp_path, sample_photos[2:], "2019-backup", 1)
    with decode_pool(settings) as pool:
        register_candidates(db, inside + beside, settings=settings, pool=pool)
    with db.session() as s:
        assert count_selected(s, Selection(path_prefix=tmp_path / "2019")) == 2
    assert len(_delete(db, settings, Selection(path_prefix=tmp_path / "2019")).image_ids) == 2
    assert _counts(db)[0] == 1 and beside[0].path.exists()


def test_a_file_that_cannot_be_removed_is_reported_and_the_rest_done(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    stubborn = _folder(tmp_path, sample_photos, "stubborn", 2)
    with decode_pool(settings) as pool:
        register_candidates(db, stubborn, settings=settings, pool=pool)
    # Something unlink cannot remove, whoever runs the test (root ignores permissions).
    stubborn[0].path.unlink()
    stubborn[0].path.mkdir()
    deletion = _delete(db, settings, Selection(collection="stubborn"), delete_files=True)
    assert len(deletion.image_ids) == 2 and deletion.removed_files == [stubborn[1].path]
    assert list(deletion.not_removed) == [stubborn[0].path]
    assert _counts(db)[0] == 0
