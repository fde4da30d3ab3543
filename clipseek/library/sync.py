"""Keeping a folder and the database in step: new, changed, moved, missing and returned files,
leaving out what was deleted (in the trash or for good) and what the folder's rules exclude."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.errors import ClipSeekError
from clipseek.indexing.failures import FILE_GONE, is_retryable
from clipseek.indexing.reading import forget_text
from clipseek.library.captions import replace_derived_captions
from clipseek.library.collections import folder_collection
from clipseek.library.deletion import Selection, purge_images
from clipseek.library.excludes import Excludes
from clipseek.library.forgotten import forget_files, forgotten_hashes, forgotten_under, remember_again
from clipseek.library.places import place_images
from clipseek.library.register import Candidate, Inspected, inspect_file, register_inspected, unread_key
from clipseek.library.scan import FileStat, FolderScan, scan_folder
from clipseek.library.trash import restore_images
from clipseek.store.lock_waits import take_advisory_xact_lock
from clipseek.store.tables import DuplicateFile, Embedding, ForgottenFile, Image, ImageStatus, in_library

# Progress: what the sync is doing now ("scanning", "reading", "recording") and how many files.
OnStage = Callable[[str, int], None]


class SyncRefused(ClipSeekError):
    """A sync that would do harm as asked (a vanished folder, a file given as a folder)."""


@dataclass
class SyncReport:
    """What one sync did, file by file category; `to_queue` lists the images that need the model."""

    new_ids: list[int] = field(default_factory=list)
    changed_ids: list[int] = field(default_factory=list)
    moved_ids: list[int] = field(default_factory=list)
    missing_ids: list[int] = field(default_factory=list)
    returned_ids: list[int] = field(default_factory=list)
    duplicate_ids: list[int] = field(default_factory=list)
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    to_queue: list[int] = field(default_factory=list)
    skipped_by_extension: int = 0
    skipped_names: list[str] = field(default_factory=list)
    # Files of pictures deleted (in the trash, or for good) that were left out, and those
    # brought back from the trash by `bring_back`.
    deleted: int = 0
    restored_ids: list[int] = field(default_factory=list)
    # Left out by --exclude or a .clipseekignore, and NAS/OS litter (a folder counts once).
    excluded: int = 0
    litter: int = 0
    left_out_names: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Every count, by name, for the report and the API."""
        return {"new": len(self.new_ids), "changed": len(self.changed_ids),
                "moved": len(self.moved_ids), "missing": len(self.missing_ids),
                "returned": len(self.returned_ids), "unchanged": self.unchanged,
                "duplicates": len(self.duplicate_ids), "failed": len(self.failed),
                "skipped": self.skipped_by_extension, "deleted": self.deleted,
                "restored": len(self.restored_ids), "excluded": self.excluded, "litter": self.litter}


@dataclass(frozen=True)
class _Known:
    id: int
    path: str
    sha256: str
    size: int
    mtime: float | None
    status: str
    error: str | None = None
    # In the trash: a sync leaves its file alone, whatever happens to it.
    trashed: bool = False

    def failed_for_its_file(self, *, read_now: bool) -> bool:
        """Whether this image failed for a reason about its file that no longer holds.

        A file that is where it was said to be gone was not gone for good; one read without
        error just now is readable, so any failure another try can mend is untrue now.
        """
        if self.status != ImageStatus.FAILED or self.error is None:
            return False
        return is_retryable(self.error) if read_now else self.error.startswith(FILE_GONE)


def _known_rows() -> Select[int, str, str, int, float | None, str, str | None, bool]:
    # The columns of _Known, in its order.
    return select(Image.id, Image.path, Image.sha256, Image.file_size, Image.file_mtime, Image.status,
                  Image.error, ~in_library())


def _prefix(root: Path) -> str:
    return str(root).rstrip(os.sep) + os.sep


def _lock_key(folder: Path) -> int:
    return int.from_bytes(hashlib.sha256(f"clipseek-sync:{folder}".encode()).digest()[:8], "big",
                          signed=True)


def lock_folder(session: Session, root: Path) -> None:
    """Wait for syncs of this folder and of folders in or around it; held until the transaction ends.

    Each folder above `root` is locked shared and `root` itself exclusively, so a sync of
    /a waits for one of /a/b and the other way round, while /a/b and /a/c run at once. The
    locks are taken from the top down, in the same order by every sync, so no two syncs
    can each hold what the other waits for.
    A wait of more than a few seconds is reported with the sessions that hold the lock.
    """
    for folder in reversed(root.parents):
        take_advisory_xact_lock(session, _lock_key(folder), shared=True,
                                what=f"the lock of {folder} (a sync of it or of a folder in it)")
    take_advisory_xact_lock(session, _lock_key(root), shared=False,
                            what=f"the lock of {root} (a sync of it or of a folder around it)")


