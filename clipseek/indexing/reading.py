"""Reading the words in indexed pictures: what waits to be read, reading it, and the outcome.

A picture is read after CLIP has indexed it, never before: its words are kept as one caption
with source `ocr` (so every text search covers them), and the image's `ocr_state` says
whether it was read, failed (with the reason in `ocr_error`) or skipped. A failure here
never touches the image's own status: it stays searchable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, and_, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from clipseek.indexing.text_reader import TextFound, TextReader
from clipseek.photo.caption_text import shorten
from clipseek.photo.imaging import ImageDecodeError
from clipseek.store.db import Database
from clipseek.store.tables import WAITING, Caption, CaptionSource, Image, ImageStatus, OcrState

log = logging.getLogger(__name__)

# Pictures per read task: a few seconds of work, so a worker soon looks at its queues again.
READ_BATCH = 8

# Sends one batch of image ids to be read.
EnqueueReading = Callable[[list[int]], None]


def waits_to_be_read() -> ColumnElement[bool]:
    """SQL condition: the image is indexed and its words are not read yet (images_ocr_waiting_idx)."""
    return and_(Image.ocr_state.is_(None), Image.status == ImageStatus.INDEXED)


@dataclass
class ReadReport:
    """What one pass of reading did."""

    read: list[int] = field(default_factory=list)
    with_text: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    # Left for later because indexing work was waiting (sent again by the caller).
    handed_back: list[int] = field(default_factory=list)


# Ids per statement when many are asked about (a whole collection waits after an upgrade):
# PostgreSQL's protocol takes at most 65,535 parameters.
IDS_PER_STATEMENT = 10_000


def waiting_among(session: Session, image_ids: Sequence[int],
                  waiting: ColumnElement[bool]) -> list[tuple[int, str]]:
    """Of these ids, the (id, path) of the images that meet `waiting`, in id order.

    Shared by every enrichment that runs after indexing (words read, faces found).
    """
    ids = sorted(image_ids)
    found: list[tuple[int, str]] = []
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        rows = session.execute(select(Image.id, Image.path).where(
            Image.id.in_(ids[start:start + IDS_PER_STATEMENT]), waiting).order_by(Image.id))
        found += [(row.id, row.path) for row in rows]
    return found


def send_in_tasks(ids: Sequence[int], batch: int, enqueue: Callable[[list[int]], None]) -> int:
    """Send these ids in tasks of `batch`; return the number of tasks."""
    tasks = [list(ids[i:i + batch]) for i in range(0, len(ids), batch)]
    for task in tasks:
        enqueue(task)
    return len(tasks)


def images_to_read(session: Session, image_ids: Sequence[int]) -> list[tuple[int, str]]:
    """Of these ids, the (id, path) of the images that wait to be read."""
    return waiting_among(session, image_ids, waits_to_be_read())


def queue_for_reading(session: Session, image_ids: Sequence[int], *, enqueue: EnqueueReading) -> int:
    """Send the images among these that wait to be read, in tasks; return the number of tasks.

    The caller has committed: a worker never receives an id it cannot see yet.
    """
    ids = [image_id for image_id, _ in images_to_read(session, image_ids)]
    session.commit()
    return send_in_tasks(ids, READ_BATCH, enqueue)


def skip_reading(session: Session, image_ids: Sequence[int]) -> list[int]:
    """Mark the images among these that wait to be read as skipped; return them. The caller commits."""
    return list(session.scalars(
        update(Image).where(Image.id.in_(image_ids), waits_to_be_read())
        .values(ocr_state=OcrState.SKIPPED, ocr_error=None, ocr_at=func.now()).returning(Image.id)))


def record_text(session: Session, image_id: int, found: TextFound) -> bool:
    """Keep what was read in one image (its `ocr` caption) and mark it read; False if it is gone.

    The caller commits.
    """
    # Locked until the commit: a deletion waits (the caption's foreign key cannot fail), and
    # so does a second reader of the same image (a task sent twice), which then finds it read.
    row = session.execute(select(Image.id, Image.ocr_state).where(Image.id == image_id)
                          .with_for_update()).first()
    if row is None:
        return False
    if row.ocr_state is not None:
        return True
    session.execute(delete(Caption).where(Caption.image_id == image_id, Caption.source == CaptionSource.OCR))
    if found.lines:
        session.execute(insert(Caption).values(
            image_id=image_id, source=CaptionSource.OCR, text=shorten(found.text),
            confidence=found.confidence, boxes=[line.box for line in found.lines]))
    session.execute(update(Image).where(Image.id == image_id)
                    .values(ocr_state=OcrState.READ, ocr_error=None, ocr_at=func.now()))
    return True


def record_failure(session: Session, image_id: int, reason: str) -> None:
    """Mark one image's reading failed with the reason; its status stays as it is. The caller commits."""
    session.execute(update(Image).where(Image.id == image_id)
                    .values(ocr_state=OcrState.FAILED, ocr_error=reason, ocr_at=func.now()))


# How long a reading worker waits for the index task of pictures that wait to be indexed
# (an import registers its files before it sends their task) before it hands its batch back.
PATIENCE_S = 30.0


def make_way_for_indexing(session: Session, index_task_waits: Callable[[], bool], *,
                          patience_s: float = PATIENCE_S, poll_s: float = 0.25) -> bool:
    """Whether reading should stop now and leave the worker to indexing.

    Yes at once when an index task waits in the broker. While pictures wait to be indexed
    but their task is not there yet (an import is registering them, or another worker holds
    it), reading must not take the cores either: it waits, looking again every `poll_s`,
    and says yes if the task comes or `patience_s` passes, no once nothing waits.
    """
    deadline = time.monotonic() + patience_s
    while True:
        if index_task_waits():
            return True
        pending = session.scalar(select(exists().where(Image.status.in_(WAITING))))
        session.commit()  # no transaction stays open while it waits
        if not pending:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(poll_s)


