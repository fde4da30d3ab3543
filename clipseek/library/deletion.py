"""Deleting images: into the trash (restorable), or for good: their rows, captions and embeddings,
derived pictures and ClipSeek's own copies, with the files left on disk remembered as deleted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, delete, false, func, or_, select, true, update
from sqlalchemy.orm import Session

from clipseek.library.derivatives import display_copy_path, thumbnail_path
from clipseek.library.forgotten import forget_files
from clipseek.library.store import writing_to
from clipseek.store.tables import DuplicateFile, Image, in_library

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which images to delete: by id, by collection, by the folder their file lies in, or all."""

    image_ids: tuple[int, ...] = ()
    collection: str | None = None
    path_prefix: Path | None = None
    # Every image (emptying or restoring the whole trash); never the default.
    everything: bool = False

    def condition(self) -> ColumnElement[bool]:
        """The SQL condition that picks these images (none when nothing is named)."""
        if self.everything:
            return true()
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
    """What a deletion did: the images moved to the trash, or removed for good with their files."""

    image_ids: list[int] = field(default_factory=list)
    # In the trash (restorable, nothing removed yet) rather than deleted for good.
    trashed: bool = False
    removed_files: list[Path] = field(default_factory=list)
    removed_derived: int = 0
    kept_originals: int = 0
    # Files that could not be removed (a read-only folder, say), with the reason.
    not_removed: dict[Path, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"deleted": self.image_ids, "in_trash": self.trashed,
                "removed_files": [str(p) for p in self.removed_files],
                "removed_derived_files": self.removed_derived, "kept_originals": self.kept_originals,
                "not_removed": {str(p): why for p, why in self.not_removed.items()}}


def count_selected(session: Session, selection: Selection) -> int:
    """How many images in the library (not in the trash) a deletion of `selection` would take."""
    return int(session.scalar(select(func.count()).select_from(Image)
                              .where(selection.condition(), in_library())) or 0)


def selected_ids(session: Session, selection: Selection) -> list[int]:
    """The ids of the images in the library a deletion of `selection` would take, in order."""
    return list(session.scalars(select(Image.id).where(selection.condition(), in_library())
                                .order_by(Image.id)))


def delete_images(session: Session, selection: Selection, *, store: Path, thumbnails: Path,
                  delete_files: bool = False, by: int | None = None) -> Deletion:
    """Move the selected images to the trash and commit; with `delete_files`, delete them for
    good at once, with the original files of those indexed where they lie.

    The one way every deletion goes (a picture, a selection, a collection, the command line,
    the API); `by` is the user who deleted them (None in the local single-user mode).
    """
    if delete_files:
        return purge_images(session, selection, store=store, thumbnails=thumbnails, delete_files=True)
    return trash_images(session, selection, by=by)


def trash_images(session: Session, selection: Selection, *, by: int | None = None) -> Deletion:
    """Move the selected images of the library to the trash, and commit.

    They leave search, browsing and counts at once and keep everything they had (captions,
    embeddings, album places, files); emptying the trash removes them for good.
    """
    ids = sorted(session.scalars(update(Image).where(selection.condition(), in_library())
                                 .values(trashed_at=func.now(), trashed_by=by).returning(Image.id)))
    session.commit()
    if ids:
        log.info("Moved %d image(s) to the trash.", len(ids))
    return Deletion(image_ids=ids, trashed=True)


def purge_images(session: Session, selection: Selection, *, store: Path, thumbnails: Path,
                 delete_files: bool = False, only_trashed: bool = False, forget: bool = True) -> Deletion:
    """Delete the selected images for good, commit, then remove their thumbnails and stored copies.

    Captions and embeddings go with their rows (the foreign keys cascade). A file in the
    image store (an upload, a `--copy` import) is ClipSeek's own and is removed; an original
    indexed where it lies is removed only with `delete_files`, and otherwise remembered as
    deleted (with `forget`), so that no sync registers it again. The files go after the
    commit, so a failed commit leaves every image whole, and under the store's lock, so that
    a reconciliation starting meanwhile does not register them again as orphans.
    `only_trashed` takes only those still in the trash (one restored meanwhile stays).
    """
    deletion = Deletion()
    condition = selection.condition()
    if only_trashed:
        condition = condition & ~in_library()
    with writing_to(store):
        copies = session.execute(select(DuplicateFile.path, Image.sha256)
                                 .join(Image, Image.id == DuplicateFile.image_id).where(condition)).all()
        rows = session.execute(delete(Image).where(condition)
                               .returning(Image.id, Image.path, Image.sha256)).all()
        if forget:
            # Files that stay on disk; with `delete_files`, those that could not be removed
            # are remembered after the attempt below.
            kept = [] if delete_files else [(r.path, r.sha256) for r in rows
                                            if not Path(r.path).is_relative_to(store)]
            forget_files(session, [*kept, *((c.path, c.sha256) for c in copies)])
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
    if forget and delete_files and deletion.not_removed:
        shas = {row.path: row.sha256 for row in rows}
        forget_files(session, [(str(p), shas.get(str(p))) for p in deletion.not_removed
                               if not p.is_relative_to(store) and str(p) in shas])
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