def is_known_folder(session: Session, root: Path) -> bool:
    """Whether any image was registered from under this folder (and is still known, or deleted)."""
    under = _prefix(root.absolute())
    return bool(session.scalar(select(
        exists().where(Image.path.startswith(under, autoescape=True))
        | exists().where(ForgottenFile.path.startswith(under, autoescape=True)))))


def _check_root(session: Session, root: Path, allow_missing_root: bool) -> bool:
    """Whether the root can be walked; raise SyncRefused where going on would do harm."""
    if root.is_dir():
        return True
    if root.exists():
        raise SyncRefused(f"{root} is a file, not a folder: sync keeps folders in step "
                          "(use `clipseek ingest` for single files).")
    if not is_known_folder(session, root):
        raise SyncRefused(f"{root} does not exist.")
    if not allow_missing_root:
        raise SyncRefused(f"The folder {root} does not exist (an unmounted drive?); mount it, or "
                          "pass --allow-missing-root to mark everything in it missing.")
    return False


def sync_folder(session: Session, root: Path, *, model: str, max_pixels: int,
                pool: ThreadPoolExecutor, all_files: bool = False, allow_missing_root: bool = False,
                collection: str | None = None, on_stage: OnStage | None = None,
                excludes: Excludes | None = None, bring_back: bool = False) -> SyncReport:
    """Compare a folder with the database in one pass and record what changed. The caller commits.

    New files go in `collection` (by default the folder's name, as an import names it); a
    moved or returning image keeps the collection it has.

    Unchanged files (same size and mtime) are not read; new and changed ones are hashed and
    probed, so moves are recognised by content and keep their embeddings. Files that are
    gone become missing (out of search until they return). Holds the folder's lock until
    the transaction ends, so two syncs of one folder, or of a folder and one inside it, run
    one after the other.

    Deleted pictures stay deleted: the file of a picture in the trash is left alone (not
    new, not changed, not missing), and so is a file deleted for good (by its path, or by
    its content when it was moved or copied). `bring_back` restores the pictures of this
    folder from the trash and registers its deleted files again. What `excludes` and the
    .clipseekignore files leave out, and NAS/OS litter, is not looked at; a picture already
    registered from there is then missing.
    """
    root = root.absolute()
    new_collection = collection or folder_collection(root)
    lock_folder(session, root)
    walkable = _check_root(session, root, allow_missing_root)
    scan = scan_folder(root, all_files=all_files, excludes=excludes) if walkable else FolderScan()
    if on_stage:
        on_stage("scanning", len(scan.files))
    report = SyncReport(skipped_by_extension=scan.skipped_by_extension,
                        skipped_names=scan.skipped_names, failed=dict(scan.unreadable),
                        excluded=scan.excluded, litter=scan.litter, left_out_names=scan.left_out_names)
    if bring_back:
        restored = restore_images(session, Selection(path_prefix=root), model=model)
        report.restored_ids, report.to_queue = restored.image_ids, restored.to_queue
        remember_again(session, under=root)
    forgotten = forgotten_under(session, root)
    known = {row.path: _Known(*row) for row in session.execute(
        _known_rows().where(Image.path.startswith(_prefix(root), autoescape=True)))}
    copies = {dup.path: dup for dup in session.scalars(
        select(DuplicateFile).where(DuplicateFile.path.startswith(_prefix(root), autoescape=True)))}
    to_read: list[str] = []
    for path, stat in scan.files.items():
        row = known.get(path)
        copy = copies.get(path)
        same_copy = copy is not None and (copy.file_size, copy.file_mtime) == (stat.size, stat.mtime)
        if (row is not None and row.trashed) or (row is None and path in forgotten):
            report.deleted += 1
        elif row is None and same_copy:
            del copies[path]
            report.unchanged += 1  # a second copy of a stored picture, already read once
        elif row is None or row.size != stat.size or row.mtime != stat.mtime:
            to_read.append(path)
        elif row.status == ImageStatus.MISSING:
            _return(session, row.id, path, stat, model, report)
        elif row.failed_for_its_file(read_now=False):
            _queue_again(session, row.id, report)  # back before the next sync saw it gone
        else:
            report.unchanged += 1
    # Copies that are gone or changed are forgotten; changed ones are read again below.
    stale_copies = [path for path in copies if not scan.under_unlisted(path)]
    if stale_copies:
        session.execute(delete(DuplicateFile).where(DuplicateFile.path.in_(stale_copies)))
    gone = {path: row for path, row in known.items() if path not in scan.files and not row.trashed
            and path not in scan.unreadable and not scan.under_unlisted(path)}
    if on_stage:
        on_stage("reading", len(to_read))
    read = list(pool.map(lambda p: inspect_file(Candidate(Path(p), "folder", new_collection),
                                                max_pixels), to_read))
    fresh: list[Inspected] = []
    for item in read:
        path = str(item.candidate.path)
        if item.error and not os.path.lexists(path):
            report.failed[path] = "the file vanished while it was being read"
            if path in known:
                gone[path] = known[path]
        elif path in known:
            _reread(session, known[path], item, model, report)
        else:
            fresh.append(item)
    if on_stage:
        on_stage("recording", len(fresh))
    _place_new(session, _leave_out_deleted(session, fresh, bring_back, model, report), gone, model,
               report)
    _move_to_copies(session, gone, report)
    _mark_missing(session, [row for row in gone.values() if row.status != ImageStatus.MISSING],
                  report)
    report.to_queue = sorted(set(report.new_ids) | set(report.to_queue))
    return report


