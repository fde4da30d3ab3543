"""Near-duplicates through the real database: photos and their near copies, registered and indexed
as usual, come out as exactly one group per photo, with the one to keep first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.duplicates import (
    Member,
    count_unhashed,
    find_duplicate_groups,
    group_of,
    keeper_order,
    look_alikes,
    trash_extras,
)
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.cli import run_in_process
from tests.images import HOLDOUT_PHOTOS as PHOTOS
from tests.images import near_copies, real_photo, write_holdout


@pytest.fixture
def holdout(db: Database, encoder: ClipEncoder, settings: Settings, tmp_path: Path) -> dict[str, list[int]]:
    """The holdout files registered and indexed in process (hashed as a worker hashes them): ids by photo."""
    files = write_holdout(tmp_path / "holdout")
    candidates = [Candidate(path=p, source="folder") for paths in files.values() for p in paths]
    summary = ingest_inline(db, encoder, candidates, settings=settings)
    assert not summary.indexed.failed
    with db.session() as session:
        ids = {path: image_id for path, image_id in session.execute(select(Image.path, Image.id))}
    return {name: [ids[str(p)] for p in paths] for name, paths in files.items()}


def test_photos_and_their_near_copies_group_exactly_one_group_per_photo_with_the_largest_kept(
        db: Database, settings: Settings, holdout: dict[str, list[int]]) -> None:
    with db.session() as session:
        groups = find_duplicate_groups(session, distance=settings.duplicate_distance)
        assert count_unhashed(session) == 0
    assert sorted(sorted(m.id for m in g.members) for g in groups) == sorted(
        sorted(holdout[name]) for name in PHOTOS)
    for group in groups:
        assert group.keeper.id == min(m.id for m in group.members)  # the original, at full size
        assert group.keeper.pixels == max(m.pixels for m in group.members)
        assert group.extra_ids == [m.id for m in group.members[1:]]
        assert group.to_dict()["keep"] == group.keeper.id


def test_the_one_to_keep_is_the_largest_then_the_original_then_the_oldest() -> None:
    then = datetime(2024, 5, 1, tzinfo=UTC)

    def member(image_id: int, side: int, original: bool, days: int) -> Member:
        return Member(image_id, f"{image_id}.jpg", side, side, "JPEG", 1000, then + timedelta(days=days),
                      None, original, "0" * 64)

    largest, original, oldest, other = (member(1, 2000, False, 9), member(2, 1000, True, 5),
                                        member(3, 1000, False, 0), member(4, 1000, False, 1))
    assert sorted([other, oldest, original, largest], key=keeper_order) == [largest, original, oldest, other]


def test_new_pictures_say_which_earlier_one_they_look_like(
        db: Database, encoder: ClipEncoder, settings: Settings, holdout: dict[str, list[int]],
        tmp_path: Path) -> None:
    original, *copies = holdout["astronaut"]
    with db.session() as session:
        found = look_alikes(session, [original, *copies, *holdout["coffee-view-1"]],
                            distance=settings.duplicate_distance)
    assert set(found) == set(copies) and all(found[c] < c for c in copies)
    # An import counts its new pictures that look like ones already there.
    again = tmp_path / "again.jpg"
    real_photo("chelsea").save(again, quality=75)
    summary = ingest_inline(db, encoder, [Candidate(path=again, source="folder")], settings=settings)
    assert summary.look_alikes == 1
    assert "1 look like pictures you already have" in "\n".join(summary.lines())


def test_trashed_pictures_leave_their_groups_and_the_extras_go_through_the_deletion_service(
        db: Database, settings: Settings, holdout: dict[str, list[int]]) -> None:
    with db.session() as session:
        session.execute(update(Image).where(Image.id == holdout["camera"][1])
                        .values(trashed_at=datetime.now(UTC)))
        session.commit()
        groups = find_duplicate_groups(session, distance=settings.duplicate_distance)
        camera = next(g for g in groups if g.keeper.id == holdout["camera"][0])
        assert holdout["camera"][1] not in [m.id for m in camera.members] and len(camera.members) == 4
        assert group_of(session, holdout["camera"], distance=settings.duplicate_distance) is None
        assert group_of(session, holdout["chelsea"], distance=settings.duplicate_distance) is not None
        deletion = trash_extras(session, groups, store=settings.image_store, thumbnails=settings.thumbnails)
        assert sorted(deletion.image_ids) == sorted(i for g in groups for i in g.extra_ids)
        assert find_duplicate_groups(session, distance=settings.duplicate_distance) == []
        kept = set(session.scalars(select(Image.id).where(Image.trashed_at.is_(None))))
    assert {holdout[name][0] for name in PHOTOS} <= kept


def test_the_command_lists_the_groups_and_moves_the_extras_to_the_trash_once_confirmed(
        cli_env: dict[str, str], holdout: dict[str, list[int]]) -> None:
    listed = json.loads(run_in_process(cli_env, "duplicates", "--json").stdout)
    assert listed["distance"] == 10 and listed["unhashed"] == 0
    assert sorted(g["keep"] for g in listed["groups"]) == sorted(holdout[name][0] for name in PHOTOS)
    text = run_in_process(cli_env, "duplicates").stdout
    assert f"keep #{holdout['astronaut'][0]} astronaut.png (512x512 PNG" in text
    assert "4 group(s) of the same picture; 16 picture(s) besides the ones to keep" in text
    assert "none" not in run_in_process(cli_env, "duplicates", "--threshold", "0").stdout
    refused = run_in_process(cli_env, "duplicates", "--trash-extras", stdin="n\n")
    assert "Nothing was moved." in refused.stdout
    moved = run_in_process(cli_env, "duplicates", "--trash-extras", stdin="y\n")
    assert moved.returncode == 0 and "Moved 16 picture(s) to the trash." in moved.stdout
    assert json.loads(run_in_process(cli_env, "duplicates", "--json").stdout)["groups"] == []
    wrong = run_in_process(cli_env, "duplicates", "--threshold", "40")
    assert wrong.returncode == 2 and "0<=x<=16" in wrong.stderr


def test_reindex_hashes_fills_the_pictures_indexed_before_hashes_existed(
        cli_env: dict[str, str], db: Database, holdout: dict[str, list[int]]) -> None:
    with db.session() as session:
        before = {i: h for i, h in session.execute(select(Image.id, Image.phash))}
        session.execute(update(Image).values(phash=None))
        session.commit()
    unhashed = run_in_process(cli_env, "duplicates")
    assert "0 group(s)" in unhashed.stdout
    assert "22 indexed picture(s) have no perceptual hash yet" in unhashed.stderr
    filled = run_in_process(cli_env, "reindex", "--hashes")
    assert filled.returncode == 0 and "Computed the perceptual hash of 22 image(s)." in filled.stdout
    with db.session() as session:
        assert {i: h for i, h in session.execute(select(Image.id, Image.phash))} == before
    assert len(json.loads(run_in_process(cli_env, "duplicates", "--json").stdout)["groups"]) == 4


def test_a_sync_says_how_many_new_pictures_look_like_ones_already_there(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "trip"
    folder.mkdir()
    photo = real_photo("chelsea")
    photo.save(folder / "cat.png")
    first = run_in_process(cli_env, "sync", "--inline", str(folder))
    assert first.returncode == 0 and "look like" not in first.stdout
    (folder / "cat-small.jpg").write_bytes(near_copies(photo)["half"])
    second = run_in_process(cli_env, "sync", "--inline", str(folder))
    assert "  1 look like pictures you already have (`clipseek duplicates` lists them)." in second.stdout
