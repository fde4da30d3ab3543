"""Near-duplicates: pictures whose perceptual hashes differ in a few bits, grouped, with one to keep.

The pairs of close hashes are found once, when a picture's hash is stored
(clipseek.indexing.hash_pairs); listing reads those within the distance asked whose pictures
are both in the library, and joins them into groups (union-find). The hash alone decides:
CLIP's neighbours could confirm a pair where real weights are loaded, but a model with
random weights says nothing, so grouping never depends on one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, aliased

from clipseek.indexing.hash_pairs import waiting_to_be_paired
from clipseek.library.deletion import Deletion, Selection, delete_images
from clipseek.photo.perceptual_hash import hamming_distance
from clipseek.store.tables import Image, ImageStatus, NearDuplicatePair


def in_library(image: Any = Image) -> ColumnElement[bool]:
    """Pictures that take part: hashed, in the library (not in the trash), their file not missing."""
    condition: ColumnElement[bool] = (image.phash.is_not(None) & image.trashed_at.is_(None)
                                      & (image.status != ImageStatus.MISSING))
    return condition


def _kept_pairs(distance: int) -> Select[int, int]:
    """The kept pairs at most `distance` bits apart whose two pictures both take part."""
    first, second = aliased(Image), aliased(Image)
    pair = NearDuplicatePair
    return (select(pair.image_id, pair.other_id)
            .join(first, first.id == pair.image_id).join(second, second.id == pair.other_id)
            .where(pair.distance <= distance, in_library(first), in_library(second)))


def near_pairs(session: Session, *, distance: int,
               image_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Pairs (a, b), a < b, of pictures in the library whose hashes differ in at most `distance`
    bits (those with one of `image_ids`, if given), as kept when they were hashed."""
    statement = _kept_pairs(distance)
    if image_ids is not None:
        ids = list(image_ids)
        statement = statement.where(or_(NearDuplicatePair.image_id.in_(ids),
                                        NearDuplicatePair.other_id.in_(ids)))
    return [(a, b) for a, b in session.execute(statement)]