def read_one(reader: TextReader, path: str, *, max_pixels: int) -> TextFound | str:
    """The text in one file, or the reason it could not be read."""
    try:
        return reader.read_file(Path(path), max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return str(exc)
    except MemoryError:
        return "the image is too large to decode in the available memory"
    except Exception as exc:  # the models' own errors (OpenCV, ONNX Runtime) must not end the batch
        log.exception("reading the words in %s failed", path)
        return f"the text reader failed ({type(exc).__name__}: {exc})"


def read_words(session: Session, reader: TextReader | None, image_ids: Sequence[int], *,
               max_pixels: int, hand_over: Callable[[], bool] = lambda: False) -> ReadReport:
    """Read the words in those of these images that wait for it, committing after each one.

    Without a reader (reading is off) they are marked skipped. Before each picture
    `hand_over` is asked whether indexing waits; if so, the rest are left in `handed_back`
    for the caller to send again. Images read already are passed over, so running it twice
    (or after a crash) is safe.
    """
    report = ReadReport()
    todo = images_to_read(session, image_ids)
    if reader is None:
        report.skipped = skip_reading(session, [image_id for image_id, _ in todo])
        session.commit()
        return report
    session.commit()  # no transaction stays open while the models run
    for position, (image_id, path) in enumerate(todo):
        if hand_over():
            report.handed_back = [i for i, _ in todo[position:]]
            break
        outcome = read_one(reader, path, max_pixels=max_pixels)
        if isinstance(outcome, str):
            record_failure(session, image_id, outcome)
            report.failed[image_id] = outcome
        elif record_text(session, image_id, outcome):
            report.read.append(image_id)
            if outcome.lines:
                report.with_text.append(image_id)
        session.commit()
    return report


def forget_text(session: Session, image_id: int) -> None:
    """Drop what was read in an image whose file changed, so that it is read again. The caller commits."""
    session.execute(delete(Caption).where(Caption.image_id == image_id, Caption.source == CaptionSource.OCR))
    session.execute(update(Image).where(Image.id == image_id)
                    .values(ocr_state=None, ocr_error=None, ocr_at=None))


def reset_for_reading(session: Session) -> list[int]:
    """Make every indexed image that was skipped or failed wait to be read again; return every
    image that now waits. The caller commits."""
    session.execute(update(Image).where(Image.ocr_state.in_((OcrState.SKIPPED, OcrState.FAILED)))
                    .values(ocr_state=None, ocr_error=None, ocr_at=None))
    return list(session.scalars(select(Image.id).where(waits_to_be_read()).order_by(Image.id)))


@dataclass(frozen=True)
class ReadingFailure:
    """An indexed image whose words could not be read, with the reason."""

    image_id: int
    name: str
    error: str | None
    at: datetime | None


@dataclass(frozen=True)
class ReadingCounts:
    """Where reading the words in the collection stands."""

    read: int
    with_text: int
    waiting: int
    failed: int
    skipped: int
    recent_failures: list[ReadingFailure] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the status API."""
        return {"read": self.read, "with_text": self.with_text, "waiting": self.waiting,
                "failed": self.failed, "skipped": self.skipped,
                "recent_failures": [{"image_id": f.image_id, "name": f.name, "error": f.error,
                                     "at": f.at.isoformat() if f.at else None}
                                    for f in self.recent_failures]}


def reading_counts(session: Session, *, recent_failures: int = 10) -> ReadingCounts:
    """How many images are read (and how many of those hold text), waiting, failed or skipped."""
    states = dict(session.execute(select(Image.ocr_state, func.count())
                                  .where(Image.ocr_state.is_not(None)).group_by(Image.ocr_state)).all())
    waiting = session.scalar(select(func.count()).select_from(Image).where(waits_to_be_read())) or 0
    with_text = session.scalar(select(func.count(func.distinct(Caption.image_id)))
                               .where(Caption.source == CaptionSource.OCR)) or 0
    failures = session.execute(
        select(Image.id, Image.original_name, Image.ocr_error, Image.ocr_at)
        .where(Image.ocr_state == OcrState.FAILED)
        .order_by(Image.ocr_at.desc(), Image.id.desc()).limit(recent_failures)).all()
    return ReadingCounts(
        read=states.get(OcrState.READ, 0), with_text=int(with_text), waiting=int(waiting),
        failed=states.get(OcrState.FAILED, 0), skipped=states.get(OcrState.SKIPPED, 0),
        recent_failures=[ReadingFailure(f.id, f.original_name, f.ocr_error, f.ocr_at) for f in failures])


def unread(session: Session, image_ids: Sequence[int]) -> int:
    """How many of these images still wait to be read."""
    ids = list(image_ids)
    return sum(int(session.scalar(select(func.count()).select_from(Image).where(
        Image.id.in_(ids[start:start + IDS_PER_STATEMENT]), waits_to_be_read())) or 0)
        for start in range(0, len(ids), IDS_PER_STATEMENT))


def wait_until_read(db: Database, image_ids: Sequence[int], *, timeout_s: float,
                    on_progress: Callable[[int], None] | None = None, poll_s: float = 0.5) -> int:
    """Poll until none of these images waits to be read, or the timeout passes; return how many still wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.session() as session:
            remaining = unread(session, image_ids)
        if on_progress:
            on_progress(len(image_ids) - remaining)
        if remaining == 0 or time.monotonic() >= deadline:
            return remaining
        time.sleep(poll_s)
