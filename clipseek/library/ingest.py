"""Importing collections: register files in chunks, then index them in process or queue them."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder
from clipseek.indexing.encoding import IndexReport, index_images
from clipseek.indexing.queueing import Enqueue, queue_for_indexing
from clipseek.library.duplicates import look_alikes
from clipseek.library.register import Candidate, RegisterReport, register_batch
from clipseek.library.store import writing_to
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.switching.switch import active_model

REGISTER_CHUNK = 256


class RegistrationStopped(Exception):
    """Raised inside the registering thread when indexing has ended early."""


# Called with the session after each registered chunk is committed.
OnChunk = Callable[[Session, RegisterReport], None]
# Progress: how many files one more registered chunk held.
OnRegistered = Callable[[int], None]
# Progress: images indexed (or failed) so far, of those handed to the model so far.
OnIndexed = Callable[[int, int], None]


@dataclass
class IngestSummary:
    """What an import did, for the CLI's report and the Python API."""

    registered: RegisterReport = field(default_factory=RegisterReport)
    indexed: IndexReport = field(default_factory=IndexReport)
    seconds_registering: float = 0.0
    seconds_indexing: float = 0.0
    queued: int = 0
    # New pictures that look like one already in the library (known once they are indexed).
    look_alikes: int = 0

    @property
    def images_per_second(self) -> float:
        """Indexing throughput of this run (images embedded per second of indexing)."""
        done = len(self.indexed.indexed)
        return done / self.seconds_indexing if self.seconds_indexing > 0 else 0.0

    def lines(self) -> list[str]:
        """A short human-readable report."""
        reg, idx = self.registered, self.indexed
        out = [f"Registered {len(reg.new_ids) + len(reg.failed_ids)} new file(s) "
               f"({len(reg.failed_ids)} unreadable); {reg.already_known} already known, "
               f"{len(reg.duplicate_ids)} duplicate(s) of stored images."]
        if self.queued:
            out.append(f"Queued {self.queued} image(s) for the workers.")
        if idx.indexed or idx.failed:
            out.append(f"Indexed {len(idx.indexed)} image(s) in {self.seconds_indexing:.1f} s "
                       f"({self.images_per_second:.1f} images/s); {len(idx.failed)} failed.")
        if self.look_alikes:
            out.append(look_alike_line(self.look_alikes))
        return out


def look_alike_line(count: int) -> str:
    """What an import says of its new pictures that look like pictures already there."""
    return f"{count} look like pictures you already have (`clipseek duplicates` lists them)."


