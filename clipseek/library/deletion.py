"""Deleting images: their rows, captions and embeddings, derived pictures and ClipSeek's own copies."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, delete, false, func, or_, select
from sqlalchemy.orm import Session

from clipseek.library.derivatives import display_copy_path, thumbnail_path
from clipseek.library.store import writing_to
from clipseek.store.tables import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which images to delete: by id, by collection, or by the folder their file lies in."""

    image_ids: tuple[int, ...] = ()
    collection: str | None = None
    path_prefix: Path | None = None

    def condition(self) -> ColumnElement[bool]:
        """The SQL condition that picks these images (none when nothing is named)."""
        parts: list[ColumnElement[bool]] = []
        if self.image_ids:
            parts.append(Image.id.in_(self.image_ids))
        if self.collection is not None:
            parts.append(Image.collection == self.collection)
        if self.path_prefix is not None:
            # A folder, not a string prefix: /photos/2019 must not take /photos/2019-backup.
            folder = str(self.path_prefix).rstrip("/")
            parts.append(or_(Image.path == folder,
                             Image.path.startswith(f"{folder}/", autoescape=True)))
        return or_(*parts) if parts else false()


@dataclass
class Deletion:
    """What a deletion removed: the images, the files of them, and the originals it left alone."""

    image_ids: list[int] = field(default_factory=list)
    removed_files: list[Path] = field(default_factory=list)
    removed_derived: int = 0
    kept_originals: int = 0
    # Files that could not be removed (a read-only folder, say), with the reason.
    not_removed: dict[Path, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"deleted": self.image_ids, "removed_files": [str(p) for p in self.removed_files],
                "removed_derived_files": self.removed_derived, "kept_originals": self.kept_originals,
                "not_removed": {str(p): why for p, why in self.not_removed.items()}}


def count_selected(session: Session, selection: Selection) -> int:
    """How many images a deletion of `selection` would remove."""
    return int(session.scalar(select(func.count()).select_from(Image).where(selection.condition())) or 0)


def selected_ids(session: Session, selection: Selection) -> list[int]:
    """The ids of the images a deletion of `selection` would remove, in order."""
    return list(session.scalars(select(Image.id).where(selection.condition()).order_by(Image.id)))


def delete_images(session: Session, selection: Selection, *, store: Path, thumbnails: Path,
                  delete_files: bool = False) -> Deletion:
    """Delete the selected images, commit, then remove their thumbnails and stored copies.

    Captions and embeddings go with their rows (the foreign keys cascade). A file in the
    image store (an upload, a `--copy` import) is ClipSeek's own and is removed; an original
    indexed where it lies is removed only with `delete_files`. The files go after the commit,
    so a failed commit leaves every image whole, and under the store's lock, so that a
    reconciliation starting meanwhile does not register them again as orphans.
    """
    deletion = Deletion()
    with writing_to(store):
        rows = session.execute(delete(Image).where(selection.condition())
                               .returning(Image.id, Image.path, Image.sha256)).all()
        session.commit()
        for row in sorted(rows):
            deletion.image_ids.append(row.id)
            derived = (thumbnail_path(thumbnails, row.sha256), display_copy_path(thumbnails, row.sha256))
            deletion.removed_derived += sum(_unlink(p, deletion) for p in derived)
            path = Path(row.path)
            if not (path.is_relative_to(store) or delete_files):
                deletion.kept_originals += 1
            elif not _named_again(session, row.path) and _unlink(path, deletion):
                deletion.removed_files.append(path)
    session.commit()  # ends the read transaction of the checks above
    if rows:
        log.info("Deleted %d image(s); removed %d file(s).", len(rows), len(deletion.removed_files))
    return deletion


def _named_again(session: Session, path: str) -> bool:
    # The same picture may have arrived again since the commit (an upload of it, say).
    return session.scalar(select(Image.id).where(Image.path == path).limit(1)) is not None


def _unlink(path: Path, deletion: Deletion) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        # The rows are gone already: one stubborn file must not hide what was done.
        deletion.not_removed[path] = exc.strerror or str(exc)
        log.warning("Could not remove %s: %s", path, exc)
        return 0
    return 1

