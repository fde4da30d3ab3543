"""Uploads: store each file under its content hash, register it, and say what became of it."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.catalog import stored_path
from clipseek.imaging import IMAGE_EXTENSIONS, ImageDecodeError, probe
from clipseek.models import Image
from clipseek.queueing import Enqueue, queue_for_indexing

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class UploadOutcome:
    """One uploaded file: its image id if it was kept, and a message for the person."""

    filename: str
    image_id: int | None
    state: str  # "registered", "duplicate" or "rejected"
    message: str

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"filename": self.filename, "image_id": self.image_id, "state": self.state,
                "message": self.message}


def _save_stream(stream: IO[bytes], folder: Path, limit: int) -> tuple[Path, str, int] | None:
    """Copy a stream to a temporary file, hashing it; None when it exceeds `limit` bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    handle, name = tempfile.mkstemp(dir=folder, suffix=".upload")
    with os.fdopen(handle, "wb") as out:
        while chunk := stream.read(1 << 16):
            size += len(chunk)
            if size > limit:
                out.close()
                os.unlink(name)
                return None
            digest.update(chunk)
            out.write(chunk)
    return Path(name), digest.hexdigest(), size


def store_upload(
    session: Session,
    *,
    filename: str,
    stream: IO[bytes],
    store: Path,
    max_pixels: int,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> UploadOutcome:
    """Keep one uploaded file if it is a usable image; the caller commits and queues."""
    safe_name = Path(filename or "upload").name[:200] or "upload"
    saved = _save_stream(stream, store / ".incoming", max_bytes)
    if saved is None:
        return UploadOutcome(safe_name, None, "rejected",
                             f"larger than the {max_bytes // (1024 * 1024)} MB limit")
    tmp, sha, size = saved
    existing = session.scalar(select(Image.id).where(Image.sha256 == sha))
    if existing is not None:
        tmp.unlink()
        return UploadOutcome(safe_name, existing, "duplicate", "already in the collection")
    try:
        info = probe(tmp, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        tmp.unlink()
        return UploadOutcome(safe_name, None, "rejected", f"not accepted: {exc}")
    suffix = Path(safe_name).suffix.lower()
    target = stored_path(store, sha, suffix if suffix in IMAGE_EXTENSIONS else f".{info.format.lower()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(target)
    # ON CONFLICT: the same picture uploaded twice at once is stored once.
    image_id = session.scalar(
        pg_insert(Image).values(
            sha256=sha, path=str(target), original_name=safe_name, source="upload",
            collection="uploads", file_size=size, width=info.width, height=info.height,
            format=info.format, status="registered",
        ).on_conflict_do_nothing(index_elements=["sha256"]).returning(Image.id)
    )
    if image_id is None:
        return UploadOutcome(safe_name, session.scalar(select(Image.id).where(Image.sha256 == sha)),
                             "duplicate", "already in the collection")
    return UploadOutcome(safe_name, image_id, "registered", "stored; waiting to be indexed")


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
) -> list[UploadOutcome]:
    """Store every usable file, commit, and queue the new ones for the workers.

    One bad file never costs the others: each gets its own outcome. If the queue cannot be
    reached, the images stay registered (the periodic stale check queues them later).
    """
    outcomes = [store_upload(session, filename=name, stream=stream, store=store, max_pixels=max_pixels)
                for name, stream in files]
    unsent: list[Exception] = []

    def send(ids: list[int], batch_model: str) -> None:
        try:
            enqueue(ids, batch_model)
        except Exception as exc:  # whatever the broker raises, the stored files must stay stored
            unsent.append(exc)

    queue_for_indexing(session, registered_ids(outcomes), model=model, batch_size=batch_size,
                       enqueue=send)
    if unsent:
        # Still recorded as queued: the workers' periodic stale check sends them again.
        log.warning("uploads stored but not queued (%s); the stale check will queue them", unsent[0])
    return outcomes
