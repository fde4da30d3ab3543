"""Uploads: store each file under its content hash, register it, and say what became of it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from clipseek.indexing.hash_pairs import pair_hashed
from clipseek.indexing.queueing import Enqueue, queue_for_indexing
from clipseek.library.captions import add_derived_captions
from clipseek.library.collections import UPLOADS
from clipseek.library.duplicates import look_alikes
from clipseek.library.places import place_images
from clipseek.library.register import stored_path
from clipseek.library.store import INCOMING, writing_to
from clipseek.photo.imaging import IMAGE_EXTENSIONS, ImageDecodeError, probe_with_facts
from clipseek.photo.perceptual_hash import hash_file
from clipseek.settings import DEFAULT_DUPLICATE_DISTANCE
from clipseek.store.tables import Image, ImageStatus, UploadRejection

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
STORED = "stored; waiting to be indexed"
MAX_NAME_CHARS = 200
# Uploads are copied here first, then moved into the store (same file system, so the move is atomic).


@dataclass(frozen=True)
class UploadOutcome:
    """One uploaded file: its image id if it was kept, and a message for the person."""

    filename: str
    image_id: int | None
    state: str  # "registered", "duplicate" or "rejected"
    message: str
    size: int | None = None  # bytes, where they were counted
    # A picture already in the library that this new one looks like (a near-duplicate).
    looks_like: int | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"filename": self.filename, "image_id": self.image_id, "state": self.state,
                "message": self.message, "size": self.size, "looks_like": self.looks_like}


def _save_stream(stream: IO[bytes], folder: Path, limit: int) -> tuple[Path, str, int] | None:
    """Copy a stream to a temporary file, hashing it; None when it exceeds `limit` bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    handle, name = tempfile.mkstemp(dir=folder, suffix=".upload")
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := stream.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    break
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    if size > limit:
        os.unlink(name)
        return None
    return Path(name), digest.hexdigest(), size


@dataclass(frozen=True)
class _Placed:
    """A file this upload moved into the store, known by its inode."""

    path: Path
    inode: int

    def remove(self) -> None:
        """Delete the file, unless another upload of the same picture has replaced it since."""
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()