def _chunks(items: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@contextmanager
def decode_pool(settings: Settings) -> Iterator[ThreadPoolExecutor]:
    """Threads for hashing and decoding: Pillow and hashlib release the GIL."""
    with ThreadPoolExecutor(max_workers=settings.decode_workers,
                            thread_name_prefix="clipseek-decode") as pool:
        yield pool


def register_candidates(
    db: Database,
    candidates: Iterable[Candidate],
    *,
    settings: Settings,
    pool: ThreadPoolExecutor,
    copy: bool = False,
    on_chunk: OnChunk | None = None,
    on_registered: OnRegistered | None = None,
) -> RegisterReport:
    """Register files in chunks, committing each, so an interrupted import resumes."""
    report = RegisterReport()
    for chunk in _chunks(candidates, REGISTER_CHUNK):
        # A copying import places files in the store before their rows are committed.
        writing = writing_to(settings.image_store) if copy else contextlib.nullcontext()
        with db.session() as session, writing:
            done = register_batch(session, chunk, max_pixels=settings.max_image_pixels,
                                  pool=pool, copy_to=settings.image_store if copy else None)
            session.commit()
            if on_chunk:
                on_chunk(session, done)
        report.merge(done)
        if on_registered:
            on_registered(len(chunk))
    return report


def _index_as_registered(db: Database, encoder: Encoder, ready: queue.Queue[list[int] | None], *,
                         settings: Settings, pool: ThreadPoolExecutor,
                         on_indexed: OnIndexed | None) -> tuple[IndexReport, float]:
    """Embed each list of ids from `ready` until None; return the report and indexing seconds."""
    report = IndexReport()
    started: float | None = None
    handed = indexed = 0

    def batch_done(batch: IndexReport) -> None:
        nonlocal indexed
        indexed += len(batch.indexed) + len(batch.failed)
        if on_indexed:
            on_indexed(indexed, handed)

    with db.session() as session:
        while (ids := ready.get()) is not None:
            if not ids:
                continue
            if started is None:
                encoder.load()  # so that the throughput measures indexing, not loading
                started = time.perf_counter()
            handed += len(ids)
            if on_indexed:
                on_indexed(indexed, handed)
            report.merge(index_images(session, encoder, ids, pool=pool, batch_size=settings.batch_size,
                                      max_pixels=settings.max_image_pixels, on_batch=batch_done))
    return report, (time.perf_counter() - started if started is not None else 0.0)


def _register(summary: IngestSummary, db: Database, candidates: Iterable[Candidate], *,
              settings: Settings, pool: ThreadPoolExecutor, copy: bool, on_chunk: OnChunk,
              on_registered: OnRegistered | None) -> None:
    """Register into `summary`, handing each committed chunk to `on_chunk`."""
    started = time.perf_counter()
    summary.registered = register_candidates(db, candidates, settings=settings, pool=pool, copy=copy,
                                             on_chunk=on_chunk, on_registered=on_registered)
    summary.seconds_registering = time.perf_counter() - started


def ingest_inline(
    db: Database,
    encoder: Encoder,
    candidates: Iterable[Candidate],
    *,
    settings: Settings,
    copy: bool = False,
    extra_ids: Sequence[int] = (),
    on_registered: OnRegistered | None = None,
    on_indexed: OnIndexed | None = None,
) -> IngestSummary:
    """Register `candidates` and embed them (and `extra_ids`) in this process.

    Registration runs in a thread of its own and hands over each committed chunk, so the
    model embeds the first chunk while the next ones are hashed, probed and inserted.
    `on_registered` is called from that thread.
    """
    summary = IngestSummary()
    ready: queue.Queue[list[int] | None] = queue.Queue()
    if extra_ids:
        ready.put(sorted(extra_ids))
    stop = threading.Event()

    def hand_over(session: Session, done: RegisterReport) -> None:
        if stop.is_set():  # indexing failed or was interrupted: stop at this chunk boundary
            raise RegistrationStopped
        ready.put(done.new_ids)

    def register() -> None:
        try:
            _register(summary, db, candidates, settings=settings, pool=pool, copy=copy,
                      on_chunk=hand_over, on_registered=on_registered)
        finally:
            ready.put(None)

    with decode_pool(settings) as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipseek-register") as registrar:
        registering = registrar.submit(register)
        try:
            summary.indexed, summary.seconds_indexing = _index_as_registered(
                db, encoder, ready, settings=settings, pool=pool, on_indexed=on_indexed)
        finally:
            stop.set()
        registering.result()
    with db.session() as session:
        summary.look_alikes = len(look_alikes(session, summary.registered.new_ids,
                                              distance=settings.duplicate_distance))
    return summary


def ingest_queued(
    db: Database,
    candidates: Iterable[Candidate],
    *,
    settings: Settings,
    enqueue: Enqueue,
    copy: bool = False,
    extra_ids: Sequence[int] = (),
    on_registered: OnRegistered | None = None,
) -> IngestSummary:
    """Register `candidates` and queue them (and `extra_ids`) for the workers.

    Each chunk is queued as soon as its registration is committed, so that workers start
    on a large import while the rest of it is still being registered.
    """
    summary = IngestSummary()
    queued: set[int] = set()

    def send(session: Session, ids: Sequence[int]) -> None:
        queue_for_indexing(session, ids, model=active_model(session), batch_size=settings.batch_size,
                           enqueue=enqueue)
        queued.update(ids)

    with decode_pool(settings) as pool:
        _register(summary, db, candidates, settings=settings, pool=pool, copy=copy,
                  on_chunk=lambda session, done: send(session, done.new_ids), on_registered=on_registered)
    with db.session() as session:
        send(session, sorted(set(extra_ids) - queued))
    summary.queued = len(queued)
    return summary
