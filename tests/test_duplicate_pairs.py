"""Near-duplicate pairs kept once found: stored when a picture's hash is, read by every listing,
left out while a picture is in the trash, and looked up later for pictures hashed before."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.errors import ConfigError
from clipseek.indexing.hash_pairs import PAIR_DISTANCE, count_waiting_pairs, pair_waiting, record_hashes
from clipseek.library.deletion import Selection, delete_images
from clipseek.library.duplicates import find_duplicate_groups, group_of, hash_counts, look_alikes
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.library.trash import restore_images
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus, NearDuplicatePair
from clipseek.upkeep.recovery import pair_some_waiting, scheduler_for
from tests.cli import run_in_process
from tests.images import near_copies, real_photo

# A hash; FAR is 32 bits from it, 20 or more from each _moved one.
BASE = "01" * 32


def _moved(bits: int) -> str:
    """BASE with `bits` of its bits flipped (an even number: ones and zeros swap in pairs)."""
    flipped = list(BASE)
    for n in range(bits):
        flipped[n] = "1" if flipped[n] == "0" else "0"
    return "".join(flipped)


FAR = "10" * 16 + "01" * 16


def _pictures(session: Session, count: int) -> list[int]:
    """`count` indexed pictures without a hash, as rows."""
    rows = [{"sha256": f"{n:064x}", "path": f"/pictures/{n}.jpg", "original_name": f"{n}.jpg",
             "source": "folder", "file_size": 1000, "width": 640, "height": 480, "format": "JPEG",
             "status": ImageStatus.INDEXED} for n in range(count)]
    return list(session.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), rows))


def _pairs(db: Database) -> dict[tuple[int, int], int]:
    with db.session() as session:
        return {(a, b): d for a, b, d in session.execute(
            select(NearDuplicatePair.image_id, NearDuplicatePair.other_id, NearDuplicatePair.distance))}


def _groups(db: Database, distance: int) -> list[list[int]]:
    with db.session() as session:
        found = find_duplicate_groups(session, distance=distance)
    return sorted(sorted(m.id for m in g.members) for g in found)


@pytest.fixture
def hashed(db: Database) -> list[int]:
    """Five pictures hashed through record_hashes: BASE, 2, 6 and 12 bits from it, and one far off."""
    with db.session() as session:
        ids = _pictures(session, 5)
        record_hashes(session, dict(zip(ids, [BASE, _moved(2), _moved(6), _moved(12), FAR], strict=True)))
        session.commit()
    return ids


def test_storing_a_hash_keeps_its_pairs_in_order_and_marks_the_picture_paired(
        db: Database, hashed: list[int]) -> None:
    base, two, six, twelve, _ = hashed
    assert _pairs(db) == {(base, two): 2, (base, six): 6, (base, twelve): 12, (two, six): 4,
                          (two, twelve): 10, (six, twelve): 6}
    with db.session() as session:
        assert count_waiting_pairs(session) == 0
        assert None not in session.scalars(select(Image.phash_paired_at)).all()


def test_another_distance_regroups_from_the_kept_pairs_without_looking_anything_up(
        db: Database, hashed: list[int]) -> None:
    base, two, six, twelve, _ = hashed
    with db.session() as session:
        paired_at = dict(session.execute(select(Image.id, Image.phash_paired_at)).all())
    assert _groups(db, 1) == []
    assert _groups(db, 2) == [[base, two]]
    assert _groups(db, 4) == [[base, two, six]]
    assert _groups(db, 6) == _groups(db, PAIR_DISTANCE) == [[base, two, six, twelve]]
    # The listing reads the table alone: without the pairs, there are no groups.
    with db.session() as session:
        assert dict(session.execute(select(Image.id, Image.phash_paired_at)).all()) == paired_at
        session.execute(delete(NearDuplicatePair).where(NearDuplicatePair.other_id == twelve))
        session.commit()
    assert _groups(db, PAIR_DISTANCE) == [[base, two, six]]


def test_a_changed_hash_drops_the_old_pairs_and_finds_new_ones(db: Database, hashed: list[int]) -> None:
    base, two, six, twelve, far = hashed
    with db.session() as session:
        record_hashes(session, {two: FAR})
        session.commit()
    pairs = _pairs(db)
    assert (two, far) in pairs and pairs[(two, far)] == 0
    assert not {(base, two), (two, six), (two, twelve)} & set(pairs)
    assert _groups(db, 6) == [[base, six, twelve], [two, far]]


def test_the_same_hash_stored_again_keeps_its_pairs_untouched(db: Database, hashed: list[int]) -> None:
    before = _pairs(db)
    with db.session() as session:
        session.execute(delete(NearDuplicatePair).where(NearDuplicatePair.image_id == hashed[0]))
        record_hashes(session, {hashed[0]: BASE})  # indexed again by another model
        session.commit()
    assert _pairs(db) == {k: v for k, v in before.items() if k[0] != hashed[0]}


def test_a_trashed_picture_leaves_its_group_and_comes_back_with_its_pairs_when_restored(
        db: Database, settings: Settings, hashed: list[int]) -> None:
    base, two, six, twelve, _ = hashed
    group = [base, two, six, twelve]
    pairs = _pairs(db)
    with db.session() as session:
        delete_images(session, Selection(image_ids=(two,)), store=settings.image_store,
                      thumbnails=settings.thumbnails)
    assert _groups(db, 6) == [[base, six, twelve]] and _pairs(db) == pairs
    with db.session() as session:
        assert group_of(session, group, distance=6) is None
        assert look_alikes(session, [two, six], distance=6) == {six: base}
        restore_images(session, Selection(image_ids=(two,)), model=settings.model)
        session.commit()
        # The closest earlier one: six is 4 bits from two, 6 from base.
        assert look_alikes(session, [two, six], distance=6) == {two: base, six: two}
        found = group_of(session, group, distance=6)
        assert found is not None and [m.id for m in found.members] == group
    assert _groups(db, 6) == [group]


def test_a_missing_picture_leaves_its_group_and_a_deleted_one_takes_its_pairs_along(
        db: Database, hashed: list[int]) -> None:
    base, two, six, twelve, _ = hashed
    with db.session() as session:
        session.execute(update(Image).where(Image.id == six).values(status=ImageStatus.MISSING))
        session.execute(delete(Image).where(Image.id == twelve))
        session.commit()
    assert _groups(db, PAIR_DISTANCE) == [[base, two]]
    assert all(twelve not in pair for pair in _pairs(db)) and (base, six) in _pairs(db)


def test_two_pictures_hashed_at_once_pair_although_neither_saw_the_other_uncommitted(
        db: Database) -> None:
    with db.session() as session:
        first, second = _pictures(session, 2)
        session.commit()
    done = threading.Event()
    errors: list[BaseException] = []

    def hash_the_second() -> None:
        try:
            with db.session() as other:
                record_hashes(other, {second: _moved(2)})
                other.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    with db.session() as session:
        record_hashes(session, {first: BASE})  # holds the pairing lock until its commit
        thread = threading.Thread(target=hash_the_second)
        thread.start()
        with db.session() as watcher:
            # The second waits for the lock: its walk comes after the first's commit.
            while not done.is_set() and not watcher.scalar(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")):
                watcher.rollback()
                done.wait(0.05)
        assert not done.is_set()
        session.commit()
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert _pairs(db) == {(first, second): 2}


def test_pictures_hashed_before_pairs_were_kept_are_paired_in_bounded_batches(
        db: Database, hashed: list[int]) -> None:
    with db.session() as session:
        session.execute(delete(NearDuplicatePair))
        session.execute(update(Image).values(phash_paired_at=None))
        session.commit()
        assert hash_counts(session).unpaired == 5
        assert pair_some_waiting(session, most=2) == 2
        assert count_waiting_pairs(session) == 3
        assert pair_some_waiting(session, most=10) == 3
        assert count_waiting_pairs(session) == 0
    assert _groups(db, PAIR_DISTANCE) == [sorted(hashed[:4])]


def test_the_backfill_leaves_a_picture_that_indexing_holds_to_it_instead_of_waiting(
        db: Database, hashed: list[int]) -> None:
    with db.session() as session:
        session.execute(update(Image).values(phash_paired_at=None))
        session.commit()
    with db.session() as indexing:
        indexing.execute(update(Image).where(Image.id == hashed[0]).values(attempts=Image.attempts + 1))
        with db.session() as session:
            # Waiting for the row would raise here rather than hang.
            session.execute(text("SET LOCAL lock_timeout = '10s'"))
            assert list(pair_waiting(session, limit=10)) == hashed[1:]
            session.commit()
        indexing.rollback()
    with db.session() as session:
        assert count_waiting_pairs(session) == 1


def test_a_pass_of_the_workers_scheduler_pairs_the_pictures_waiting(
        db: Database, settings: Settings, redis_url: str, hashed: list[int]) -> None:
    with db.session() as session:
        session.execute(delete(NearDuplicatePair))
        session.execute(update(Image).values(phash_paired_at=None))
        session.commit()
    context = Context(settings.with_changes(redis_url=redis_url))
    scheduler = scheduler_for(context, name="test")
    try:
        found = scheduler.tick()
    finally:
        scheduler.stop()
        context.close()
    assert found is not None and found.paired == 5
    assert _groups(db, PAIR_DISTANCE) == [sorted(hashed[:4])]


def test_indexing_pairs_each_new_picture_and_reindex_hashes_pairs_those_hashed_before(
        cli_env: dict[str, str], db: Database, encoder: ClipEncoder, settings: Settings,
        tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = real_photo("chelsea")
    photo.save(folder / "cat.png")
    for kind, data in near_copies(photo).items():
        (folder / f"cat-{kind}.jpg").write_bytes(data)
    real_photo("coffee").save(folder / "coffee.png")
    files = sorted(folder.iterdir())
    summary = ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in files],
                            settings=settings)
    assert not summary.indexed.failed
    with db.session() as session:
        ids = {Path(p).name: i for p, i in session.execute(select(Image.path, Image.id))}
        assert session.scalar(select(func.count()).where(Image.phash_paired_at.is_(None))) == 0
    cats = sorted(i for name, i in ids.items() if name.startswith("cat"))
    pairs = _pairs(db)
    assert pairs and all(a < b and a in cats and b in cats for a, b in pairs)
    assert _groups(db, settings.duplicate_distance) == [cats]
    # As after an upgrade: the hashes are there, their pairs not yet.
    with db.session() as session:
        session.execute(delete(NearDuplicatePair))
        session.execute(update(Image).values(phash_paired_at=None))
        session.commit()
    waiting = run_in_process(cli_env, "duplicates")
    assert "0 group(s)" in waiting.stdout
    assert "6 picture(s) hashed earlier are not compared with the others yet" in waiting.stderr
    status = json.loads(run_in_process(cli_env, "status", "--json").stdout)
    assert status["near_duplicates"] == {"hashed": 6, "unhashed": 0, "unpaired": 6}
    assert "6 waiting to be compared with the others" in run_in_process(cli_env, "status").stdout
    filled = run_in_process(cli_env, "reindex", "--hashes")
    assert filled.returncode == 0, filled.stderr
    assert "Compared the hashes of 6 earlier hashed image(s) with the others." in filled.stdout
    assert _pairs(db) == pairs
    listed = json.loads(run_in_process(cli_env, "duplicates", "--json").stdout)
    assert listed["unpaired"] == 0
    assert [sorted(i["id"] for i in g["images"]) for g in listed["groups"]] == [cats]


def test_a_distance_above_the_kept_pairs_is_refused_with_the_reason(cli_env: dict[str, str]) -> None:
    refusal = r"at most 16 \(of 64 bits: near-duplicate pairs are kept up to that distance\), not 17"
    with pytest.raises(ConfigError, match=refusal):
        Settings.from_env({"HOME": "/home/ada", "CLIPSEEK_DUPLICATE_DISTANCE": "17"})
    highest = Settings.from_env({"HOME": "/home/ada", "CLIPSEEK_DUPLICATE_DISTANCE": "16"})
    assert highest.duplicate_distance == 16
    wrong = run_in_process(cli_env, "duplicates", "--threshold", "17")
    assert wrong.returncode == 2 and "0<=x<=16" in wrong.stderr