def clean_upload_name(filename: str) -> str:
    """The file's own name without folders or control characters; "upload" if nothing is left."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    # PostgreSQL text cannot hold NUL, and other controls or direction overrides would
    # garble the pages and logs that show the name.
    kept = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf", "Cs")).strip()
    return kept[:MAX_NAME_CHARS] if kept not in ("", ".", "..") else "upload"


def _store_one(
    session: Session, *, filename: str, stream: IO[bytes], store: Path, max_pixels: int, max_bytes: int,
    collection: str,
) -> tuple[UploadOutcome, _Placed | None]:
    """Keep one uploaded file if it is a usable image; the caller commits, or removes what was placed."""
    name = clean_upload_name(filename)
    try:
        saved = _save_stream(stream, store / INCOMING, max_bytes)
    except OSError as exc:
        log.warning("upload %r was not stored: %s", name, exc)
        return UploadOutcome(name, None, "rejected",
                             f"could not be written to the image store ({exc.strerror or exc})"), None
    if saved is None:
        return too_large(name, None, max_bytes), None
    tmp, sha, size = saved
    try:
        return _register(session, name, tmp, sha, size, store=store, max_pixels=max_pixels,
                         collection=collection)
    finally:
        tmp.unlink(missing_ok=True)


def _upload_hash(path: Path, max_pixels: int) -> str | None:
    """The perceptual hash of an upload, decoded as a worker decodes it; None if it cannot be.

    An upload is hashed at once, so that the answer can say which picture it looks like; a
    file that fails to decode here fails again at indexing, with its reason.
    """
    try:
        return hash_file(path, max_pixels=max_pixels)
    except (ImageDecodeError, MemoryError):
        return None


def _register(session: Session, name: str, tmp: Path, sha: str, size: int, *, store: Path,
              max_pixels: int, collection: str) -> tuple[UploadOutcome, _Placed | None]:
    existing = session.execute(select(Image.id, Image.trashed_at).where(Image.sha256 == sha)).first()
    if existing is not None:
        where = ("in the trash (the Trash page restores it)" if existing.trashed_at is not None
                 else "already in the collection")
        return UploadOutcome(name, existing.id, "duplicate", where), None
    try:
        info, facts = probe_with_facts(tmp, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return UploadOutcome(name, None, "rejected", str(exc), size), None
    phash = _upload_hash(tmp, max_pixels)
    suffix = Path(name).suffix.lower()
    target = stored_path(store, sha, suffix if suffix in IMAGE_EXTENSIONS else f".{info.format.lower()}")
    placed: _Placed | None = None
    try:
        # The row first, then the file, in one savepoint: a failure undoes both, and the
        # file is in place before the commit lets a worker see the row.
        with session.begin_nested():
            # ON CONFLICT: the same picture uploaded twice at once is stored once.
            image_id = session.scalar(
                pg_insert(Image).values(
                    sha256=sha, path=str(target), original_name=name, source="upload",
                    collection=collection, file_size=size, width=info.width, height=info.height,
                    format=info.format, status=ImageStatus.REGISTERED, phash=phash, **facts.columns(),
                ).on_conflict_do_nothing(index_elements=["sha256"]).returning(Image.id)
            )
            if image_id is None:
                return UploadOutcome(name, session.scalar(select(Image.id).where(Image.sha256 == sha)),
                                     "duplicate", "already in the collection"), None
            add_derived_captions(session, image_id, name=name, text=facts.text)
            if facts.latitude is not None:
                place_images(session, {image_id: (facts.latitude, facts.longitude)})
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(target)
            placed = _Placed(target, target.stat().st_ino)
    except (OperationalError, InterfaceError):
        # The database itself is gone: no file is to blame, so the whole upload fails.
        if placed is not None:
            placed.remove()
        raise
    except (SQLAlchemyError, OSError) as exc:
        if placed is not None:
            placed.remove()
        log.warning("upload %r was not stored: %s", name, exc)
        return UploadOutcome(name, None, "rejected",
                             "could not be recorded; try again (the server log says why)", size), None
    return UploadOutcome(name, image_id, "registered", STORED, size), placed


def _with_look_alikes(session: Session, outcomes: list[UploadOutcome], *,
                      distance: int) -> list[UploadOutcome]:
    """The outcomes, each new picture saying which earlier one it looks like; pairs its hash first.

    Its pairs are looked up once its row is committed (so that an upload beside it sees its
    hash); if the database fails here, the scheduler pairs it later and the answer says nothing.
    """
    new = registered_ids(outcomes)
    if not new:
        return outcomes
    try:
        pair_hashed(session, new)
        session.commit()
        earlier = look_alikes(session, new, distance=distance)
    except SQLAlchemyError as exc:
        log.warning("uploads stored, their look-alikes not looked up yet: %s", exc)
        with contextlib.suppress(SQLAlchemyError):
            session.rollback()
        return outcomes
    return [replace(o, message=f"{STORED}; looks like image {earlier[o.image_id]}, already in the collection",
                    looks_like=earlier[o.image_id])
            if o.state == "registered" and o.image_id in earlier else o for o in outcomes]


def too_large(filename: str, size: int | None, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadOutcome:
    """The outcome of a file over the per-file limit (also for one the browser did not send)."""
    return UploadOutcome(clean_upload_name(filename), None, "rejected",
                         f"larger than the {max_bytes // (1024 * 1024)} MB limit", size)


def record_rejections(session: Session, outcomes: Iterable[UploadOutcome], *, collection: str) -> None:
    """Keep a row for every rejected file, so that its reason outlives the response."""
    rows = [{"filename": o.filename, "file_size": o.size, "reason": o.message, "collection": collection}
            for o in outcomes if o.state == "rejected"]
    if rows:
        session.execute(pg_insert(UploadRejection).values(rows))


def recent_rejections(session: Session, *, limit: int = 50) -> list[UploadRejection]:
    """The latest files refused at upload, newest first."""
    return list(session.scalars(select(UploadRejection)
                                .order_by(UploadRejection.rejected_at.desc(), UploadRejection.id.desc())
                                .limit(limit)))


def registered_ids(outcomes: Iterable[UploadOutcome]) -> list[int]:
    """Ids of the uploads that were newly stored (to be queued)."""
    return [o.image_id for o in outcomes if o.state == "registered" and o.image_id is not None]


def accept_uploads(
    session: Session,
    files: Iterable[tuple[str, IO[bytes]]],
    *,
    store: Path,
    max_pixels: int,
    model: str,
    batch_size: int,
    enqueue: Enqueue,
    max_bytes: int = MAX_UPLOAD_BYTES,
    collection: str = UPLOADS,
    refused: Iterable[UploadOutcome] = (),
    duplicate_distance: int = DEFAULT_DUPLICATE_DISTANCE,
) -> list[UploadOutcome]:
    """Store every usable file, commit, and queue the new ones for the workers.

    One bad file never costs the others: each gets its own outcome. Every file in the store
    has its committed row: a file whose row cannot be written, or a whole upload whose commit
    fails, is removed again. If the queue cannot be reached, the images stay registered (the
    recovery check of a worker started with --beat queues them within seconds of the broker coming back).
    `refused` are files already turned away unread (the browser found them too large); they
    are recorded with the others. Every rejection is kept in upload_rejections. Each new
    picture is hashed and says which earlier one it looks like (at most `duplicate_distance`
    bits apart), if any.
    """
    outcomes: list[UploadOutcome] = list(refused)
    placed: list[_Placed] = []
    try:
        with writing_to(store):
            for name, stream in files:
                outcome, where = _store_one(session, filename=name, stream=stream, store=store,
                                            max_pixels=max_pixels, max_bytes=max_bytes,
                                            collection=collection)
                outcomes.append(outcome)
                if where is not None:
                    placed.append(where)
            record_rejections(session, outcomes, collection=collection)
            session.commit()
    except BaseException:
        # Their rows were never committed: the files go too, before a concurrent upload of
        # the same picture can take their place.
        for where in placed:
            where.remove()
        with contextlib.suppress(SQLAlchemyError):
            session.rollback()
        raise
    outcomes = _with_look_alikes(session, outcomes, distance=duplicate_distance)
    unsent: list[Exception] = []

    def send(ids: list[int], batch_model: str) -> None:
        try:
            enqueue(ids, batch_model)
        except Exception as exc:  # whatever the broker raises, the stored files must stay stored
            unsent.append(exc)

    queue_for_indexing(session, registered_ids(outcomes), model=model, batch_size=batch_size,
                       enqueue=send)
    if unsent:
        # Still recorded as queued: the recovery check sends them again once the broker answers.
        log.warning("uploads stored but not queued (%s); the recovery check will queue them", unsent[0])
    return outcomes
