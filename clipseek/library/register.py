"""Registering image files: hashing, deduplicating, probing and recording them."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.library.captions import add_derived_captions
from clipseek.library.excludes import Excludes
from clipseek.library.places import Coordinates, place_images
from clipseek.library.scan import FolderScan, scan_folder
from clipseek.photo.imaging import ImageDecodeError, probe_with_facts
from clipseek.photo.metadata import PhotoFacts
from clipseek.store.tables import Caption, Image, ImageStatus
from clipseek.util.hashing import sha256_of


@dataclass(frozen=True)
class Candidate:
    """A file to register, with where it came from and any captions it arrives with."""

    path: Path
    source: str
    collection: str | None = None
    captions: tuple[str, ...] = ()
    original_name: str | None = None


@dataclass
class RegisterReport:
    """What one registration pass did: new ids, and what it skipped and why."""

    new_ids: list[int] = field(default_factory=list)
    failed_ids: list[int] = field(default_factory=list)
    duplicate_ids: list[int] = field(default_factory=list)
    already_known: int = 0

    def merge(self, other: RegisterReport) -> None:
        """Add another pass's counts to this one."""
        self.new_ids += other.new_ids
        self.failed_ids += other.failed_ids
        self.duplicate_ids += other.duplicate_ids
        self.already_known += other.already_known


def discover_files(paths: Iterable[Path], *, all_files: bool = False, excludes: Excludes | None = None,
                   on_scan: Callable[[Path, FolderScan], None] | None = None) -> Iterator[Path]:
    """Yield image files under the given folders (recursively, sorted) and the given files.

    Folders are walked as a sync walks them (clipseek.library.scan): hidden files, NAS/OS
    litter and what `excludes` or a .clipseekignore names are left out, and so are files
    not named like images unless `all_files`; `on_scan` receives each folder's scan, with
    what it left out and why.
    """
    for path in paths:
        if path.is_dir():
            scan = scan_folder(path, all_files=all_files, excludes=excludes)
            if on_scan:
                on_scan(path, scan)
            yield from (Path(found) for found in sorted(scan.files))
        elif path.exists():
            # A file named explicitly is registered whatever its name, so that a bad one is
            # reported as failed rather than silently ignored.
            yield path.absolute()
        else:
            raise FileNotFoundError(f"{path} does not exist.")


def unread_key(path: Path) -> str:
    """What stands in for the content hash of a file that could not be read: its path's hash.

    Unique like a content hash, so the failed file still gets its row and its reason.
    """
    return hashlib.sha256(str(path).encode()).hexdigest()


@dataclass(frozen=True)
class Inspected:
    """One file as read: its hash, size, mtime, pixels, EXIF facts, or why it is unusable."""

    candidate: Candidate
    sha256: str
    size: int
    width: int | None
    height: int | None
    format: str | None
    error: str | None
    mtime: float | None = None
    facts: PhotoFacts = field(default_factory=PhotoFacts)

    def file_columns(self) -> dict[str, object]:
        """What the images table records of the file's content: hash, size, pixels, EXIF."""
        # The perceptual hash comes from the pixels decoded for indexing: new content has none
        # until then, so that a changed file never keeps its old picture's hash.
        return {"sha256": self.sha256, "file_size": self.size, "file_mtime": self.mtime,
                "width": self.width, "height": self.height, "format": self.format,
                "error": self.error, "phash": None, **self.facts.columns()}


def inspect_file(candidate: Candidate, max_pixels: int) -> Inspected:
    """Hash, stat and probe one file (reading its EXIF too); an unusable one carries the reason."""
    path = candidate.path
    try:
        # Stat before hashing: a file edited meanwhile then looks changed to the next sync.
        stat = path.stat()
        sha, size, mtime = sha256_of(path), stat.st_size, stat.st_mtime
    except OSError as exc:
        return Inspected(candidate, unread_key(path), 0,
                          None, None, None, f"cannot read the file ({exc.strerror or exc})")
    try:
        info, facts = probe_with_facts(path, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return Inspected(candidate, sha, size, None, None, None, str(exc), mtime)
    return Inspected(candidate, sha, size, info.width, info.height, info.format, None, mtime, facts)


def stored_path(store: Path, sha256: str, suffix: str) -> Path:
    """Where the image store keeps a copied file: sharded by the first hash characters."""
    return store / sha256[:2] / f"{sha256}{suffix.lower()}"


def register_batch(
    session: Session,
    candidates: Sequence[Candidate],
    *,
    max_pixels: int,
    pool: ThreadPoolExecutor,
    copy_to: Path | None = None,
) -> RegisterReport:
    """Record a batch of files as images (status registered, or failed with the reason).

    Files whose path is already recorded are skipped without being read, so a repeated
    import resumes quickly; files whose content is already known count as duplicates.
    The caller commits.
    """
    report = RegisterReport()
    paths = [str(c.path) for c in candidates]
    known = set(session.scalars(select(Image.path).where(Image.path.in_(paths))))
    fresh = [c for c in candidates if str(c.path) not in known]
    report.already_known = len(candidates) - len(fresh)
    inspected = list(pool.map(lambda c: inspect_file(c, max_pixels), fresh))
    report.merge(register_inspected(session, inspected, copy_to=copy_to))
    return report


def register_inspected(session: Session, inspected: Sequence[Inspected], *,
                       copy_to: Path | None = None) -> RegisterReport:
    """Record files already read as images; known contents count as duplicates. The caller commits."""
    report = RegisterReport()
    coordinates: dict[int, Coordinates] = {}
    for item in inspected:
        image_id = _insert_image(session, item, copy_to)
        if image_id is None:
            existing = session.scalar(select(Image.id).where(Image.sha256 == item.sha256))
            if existing is not None:
                report.duplicate_ids.append(existing)
            continue
        if item.candidate.captions:
            session.execute(insert(Caption), [
                {"image_id": image_id, "text": text, "source": item.candidate.source}
                for text in item.candidate.captions
            ])
        elif item.error is None:
            # Pictures that arrive without captions (folders, uploads) speak through their
            # name and their own EXIF/XMP text; those with captions (COCO) keep only theirs.
            add_derived_captions(session, image_id, name=_name(item), text=item.facts.text)
        if item.facts.latitude is not None:
            coordinates[image_id] = (item.facts.latitude, item.facts.longitude)
        (report.failed_ids if item.error else report.new_ids).append(image_id)
    place_images(session, coordinates)
    return report


def _name(item: Inspected) -> str:
    return item.candidate.original_name or item.candidate.path.name


def _insert_image(session: Session, item: Inspected, copy_to: Path | None) -> int | None:
    path = item.candidate.path
    if copy_to is not None and item.error is None:
        target = stored_path(copy_to, item.sha256, path.suffix or ".img")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(target)
        path = target
    values = {
        **item.file_columns(),
        "path": str(path),
        "original_name": _name(item),
        "source": item.candidate.source,
        "collection": item.candidate.collection,
        "status": ImageStatus.FAILED if item.error else ImageStatus.REGISTERED,
    }
    # ON CONFLICT keeps two concurrent imports of the same picture from failing each other.
    statement = (
        pg_insert(Image).values(**values)
        .on_conflict_do_nothing(index_elements=["sha256"]).returning(Image.id)
    )
    return session.scalar(statement)
