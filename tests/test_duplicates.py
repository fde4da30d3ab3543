"""Near-duplicates through the real database: photos and their near copies, registered and indexed
as usual, come out as exactly one group per photo, with the one to keep first."""

from __future__ import annotations

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
from tests.images import near_copies, real_photo

PHOTOS = ("astronaut", "chelsea", "camera", "grace_hopper")


def write_holdout(folder: Path) -> dict[str, list[Path]]:
    """Each photo as a PNG and four near copies of it; two other views of one more scene alone."""
    folder.mkdir()
    files: dict[str, list[Path]] = {}
    for name in PHOTOS:
        photo = real_photo(name)
        original = folder / f"{name}.png"
        photo.save(original)
        files[name] = [original]
        for kind, data in near_copies(photo).items():
            copy = folder / f"{name}-{kind}.jpg"
            copy.write_bytes(data)
            files[name].append(copy)
    scene = real_photo("coffee")
    w, h = scene.size
    for n, dx in enumerate((0.0, 0.3)):
        view = folder / f"coffee-view-{n}.jpg"
        scene.crop((round(w * dx), 0, round(w * (dx + 0.65)), round(h * 0.65))).save(view, quality=90)
        files[f"coffee-view-{n}"] = [view]
    return files


@pytest.fixture
def holdout(db: Database, encoder: ClipEncoder, settings: Settings, tmp_path: Path) -> dict[str, list[int]]:
    """The holdout files registered and indexed in process (hashed as a worker hashes them): ids by photo."""
    files = write_holdout(tmp_path / "holdout")
    summary = ingest_inline(db, encoder, [Candidate(path=p, source="folder") for ps in files.values() for p in ps],
                            settings=settings)
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
        session.execute(update(Image).where(Image.id == holdout["camera"][1]).values(trashed_at=datetime.now(UTC)))
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