def _has_embedding(session: Session, image_id: int, model: str) -> bool:
    return bool(session.scalar(select(exists().where(Embedding.image_id == image_id,
                                                      Embedding.model == model))))


def _return(session: Session, image_id: int, path: str, stat: FileStat, model: str,
            report: SyncReport) -> None:
    """A missing image whose file is back: indexed again at once if it has its embedding."""
    embedded = _has_embedding(session, image_id, model)
    session.execute(update(Image).where(Image.id == image_id).values(
        path=path, original_name=Path(path).name,
        file_size=stat.size, file_mtime=stat.mtime, missing_since=None, error=None,
        status=ImageStatus.INDEXED if embedded else ImageStatus.REGISTERED))
    report.returned_ids.append(image_id)
    if not embedded:
        report.to_queue.append(image_id)


def _queue_again(session: Session, image_id: int, report: SyncReport) -> None:
    session.execute(update(Image).where(Image.id == image_id).values(
        status=ImageStatus.REGISTERED, error=None, attempts=0))
    report.to_queue.append(image_id)


def _reread(session: Session, row: _Known, item: Inspected, model: str, report: SyncReport) -> None:
    """A known path whose size or mtime changed: same content, or a new picture to index."""
    path = str(item.candidate.path)
    if item.error and item.sha256 == unread_key(Path(path)):
        report.failed[path] = item.error  # unreadable now: keep what is recorded
        return
    if item.sha256 == row.sha256:
        stat = FileStat(item.size, item.mtime or 0.0)
        if row.status == ImageStatus.MISSING:
            _return(session, row.id, path, stat, model, report)
            return
        session.execute(update(Image).where(Image.id == row.id).values(
            file_size=item.size, file_mtime=item.mtime))
        report.unchanged += 1
        return
    other = session.scalar(select(Image.id).where(Image.sha256 == item.sha256))
    if other is not None:
        report.failed[path] = f"its new content is already stored as image #{other}"
        return
    session.execute(delete(Embedding).where(Embedding.image_id == row.id))
    session.execute(update(Image).where(Image.id == row.id).values(
        **item.file_columns(), missing_since=None, attempts=0, indexed_at=None,
        status=ImageStatus.FAILED if item.error else ImageStatus.REGISTERED))
    # Its words are read again from the new content once it is indexed.
    forget_text(session, row.id)
    if not item.error:  # a broken file says nothing new; it is read again once mended
        replace_derived_captions(session, row.id, name=Path(path).name, text=item.facts.text)
    # Its coordinates were just written anew (none for a broken file): so is its place.
    place_images(session, {row.id: (item.facts.latitude, item.facts.longitude)})
    report.changed_ids.append(row.id)
    if item.error:
        report.failed[path] = item.error
    else:
        report.to_queue.append(row.id)


def _leave_out_deleted(session: Session, fresh: list[Inspected], bring_back: bool, model: str,
                       report: SyncReport) -> list[Inspected]:
    """New paths whose content is that of a deleted picture are left out, and their paths
    remembered (so they are not read again); with `bring_back` those pictures come back."""
    hashes = {item.sha256 for item in fresh if not item.error}
    if not hashes:
        return fresh
    forgotten = forgotten_hashes(session, hashes)
    trashed = dict(session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(hashes),
                                                                         ~in_library())).all())
    if bring_back:
        remember_again(session, hashes=forgotten)
        if trashed:
            restored = restore_images(session, Selection(image_ids=tuple(trashed.values())), model=model)
            report.restored_ids += restored.image_ids
            report.to_queue += restored.to_queue
        return fresh
    deleted = {str(item.candidate.path): item.sha256 for item in fresh
               if not item.error and item.sha256 in forgotten | set(trashed)}
    forget_files(session, deleted.items())
    report.deleted += len(deleted)
    return [item for item in fresh if str(item.candidate.path) not in deleted]


