"""The trash: what is in it, restoring pictures with everything they had, and emptying it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, func, select, true, update
from sqlalchemy.orm import Session

from clipseek.indexing.queueing import lacks_embedding
from clipseek.library.deletion import Deletion, Selection, purge_images
from clipseek.library.forgotten import remember_again
from clipseek.store.tables import Image, ImageStatus, User, in_library

# Pictures removed for good per statement when the trash is emptied, so that no emptying
# holds its locks (or the scheduler's turn) for long.
EMPTY_CHUNK = 500


@dataclass(frozen=True)
class TrashedPicture:
    """A picture in the trash: what it was, when and by whom it was deleted, and until when it is kept."""

    image_id: int
    name: str
    path: str
    source: str
    collection: str | None
    trashed_at: datetime
    trashed_by: str | None
    # When the scheduler removes it for good.
    purge_at: datetime
    added_by: int | None = None
    # Whether a thumbnail can be made: not for a file that is missing or never was readable.
    shown: bool = True

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days (rounded up) until it is removed for good; 0 once it is due."""
        left = (self.purge_at - (now or datetime.now(UTC))).total_seconds()
        return max(0, math.ceil(left / 86400))

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek trash list --json`."""
        return {"image_id": self.image_id, "original_name": self.name, "path": self.path,
                "source": self.source, "collection": self.collection,
                "trashed_at": self.trashed_at.isoformat(), "trashed_by": self.trashed_by,
                "purge_at": self.purge_at.isoformat(), "days_left": self.days_left()}


@dataclass
class Restored:
    """What a restore brought back, and which of those the model still has to embed."""

    image_ids: list[int] = field(default_factory=list)
    to_queue: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"restored": self.image_ids, "queued": self.to_queue}


def in_trash() -> ColumnElement[bool]:
    """SQL condition: the image is in the trash."""
    return ~in_library()


def _owned(added_by: int | None) -> ColumnElement[bool]:
    return Image.added_by == added_by if added_by is not None else true()


def count_trashed(session: Session, *, added_by: int | None = None) -> int:
    """How many pictures are in the trash (only those uploaded by `added_by`, when given)."""
    return int(session.scalar(select(func.count()).select_from(Image)
                              .where(in_trash(), _owned(added_by))) or 0)


def trash_contents(session: Session, *, keep_days: int, page: int = 1, per_page: int = 60,
                   added_by: int | None = None) -> list[TrashedPicture]:
    """One page of the trash, most recently deleted first (only `added_by`'s uploads, when given)."""
    rows = session.execute(
        select(Image.id, Image.original_name, Image.path, Image.source, Image.collection,
               Image.trashed_at, User.name.label("by"), Image.added_by,
               (Image.status != ImageStatus.MISSING) & Image.format.is_not(None))
        .outerjoin(User, User.id == Image.trashed_by)
        .where(in_trash(), _owned(added_by))
        .order_by(Image.trashed_at.desc(), Image.id.desc())
        .offset((page - 1) * per_page).limit(per_page))
    keep = timedelta(days=keep_days)
    return [TrashedPicture(r.id, r.original_name, r.path, r.source, r.collection, r.trashed_at,
                           r.by, r.trashed_at + keep, r.added_by, bool(r[-1])) for r in rows]


def trashed_ids(session: Session, selection: Selection) -> list[int]:
    """The ids of the pictures in the trash that `selection` names, in order."""
    return list(session.scalars(select(Image.id).where(selection.condition(), in_trash())
                                .order_by(Image.id)))


def restore_images(session: Session, selection: Selection, *, model: str) -> Restored:
    """Bring the selected pictures back from the trash, with their captions, embeddings and albums.

    Their files are no longer remembered as deleted, so syncs keep them again. Those that
    still lack an embedding from `model` (they were waiting when deleted, or the model
    changed meanwhile) are returned in `to_queue`. The caller commits, then queues them.
    """
    rows = session.execute(update(Image).where(selection.condition(), in_trash())
                           .values(trashed_at=None, trashed_by=None)
                           .returning(Image.id, Image.path, Image.sha256)).all()
    restored = Restored(image_ids=sorted(row.id for row in rows))
    if not rows:
        return restored
    remember_again(session, paths=[row.path for row in rows], hashes=[row.sha256 for row in rows])
    restored.to_queue = list(session.scalars(
        select(Image.id).where(Image.id.in_(restored.image_ids),
                               Image.status.not_in((ImageStatus.FAILED, ImageStatus.MISSING)),
                               lacks_embedding(model)).order_by(Image.id)))
    return restored


def due_ids(session: Session, *, older_than_days: int | None = None, selection: Selection | None = None,
            limit: int | None = None) -> list[int]:
    """The pictures in the trash that emptying would remove: those deleted more than
    `older_than_days` ago (or all), only those `selection` names when given, oldest first."""
    statement = select(Image.id).where(in_trash())
    if older_than_days is not None:
        statement = statement.where(Image.trashed_at < datetime.now(UTC) - timedelta(days=older_than_days))
    if selection is not None:
        statement = statement.where(selection.condition())
    return list(session.scalars(statement.order_by(Image.trashed_at, Image.id).limit(limit)))


def empty_trash(session: Session, *, store: Path, thumbnails: Path, older_than_days: int | None = None,
                selection: Selection | None = None, limit: int | None = None) -> Deletion:
    """Remove pictures in the trash for good (those `due_ids` names), committing after each chunk.

    Stored uploads' files are removed from disk now; files in synced folders stay on disk
    and are remembered as deleted, so no sync or watch registers them again. Stops after
    `limit` pictures, when given (the scheduler empties a chunk per turn).
    """
    ids = due_ids(session, older_than_days=older_than_days, selection=selection, limit=limit)
    session.commit()
    done = Deletion()
    for start in range(0, len(ids), EMPTY_CHUNK):
        chunk = Selection(image_ids=tuple(ids[start:start + EMPTY_CHUNK]))
        part = purge_images(session, chunk, store=store, thumbnails=thumbnails, only_trashed=True)
        done.image_ids += part.image_ids
        done.removed_files += part.removed_files
        done.removed_derived += part.removed_derived
        done.kept_originals += part.kept_originals
        done.not_removed.update(part.not_removed)
    return done
