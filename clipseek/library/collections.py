"""Collections: the names images are grouped under, their counts per status, and renaming them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from clipseek.store.tables import Image, ImageStatus, in_library
from clipseek.util.user_text import user_text

UPLOADS = "uploads"
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class CollectionCounts:
    """One collection's name (None for images without one) and its images per status."""

    name: str | None
    by_status: dict[str, int]

    @property
    def images(self) -> int:
        """Every image in the collection, whatever its status."""
        return sum(self.by_status.values())

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek collections --json`."""
        return {"name": self.name, "images": self.images, "by_status": self.by_status}


def collection_name(raw: str) -> str:
    """A collection name as typed, trimmed; BadQuery when it is empty, too long or hides itself."""
    return user_text(raw, what="A collection name", max_chars=MAX_NAME_CHARS)


def folder_collection(path: Path) -> str:
    """The default collection of an import: a folder's own name, or a lone file's folder's name."""
    folder = path.absolute() if path.is_dir() else path.absolute().parent
    return folder.name or str(folder)


def collection_counts(session: Session) -> list[CollectionCounts]:
    """Every collection with its images per status, by name (images without one last); pictures in
    the trash are left out, and so is a collection that has only those."""
    found: dict[str | None, dict[str, int]] = {}
    rows = session.execute(select(Image.collection, Image.status, func.count()).where(in_library())
                           .group_by(Image.collection, Image.status))
    for name, status, count in rows:
        found.setdefault(name, dict.fromkeys(ImageStatus, 0))[status] = count
    names = sorted(found, key=lambda n: (n is None, n or ""))
    return [CollectionCounts(n, {str(k): v for k, v in found[n].items()}) for n in names]


def collection_images(session: Session, name: str, *, page: int,
                      per_page: int) -> tuple[int, list[Image]]:
    """How many images collection `name` holds (outside the trash), and one page of them, newest first."""
    total = int(session.scalar(select(func.count()).select_from(Image)
                               .where(Image.collection == name, in_library())) or 0)
    images = session.scalars(select(Image).where(Image.collection == name, in_library())
                             .order_by(Image.id.desc()).offset((page - 1) * per_page).limit(per_page))
    return total, list(images)


def rename_collection(session: Session, *, old: str, new: str) -> int:
    """Move every image of collection `old` into `new` (merging when it exists); the caller commits.

    Pictures in the trash move too, so that a restored one comes back into the renamed
    collection; the number returned counts those outside the trash.
    """
    moved = session.scalars(update(Image).where(Image.collection == old).values(collection=new)
                            .returning(Image.trashed_at)).all()
    return sum(1 for trashed_at in moved if trashed_at is None)


def collection_image_ids(session: Session, name: str, *, limit: int) -> list[int]:
    """The ids of collection `name`'s pictures outside the trash, newest first, at most `limit`."""
    return list(session.scalars(select(Image.id).where(Image.collection == name, Image.trashed_at.is_(None))
                                .order_by(Image.id.desc()).limit(limit)))
