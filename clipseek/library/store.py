"""The image store after a crash: temporary files removed, files without a row registered or removed."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from clipseek.library.register import Candidate, register_batch
from clipseek.photo.imaging import ImageDecodeError, probe
from clipseek.store.tables import Image
from clipseek.util.hashing import sha256_of

log = logging.getLogger(__name__)

# Where uploads are written before they are known to be usable images.
INCOMING = ".incoming"
RECOVERED_COLLECTION = "recovered"
# Writers to the store (uploads, copying imports) hold it shared while their files lack a
# committed row; a reconciliation holds it exclusively. The kernel drops a lock with its
# process, so a writer that was killed leaves nothing that looks in flight.
LOCK_NAME = ".writers.lock"


@contextlib.contextmanager
def writing_to(store: Path) -> Iterator[None]:
    """Hold the store's lock shared while files are placed in it and their rows committed."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class StoreRepair:
    """What one reconciliation did: temporary files removed, images registered, files removed."""

    removed_temporary: int = 0
    registered_ids: list[int] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    busy: bool = False


def reconcile_image_store(session: Session, *, store: Path, max_pixels: int) -> StoreRepair:
    """Clean up after uploads and copying imports that died half-way; the caller commits and queues.

    `clipseek up` and `clipseek worker` call it when they start (the web app does not: gunicorn
    runs it in several processes, and it may be bound where it cannot see the whole store);
    it runs only while no upload or copying import is placing files (the store's lock, held
    exclusively), and is skipped (`busy`) otherwise, to be done at a later start. Temporary
    files are removed. A stored file without a row is registered, so that it gets indexed and
    nothing that was sent is lost, when it is a usable image not yet in the collection; a
    second copy of a picture whose row has its own file, or a file that is not an image, is
    removed.
    """
    repair = StoreRepair()
    if not store.is_dir():
        return repair
    with _lock(store) as held:
        if not held:
            repair.busy = True
            return repair
        repair.removed_temporary = _remove_temporary(store)
        known = set(session.scalars(
            select(Image.path).where(Image.path.startswith(f"{store}/", autoescape=True))))
        orphans = [p for p in _stored_files(store) if str(p) not in known]
        usable = [p for p in orphans if _usable_orphan(session, p, max_pixels, repair)]
        if usable:
            candidates = [Candidate(path=p, source="upload", collection=RECOVERED_COLLECTION) for p in usable]
            with ThreadPoolExecutor(max_workers=2) as pool:
                repair.registered_ids = register_batch(session, candidates, max_pixels=max_pixels,
                                                       pool=pool).new_ids
        if repair.registered_ids:
            log.warning("Registered %d image file(s) found in %s without a row (left by an "
                        "interrupted upload or import); they will be indexed.",
                        len(repair.registered_ids), store)
    if repair.removed_temporary:
        log.warning("Removed %d temporary file(s) left in %s by an interrupted upload or import.",
                    repair.removed_temporary, store)
    return repair


@contextlib.contextmanager
def _lock(store: Path) -> Iterator[bool]:
    with open(store / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shard_files(store: Path) -> Iterator[Path]:
    # Only the two-hex-digit shard folders the store writes; anything else is not ours to judge.
    for shard in sorted(store.iterdir()):
        if shard.is_dir() and len(shard.name) == 2 and set(shard.name) <= set(string.hexdigits):
            yield from sorted(p for p in shard.iterdir() if p.is_file() and not p.name.startswith("."))


def _stored_files(store: Path) -> Iterator[Path]:
    return (p for p in _shard_files(store) if p.suffix != ".tmp")


def _remove_temporary(store: Path) -> int:
    # Upload copies in .incoming, and an import's half-copied "<name>.tmp" in a shard.
    copies = (p for p in _shard_files(store) if p.suffix == ".tmp")
    temporary = [*(store / INCOMING).glob("*.upload"), *copies]
    removed = 0
    for path in temporary:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _usable_orphan(session: Session, path: Path, max_pixels: int, repair: StoreRepair) -> bool:
    """Whether a file without a row is to be registered; removes it when it is of no use."""
    owner = session.scalar(select(Image.path).where(Image.sha256 == sha256_of(path)))
    if owner is not None:
        if Path(owner).is_file():
            _remove(path, repair, f"a second copy of the picture at {owner}")
        else:
            # A moved data folder leaves rows naming the old place: this may be their only copy.
            log.warning("Kept %s: it has no row, but the row of its picture names %s, which is missing.",
                        path, owner)
        return False
    try:
        probe(path, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        _remove(path, repair, f"not a usable image ({exc})")
        return False
    return True


def _remove(path: Path, repair: StoreRepair, why: str) -> None:
    path.unlink(missing_ok=True)
    repair.removed.append(path)
    log.warning("Removed %s from the image store: it had no row, and is %s.", path, why)