def connected(ids: Iterable[int], pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The groups that pairs join `ids` into (union-find), each sorted, singletons left out."""
    parent = {i: i for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # halve the path as it is walked
            i = parent[i]
        return i

    for a, b in pairs:
        if a in parent and b in parent:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


@dataclass(frozen=True)
class Member:
    """One picture of a group, with what choosing the one to keep looks at."""

    id: int
    name: str
    width: int | None
    height: int | None
    format: str | None
    file_size: int
    created_at: datetime
    taken_at: datetime | None
    # It still carries its camera's EXIF (capture time or camera), which conversions and
    # messengers strip: the original, where sizes tie.
    original: bool
    phash: str

    @property
    def pixels(self) -> int:
        """Width times height (0 where unknown)."""
        return (self.width or 0) * (self.height or 0)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek duplicates --json`."""
        return {"id": self.id, "name": self.name, "width": self.width, "height": self.height,
                "format": self.format, "file_size": self.file_size,
                "created_at": self.created_at.isoformat(),
                "taken_at": self.taken_at.isoformat() if self.taken_at else None,
                "original": self.original}


def keeper_order(member: Member) -> tuple[int, bool, datetime, int]:
    """Sort key that puts the picture to keep first: largest, then the original, then the oldest."""
    return (-member.pixels, not member.original, member.created_at, member.id)


@dataclass(frozen=True)
class DuplicateGroup:
    """Pictures that are the same picture: the one to keep first, then the others."""

    members: tuple[Member, ...]

    @property
    def keeper(self) -> Member:
        """The picture suggested for keeping."""
        return self.members[0]

    @property
    def extra_ids(self) -> list[int]:
        """The ids of the others, which may go to the trash."""
        return [m.id for m in self.members[1:]]

    def bits_from_keeper(self, member: Member) -> int:
        """How many bits of `member`'s hash differ from the keeper's."""
        return hamming_distance(self.keeper.phash, member.phash)

    def to_dict(self) -> dict[str, object]:
        """JSON form: the keeper's id and every member, each with its distance to the keeper."""
        return {"keep": self.keeper.id,
                "images": [{**m.to_dict(), "keep": m is self.keeper,
                            "bits_from_keep": self.bits_from_keeper(m)} for m in self.members]}


def _members(session: Session, ids: Iterable[int]) -> dict[int, Member]:
    rows = session.execute(
        select(Image.id, Image.original_name, Image.width, Image.height, Image.format, Image.file_size,
               Image.created_at, Image.taken_at, Image.camera_model, Image.phash)
        .where(Image.id.in_(list(ids)), in_library()))
    return {row.id: Member(row.id, row.original_name, row.width, row.height, row.format, row.file_size,
                           row.created_at, row.taken_at,
                           row.taken_at is not None or row.camera_model is not None, row.phash)
            for row in rows}


def _grouped(members: dict[int, Member], groups: Iterable[list[int]]) -> list[DuplicateGroup]:
    found = [DuplicateGroup(tuple(sorted((members[i] for i in g if i in members), key=keeper_order)))
             for g in groups]
    found = [g for g in found if len(g.members) > 1]
    # Most copies first; among equals, the most recently added keeper first.
    return sorted(found, key=lambda g: (-len(g.members), -g.keeper.id))


def groups_from_pairs(session: Session, pairs: Sequence[tuple[int, int]]) -> list[DuplicateGroup]:
    """The groups that these pairs of pictures join into, most copies first, the one to keep first in each."""
    groups = connected({i for pair in pairs for i in pair}, pairs)
    return _grouped(_members(session, (i for g in groups for i in g)), groups)


def find_duplicate_groups(session: Session, *, distance: int) -> list[DuplicateGroup]:
    """Every group of two or more pictures in the library that are the same picture."""
    return groups_from_pairs(session, near_pairs(session, distance=distance))


def group_of(session: Session, ids: Sequence[int], *, distance: int) -> DuplicateGroup | None:
    """These pictures as one group, if they all still are in the library and still look alike.

    What a page showed may have changed since (a picture trashed, a file replaced): the
    pairs of just these pictures are read again.
    """
    members = _members(session, ids)
    if len(members) != len(set(ids)) or len(members) < 2:
        return None
    pairs = session.execute(_kept_pairs(distance).where(NearDuplicatePair.image_id.in_(list(members)),
                                                        NearDuplicatePair.other_id.in_(list(members))))
    groups = connected(members, [(a, b) for a, b in pairs])
    return _grouped(members, groups)[0] if len(groups) == 1 and len(groups[0]) == len(members) else None


def look_alikes(session: Session, image_ids: Sequence[int], *, distance: int) -> dict[int, int]:
    """For each of these pictures that looks like one added before it, that earlier picture's id
    (the closest, then the oldest)."""
    if not image_ids:
        return {}
    pair = NearDuplicatePair
    closest = (_kept_pairs(distance).where(pair.other_id.in_(list(image_ids)))
               .order_by(pair.other_id, pair.distance, pair.image_id).ext(distinct_on(pair.other_id)))
    rows = session.execute(closest)
    return {new: earlier for earlier, new in rows}


def count_unhashed(session: Session) -> int:
    """Indexed pictures in the library without a hash (indexed before hashes were computed)."""
    return int(session.scalar(select(func.count()).select_from(Image).where(
        Image.status == ImageStatus.INDEXED, Image.phash.is_(None), Image.trashed_at.is_(None))) or 0)


@dataclass(frozen=True)
class HashCounts:
    """How far the pictures of the library are from taking part in the groups."""

    hashed: int = 0
    # Indexed without a hash (before hashes were computed): `clipseek reindex --hashes`.
    unhashed: int = 0
    # Hashed before pairs were kept, not yet compared with the others (in the trash too).
    unpaired: int = 0

    def to_dict(self) -> dict[str, int]:
        """JSON form for the status API."""
        return {"hashed": self.hashed, "unhashed": self.unhashed, "unpaired": self.unpaired}


def hash_counts(session: Session) -> HashCounts:
    """The pictures hashed, left without a hash, and waiting to be paired, in one reading."""
    kept = Image.trashed_at.is_(None)
    row = session.execute(select(
        func.count().filter(kept, Image.phash.is_not(None)),
        func.count().filter(kept, Image.status == ImageStatus.INDEXED, Image.phash.is_(None)),
        func.count().filter(waiting_to_be_paired()))).one()
    return HashCounts(int(row[0]), int(row[1]), int(row[2]))


def trash_extras(session: Session, groups: Sequence[DuplicateGroup], *, store: Path,
                 thumbnails: Path) -> Deletion:
    """Move every picture but the keeper of each group to the trash, through the deletion service."""
    ids = tuple(sorted({i for group in groups for i in group.extra_ids}))
    if not ids:
        return Deletion()
    return delete_images(session, Selection(image_ids=ids), store=store, thumbnails=thumbnails)
