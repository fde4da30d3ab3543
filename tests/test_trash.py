"""The trash: deleted pictures leave every search, count and queue at once, come back whole when
restored, and when it is emptied stay deleted for every sync (by path and by content)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select, update

from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.errors import BadQuery
from clipseek.indexing.encoding import index_images, pending_image_ids
from clipseek.indexing.queueing import ids_without, outstanding
from clipseek.library.collections import collection_counts, collection_images, rename_collection
from clipseek.library.deletion import Selection, delete_images
from clipseek.library.derivatives import ensure_thumbnail
from clipseek.library.ingest import decode_pool, ingest_inline, register_candidates
from clipseek.library.register import Candidate
from clipseek.library.sync import SyncReport, sync_folder
from clipseek.library.trash import count_trashed, empty_trash, restore_images, trash_contents
from clipseek.search.evaluation import stored_pairs
from clipseek.search.query import parse_request
from clipseek.search.run import count_searchable, run_search, search_images, similar_images
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import (
    Album,
    AlbumImage,
    Caption,
    Embedding,
    ForgottenFile,
    Image,
    ImageStatus,
)
from clipseek.upkeep.recovery import scheduler_for, waiting_image_ids
from clipseek.upkeep.status import collection_status, count_pending


def _search(db: Database, encoder: ClipEncoder, **params: str) -> list[int]:
    with db.session() as session:
        page = run_search(session, encoder, parse_request({k: [v] for k, v in params.items()}))
        return [hit.image_id for hit in page.hits]


def _trash(db: Database, settings: Settings, *ids: int) -> list[int]:
    with db.session() as session:
        return delete_images(session, Selection(image_ids=ids), store=settings.image_store,
                             thumbnails=settings.thumbnails).image_ids


def _restore(db: Database, settings: Settings, selection: Selection) -> tuple[list[int], list[int]]:
    with db.session() as session:
        restored = restore_images(session, selection, model=settings.model)
        session.commit()
    return restored.image_ids, restored.to_queue


def test_a_picture_in_the_trash_leaves_search_and_counts_at_once_and_comes_back_whole(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
) -> None:
    ids = sorted(ingest_inline(db, encoder, sample_photos[:4], settings=settings).indexed.indexed)
    cat = ids[2]  # "a tabby cat looking to the side"
    with db.session() as session:
        album = Album(name="Pets")
        session.add(album)
        session.flush()
        session.add(AlbumImage(album_id=album.id, image_id=cat))
        session.commit()
        captions = session.scalar(select(func.count()).select_from(Caption)) or 0
    assert _trash(db, settings, cat) == [cat]
    assert _trash(db, settings, cat) == []  # in the trash already: nothing to move

    assert cat not in _search(db, encoder, q="a cat", all="1")
    assert _search(db, encoder, q="tabby cat", mode="text") == []
    assert cat not in _search(db, encoder, q="tabby", mode="hybrid", all="1")
    assert cat not in _search(db, encoder, q="a cat", collection="samples", all="1")  # the exact scan
    assert sorted(_search(db, encoder)) == [i for i in ids if i != cat]  # browsing
    with pytest.raises(BadQuery, match="in the trash"):
        _search(db, encoder, like=str(cat))
    with db.session() as session:
        assert search_images(session, encoder, "a photo").total == 3
        assert count_searchable(session, settings.model) == 3
        status = collection_status(session, model=settings.model)
        assert status.by_status[ImageStatus.INDEXED] == 3 and status.in_trash == 1
        assert status.images == 3 and status.searchable == 3 and status.to_dict()["in_trash"] == 1
        assert [(c.name, c.images) for c in collection_counts(session)] == [("samples", 3)]
        assert collection_images(session, "samples", page=1, per_page=10)[0] == 3
        similar = similar_images(session, ids[0], model=settings.model)
        assert similar is not None and similar.total == 2 and cat not in [h.image_id for h in similar.hits]
        assert cat not in {pair.image_id for pair in stored_pairs(session, source="samples")}
        assert rename_collection(session, old="samples", new="Samples") == 3  # the trashed one moves too
        session.commit()
        [trashed] = trash_contents(session, keep_days=30)
        assert (trashed.image_id, trashed.name, trashed.days_left()) == (cat, "cat.jpg", 30)

    assert _restore(db, settings, Selection(image_ids=(cat,))) == ([cat], [])
    assert cat in _search(db, encoder, q="tabby cat", mode="text")
    with db.session() as session:
        assert count_searchable(session, settings.model) == 4 and count_trashed(session) == 0
        assert session.scalar(select(func.count()).select_from(Caption)) == captions
        assert session.scalar(select(func.count()).select_from(Embedding)) == 4
        assert session.scalar(select(AlbumImage.album_id).where(AlbumImage.image_id == cat)) == album.id
        assert session.scalar(select(Image.collection).where(Image.id == cat)) == "Samples"


def test_the_worker_and_the_recovery_leave_pictures_in_the_trash_alone(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
) -> None:
    with decode_pool(settings) as pool:
        kept, trashed = register_candidates(db, sample_photos[4:6], settings=settings, pool=pool).new_ids
    _trash(db, settings, trashed)
    with db.session() as session:
        assert waiting_image_ids(session, model=settings.model, older_than_s=0) == [kept]
        assert pending_image_ids(session, settings.model) == [kept]
        assert ids_without(session, model=settings.model) == [kept]
        assert count_pending(session) == 1
        assert outstanding(session, [kept, trashed], model=settings.model) == 1
        with decode_pool(settings) as pool:
            done = index_images(session, encoder, [kept, trashed], pool=pool, batch_size=8,
                                max_pixels=settings.max_image_pixels)
        assert done.indexed == [kept] and done.skipped == 1
    # Back from the trash, it still needs the model: the caller queues it.
    assert _restore(db, settings, Selection(image_ids=(trashed,))) == ([trashed], [trashed])


def _folder(tmp_path: Path, photos: list[Candidate], name: str = "photos") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    for c in photos:
        shutil.copy(c.path, folder / c.path.name)
    return folder


def _sync(db: Database, settings: Settings, folder: Path, *, bring_back: bool = False) -> SyncReport:
    with db.session() as session, decode_pool(settings) as pool:
        found = sync_folder(session, folder, model=settings.model, max_pixels=settings.max_image_pixels,
                            pool=pool, bring_back=bring_back)
        session.commit()
    return found


def _forgotten(db: Database) -> dict[str, str | None]:
    with db.session() as session:
        return {row.path: row.sha256 for row in session.scalars(select(ForgottenFile))}


def _ids(db: Database, folder: Path) -> dict[str, int]:
    with db.session() as session:
        return {Path(row.path).name: row.id for row in session.execute(
            select(Image.id, Image.path).where(Image.path.startswith(f"{folder}/")))}


def test_emptying_the_trash_deletes_stored_uploads_but_keeps_and_remembers_synced_files(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos[:2])
    _sync(db, settings, folder)
    copied = _folder(tmp_path, sample_photos[2:3], "to-copy")
    [stored_id] = ingest_inline(db, encoder, [Candidate(copied / sample_photos[2].path.name, "upload")],
                                settings=settings, copy=True).indexed.indexed
    with db.session() as session:
        stored = Path(session.scalars(select(Image.path).where(Image.id == stored_id)).one())
        sha = session.scalars(select(Image.sha256).where(Image.id == stored_id)).one()
    thumb = ensure_thumbnail(settings.thumbnails, sha256=sha, source=stored,
                             max_pixels=settings.max_image_pixels)
    everything = sorted([*_ids(db, folder).values(), stored_id])
    assert _trash(db, settings, *everything) == everything
    assert stored.exists() and thumb.exists()  # restorable until the trash is emptied
    with db.session() as session:
        assert empty_trash(session, store=settings.image_store, thumbnails=settings.thumbnails,
                           older_than_days=settings.trash_days).image_ids == []
        done = empty_trash(session, store=settings.image_store, thumbnails=settings.thumbnails)
    assert sorted(done.image_ids) == everything and done.removed_files == [stored]
    assert done.kept_originals == 2 and not stored.exists() and not thumb.exists()
    assert all((folder / c.path.name).exists() for c in sample_photos[:2])
    with db.session() as session:
        shas = dict(session.execute(select(Image.path, Image.sha256)).all())
        assert session.scalar(select(func.count()).select_from(Image)) == 0 and not shas
    forgotten = _forgotten(db)
    assert sorted(forgotten) == sorted(str(folder / c.path.name) for c in sample_photos[:2])
    assert all(sha and len(sha) == 64 for sha in forgotten.values())


def test_a_trashed_picture_in_a_synced_folder_stays_trashed_whatever_its_file_does(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos[:3])
    _sync(db, settings, folder)
    names = [c.path.name for c in sample_photos[:3]]
    ids = _ids(db, folder)
    _trash(db, settings, ids[names[0]], ids[names[1]])
    again = _sync(db, settings, folder)
    assert (again.deleted, again.unchanged, again.new_ids, again.missing_ids) == (2, 1, [], [])
    # The first one's file is edited, the second one's copied under another name and removed.
    with PILImage.open(folder / names[0]) as img:
        img.convert("RGB").rotate(90, expand=True).save(folder / names[0], format="JPEG")
    (folder / names[1]).rename(folder / f"copy-{names[1]}")
    changed = _sync(db, settings, folder)
    assert changed.counts() == {
        "new": 0, "changed": 0, "moved": 0, "missing": 0, "returned": 0, "unchanged": 1,
        "duplicates": 0, "failed": 0, "skipped": 0, "deleted": 2, "restored": 0, "excluded": 0,
        "litter": 0}
    assert str(folder / f"copy-{names[1]}") in _forgotten(db)  # not read again by the next sync
    with db.session() as session:
        assert count_trashed(session) == 2
    assert _sync(db, settings, folder).deleted == 2

    back = _sync(db, settings, folder, bring_back=True)
    assert sorted(back.restored_ids) == sorted([ids[names[0]], ids[names[1]]])
    assert back.changed_ids == [ids[names[0]]] and back.moved_ids == [ids[names[1]]]
    assert back.deleted == 0 and _forgotten(db) == {}
    with db.session() as session:
        assert count_trashed(session) == 0


def test_a_file_deleted_for_good_stays_out_even_when_renamed_until_brought_back(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos[:2])
    _sync(db, settings, folder)
    gone = sample_photos[0].path.name
    _trash(db, settings, _ids(db, folder)[gone])
    with db.session() as session:
        empty_trash(session, store=settings.image_store, thumbnails=settings.thumbnails)
    later = _sync(db, settings, folder)
    assert (later.deleted, later.new_ids, later.unchanged) == (1, [], 1)
    (folder / "sub").mkdir()
    (folder / gone).rename(folder / "sub" / f"renamed-{gone}")
    renamed = _sync(db, settings, folder)
    assert (renamed.deleted, renamed.new_ids) == (1, [])
    assert str(folder / "sub" / f"renamed-{gone}") in _forgotten(db)
    back = _sync(db, settings, folder, bring_back=True)
    assert len(back.new_ids) == 1 and back.deleted == 0 and _forgotten(db) == {}
    assert _ids(db, folder).keys() == {f"renamed-{gone}", sample_photos[1].path.name}


def test_the_scheduler_empties_only_what_was_deleted_longer_ago_than_the_trash_keeps(
    db: Database, settings: Settings, sample_photos: list[Candidate], redis_url: str, tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, sample_photos[:3])
    _sync(db, settings, folder)
    by_name = _ids(db, folder)
    old, recent = by_name.pop(sample_photos[0].path.name), by_name.pop(sample_photos[1].path.name)
    _trash(db, settings, old, recent)
    with db.session() as session:
        session.execute(update(Image).where(Image.id == old)
                        .values(trashed_at=datetime.now(UTC) - timedelta(days=settings.trash_days, hours=1)))
        session.commit()
    context = Context(settings.with_changes(redis_url=redis_url))
    scheduler = scheduler_for(context, name="test")
    try:
        assert scheduler.tick() is not None
    finally:
        scheduler.stop()
        context.close()
    with db.session() as session:
        assert sorted(session.scalars(select(Image.id))) == sorted([recent, *by_name.values()])
        assert count_trashed(session) == 1
    assert list(_forgotten(db)) == [str(folder / sample_photos[0].path.name)]
