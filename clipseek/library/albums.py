"""Albums: sets of pictures people make, a picture in any number of them; the trash stays out of sight."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clipseek.errors import BadQuery
from clipseek.store.tables import SHOWN_AT_SQL, Album, AlbumImage, Image, ImageStatus, in_library
from clipseek.util.user_text import user_text

MAX_NAME_CHARS = 200
# An album reference written as a whole number (as long as a bigint can be) is an id;
# anything else is a name.
_ID = re.compile(r"[0-9]{1,19}")


class BadAlbum(BadQuery):
    """An album name that cannot be used (the web answers 400)."""


@dataclass(frozen=True)
class AlbumSummary:
    """An album with how many pictures it shows and the one that stands for it (newest first)."""

    id: int
    name: str
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    images: int
    cover_id: int | None

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek album list --json`."""
        return {"id": self.id, "name": self.name, "images": self.images, "cover_id": self.cover_id,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class AlbumChange:
    """What adding pictures to an album did: new ones, ones already there, ids it could not take."""

    added: int
    already: int
    unknown: int

    def to_dict(self) -> dict[str, int]:
        """JSON form for the API."""
        return {"added": self.added, "already": self.already, "unknown": self.unknown}


def album_name(raw: str) -> str:
    """An album name as typed, trimmed; BadQuery when it is empty, too long or hides itself."""
    return user_text(raw, what="An album name", max_chars=MAX_NAME_CHARS)


def split_album_refs(refs: Sequence[str]) -> tuple[list[int], list[str]]:
    """Album references as ids (those written as whole numbers) and lower-case names.

    Links use ids, which stay right when an album is renamed; people may type names.
    """
    ids = [int(r.strip()) for r in refs if _ID.fullmatch(r.strip())]
    return ids, [r.strip().lower() for r in refs if not _ID.fullmatch(r.strip())]


def _newest_first(oldest_first: bool = False) -> list[ColumnElement[Any]]:
    # The capture date, else the date added: the expression images_shown_at_idx holds.
    shown: ColumnElement[Any] = literal_column(SHOWN_AT_SQL)
    return [shown.asc(), Image.id.asc()] if oldest_first else [shown.desc(), Image.id.desc()]


def _summaries(session: Session, *where: ColumnElement[bool]) -> list[AlbumSummary]:
    counted = (select(func.count()).select_from(AlbumImage).join(Image, Image.id == AlbumImage.image_id)
               .where(AlbumImage.album_id == Album.id, in_library()).scalar_subquery())
    cover = (select(Image.id).join(AlbumImage, AlbumImage.image_id == Image.id)
             .where(AlbumImage.album_id == Album.id, in_library(), Image.status == ImageStatus.INDEXED)
             .order_by(*_newest_first()).limit(1).scalar_subquery())
    rows = session.execute(select(Album, counted.label("images"), cover.label("cover_id"))
                           .where(*where).order_by(func.lower(Album.name), Album.id))
    return [AlbumSummary(id=a.id, name=a.name, created_by=a.created_by, created_at=a.created_at,
                         updated_at=a.updated_at, images=int(images), cover_id=cover_id)
            for a, images, cover_id in rows]


def list_albums(session: Session) -> list[AlbumSummary]:
    """Every album with its count and cover, by name whatever the case."""
    return _summaries(session)


def album_summary(session: Session, album_id: int) -> AlbumSummary | None:
    """One album with its count and cover; None if there is no such album."""
    found = _summaries(session, Album.id == album_id)
    return found[0] if found else None


def _taken(name: str) -> BadAlbum:
    return BadAlbum(f"There is already an album named {name!r}; choose another name, or add the "
                    "pictures to that one.")


def create_album(session: Session, *, name: str, created_by: int | None) -> Album:
    """Make an empty album named `name` (checked with album_name); BadAlbum if the name is taken.

    The caller commits.
    """
    album = Album(name=name, created_by=created_by)
    try:
        with session.begin_nested():  # the unique index decides, so two at once cannot both win
            session.add(album)
    except IntegrityError:
        raise _taken(name) from None
    return album


def rename_album(session: Session, *, album_id: int, name: str) -> Album | None:
    """Give an album another name; None if there is no such album, BadAlbum if the name is taken.

    The caller commits.
    """
    album = session.get(Album, album_id)
    if album is None:
        return None
    try:
        with session.begin_nested():
            album.name, album.updated_at = name, func.now()
    except IntegrityError:
        session.refresh(album)
        raise _taken(name) from None
    session.refresh(album)
    return album


def delete_album(session: Session, *, album_id: int) -> Album | None:
    """Delete an album (its pictures stay in the library); the deleted one, or None. The caller commits."""
    album = session.get(Album, album_id)
    if album is not None:
        session.delete(album)
        session.flush()
    return album


def _touch(session: Session, album_id: int) -> None:
    session.execute(update(Album).where(Album.id == album_id).values(updated_at=func.now()))


def add_to_album(session: Session, *, album_id: int, image_ids: Sequence[int],
                 added_by: int | None) -> AlbumChange:
    """Put pictures in an album; pictures already there stay as they were. The caller commits.

    Ids of no picture, or of one in the trash, are counted as unknown and left out.
    """
    wanted = sorted(set(image_ids))
    known = list(session.scalars(select(Image.id).where(Image.id.in_(wanted), in_library())))
    inserted = session.scalars(
        insert(AlbumImage).values([{"album_id": album_id, "image_id": i, "added_by": added_by}
                                   for i in known])
        .on_conflict_do_nothing().returning(AlbumImage.image_id)).all() if known else []
    if inserted:
        _touch(session, album_id)
    return AlbumChange(added=len(inserted), already=len(known) - len(inserted),
                       unknown=len(wanted) - len(known))


def remove_from_album(session: Session, *, album_id: int, image_ids: Sequence[int]) -> int:
    """Take pictures out of an album (they stay in the library); how many were in it. The caller commits."""
    removed = session.execute(delete(AlbumImage).where(AlbumImage.album_id == album_id,
                                                       AlbumImage.image_id.in_(set(image_ids)))
                              .returning(AlbumImage.image_id)).all()
    if removed:
        _touch(session, album_id)
    return len(removed)


def album_images(session: Session, album_id: int, *, page: int, per_page: int,
                 oldest_first: bool = False) -> tuple[int, list[Image]]:
    """How many pictures an album shows, and one page of them by date (newest first unless asked)."""
    where = (AlbumImage.album_id == album_id, in_library())
    total = int(session.scalar(select(func.count()).select_from(AlbumImage)
                               .join(Image, Image.id == AlbumImage.image_id).where(*where)) or 0)
    images = session.scalars(select(Image).join(AlbumImage, AlbumImage.image_id == Image.id).where(*where)
                             .order_by(*_newest_first(oldest_first))
                             .offset((page - 1) * per_page).limit(per_page))
    return total, list(images)


def album_image_ids(session: Session, album_id: int, *, limit: int) -> list[int]:
    """The ids of an album's pictures (the trash left out), newest first, at most `limit`."""
    return list(session.scalars(select(Image.id).join(AlbumImage, AlbumImage.image_id == Image.id)
                                .where(AlbumImage.album_id == album_id, in_library())
                                .order_by(*_newest_first()).limit(limit)))


def albums_of_image(session: Session, image_id: int) -> list[Album]:
    """The albums a picture is in, by name."""
    return list(session.scalars(select(Album).join(AlbumImage, AlbumImage.album_id == Album.id)
                                .where(AlbumImage.image_id == image_id).order_by(func.lower(Album.name))))


def album_ref_names(session: Session, refs: Sequence[str]) -> list[str]:
    """How each album reference reads to a person: an id as its album's name, a name as typed."""
    ids, _ = split_album_refs(refs)
    wanted = [i for i in ids if i < 2**63]
    named: dict[int, str] = {}
    if wanted:
        for album_id, name in session.execute(select(Album.id, Album.name).where(Album.id.in_(wanted))):
            named[album_id] = name
    return [named.get(int(r.strip()), r.strip()) if _ID.fullmatch(r.strip()) else r.strip() for r in refs]


def find_albums(session: Session, refs: Sequence[str]) -> list[Album]:
    """The albums named by `refs` (an id, or a name whatever its case); BadQuery for one that is none."""
    found = []
    for ref in refs:
        ids, names = split_album_refs([ref])
        statement = (select(Album).where(Album.id == ids[0]) if ids and ids[0] < 2**63
                     else select(Album).where(func.lower(Album.name).in_(names)))
        album = session.scalars(statement).first() if ids or names else None
        if album is None:
            raise BadQuery(f"There is no album {ref.strip()!r}; `clipseek album list` lists them.")
        found.append(album)
    return found