def _place_new(session: Session, fresh: list[Inspected], gone: dict[str, _Known], model: str,
               report: SyncReport) -> None:
    """New paths: moves of known pictures whose old file is gone, duplicates, or new images."""
    hashes = {item.sha256 for item in fresh if not item.error}
    by_hash = {row.sha256: _Known(*row) for row in session.execute(
        _known_rows().where(Image.sha256.in_(hashes)))} if hashes else {}
    unknown: list[Inspected] = []
    for item in fresh:
        path = str(item.candidate.path)
        row = by_hash.get(item.sha256) if not item.error else None
        if row is None:
            unknown.append(item)
            continue
        if row.path not in gone and row.status != ImageStatus.MISSING \
                and os.path.lexists(row.path):
            _remember_copy(session, item, row.id)  # the same picture in two places
            report.duplicate_ids.append(row.id)
            continue
        gone.pop(row.path, None)
        if row.status == ImageStatus.MISSING:
            _return(session, row.id, path, FileStat(item.size, item.mtime or 0.0), model, report)
        else:
            session.execute(update(Image).where(Image.id == row.id).values(
                path=path, original_name=Path(path).name,
                file_size=item.size, file_mtime=item.mtime))
            report.moved_ids.append(row.id)
            if row.failed_for_its_file(read_now=True):  # renamed before the worker read it
                _queue_again(session, row.id, report)
        if Path(row.path).name != Path(path).name:  # renamed: its name may say something else now
            replace_derived_captions(session, row.id, name=Path(path).name, text=item.facts.text)
        # A second copy at another new path is then a duplicate of this one.
        by_hash[item.sha256] = _Known(row.id, path, row.sha256, item.size, item.mtime, "moved")
    registered = register_inspected(session, unknown)
    report.new_ids += registered.new_ids
    report.duplicate_ids += registered.duplicate_ids
    if registered.duplicate_ids:  # two copies among the new files: the one not stored is remembered
        stored = {sha: (image_id, path) for image_id, sha, path in session.execute(
            select(Image.id, Image.sha256, Image.path).where(Image.id.in_(registered.duplicate_ids)))}
        for item in unknown:
            image_id, path = stored.get(item.sha256, (0, ""))
            if image_id and path != str(item.candidate.path):
                _remember_copy(session, item, image_id)
    # Recorded as failed images with their reasons, as an import does.
    report.failed.update({str(item.candidate.path): item.error for item in unknown if item.error})


def _remember_copy(session: Session, item: Inspected, image_id: int) -> None:
    values = {"path": str(item.candidate.path), "image_id": image_id, "file_size": item.size,
              "file_mtime": item.mtime or 0.0}
    session.execute(pg_insert(DuplicateFile).values(**values).on_conflict_do_update(
        index_elements=["path"], set_=values))


def _move_to_copies(session: Session, gone: dict[str, _Known], report: SyncReport) -> None:
    """Images whose file is gone but whose copy is still there take the copy's path."""
    by_id = {row.id: path for path, row in gone.items() if row.status != ImageStatus.MISSING}
    if not by_id:
        return
    for copy in session.scalars(select(DuplicateFile).where(DuplicateFile.image_id.in_(by_id))):
        if copy.image_id not in by_id or not os.path.lexists(copy.path):
            continue
        row = gone.pop(by_id.pop(copy.image_id))
        session.execute(update(Image).where(Image.id == row.id).values(
            path=copy.path, original_name=Path(copy.path).name, file_size=copy.file_size,
            file_mtime=copy.file_mtime))
        if Path(row.path).name != Path(copy.path).name:
            replace_derived_captions(session, row.id, name=Path(copy.path).name, text=None)
        session.delete(copy)
        report.moved_ids.append(row.id)


def _mark_missing(session: Session, rows: Sequence[_Known], report: SyncReport) -> None:
    ids = [row.id for row in rows]
    if ids:
        session.execute(update(Image).where(Image.id.in_(ids)).values(
            status=ImageStatus.MISSING, missing_since=func.now()))
    report.missing_ids += ids


def prune_missing(session: Session, *, store: Path, thumbnails: Path,
                  older_than_days: int | None = None) -> int:
    """Remove for good the images missing for longer than `older_than_days` (all by default).

    Through the one deletion service, which commits: rows, captions, embeddings and derived
    pictures go; the user's files are never touched.
    """
    statement = select(Image.id).where(Image.status == ImageStatus.MISSING)
    if older_than_days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        statement = statement.where(Image.missing_since < cutoff)
    ids = list(session.scalars(statement))
    if ids:
        # Their files are gone: nothing is left on disk to remember as deleted.
        purge_images(session, Selection(image_ids=tuple(ids)), store=store, thumbnails=thumbnails,
                     forget=False)
    return len(ids)
