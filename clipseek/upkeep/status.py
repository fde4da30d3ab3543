"""Where the collection stands: counts per status and model, workers, the queue, recent failures,
and the move to another model when one is under way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clipseek.indexing.heartbeats import WorkerState, worker_states
from clipseek.indexing.reading import ReadingCounts, reading_counts
from clipseek.library.duplicates import HashCounts, hash_counts
from clipseek.library.people import PeopleCounts, people_counts
from clipseek.library.places import PlacesStatus, places_status
from clipseek.library.uploads import recent_rejections
from clipseek.search.run import count_searchable
from clipseek.settings import Settings
from clipseek.store.replicas import ReplicaState
from clipseek.store.tables import WAITING, EmbeddingCount, Image, ImageStatus, in_library
from clipseek.switching.switch import RATE_WINDOW_S, SwitchProgress, switch_progress
from clipseek.util.user_text import counted


@dataclass(frozen=True)
class Failure:
    """An image that could not be indexed, with the reason."""

    image_id: int
    path: str
    error: str | None
    at: datetime
    # The file's name as it arrived: an upload's path is an internal name in the store.
    name: str = ""


@dataclass(frozen=True)
class Rejection:
    """A file refused at upload, with the reason."""

    filename: str
    size: int | None
    reason: str
    collection: str | None
    at: datetime

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API."""
        return {"filename": self.filename, "size": self.size, "reason": self.reason,
                "collection": self.collection, "at": self.at.isoformat()}


@dataclass(frozen=True)
class StatusReport:
    """Everything the status page, `clipseek status` and /api/status show."""

    model: str
    by_status: dict[str, int]
    embeddings_by_model: dict[str, int]
    recent_failures: list[Failure]
    workers: list[WorkerState] = field(default_factory=list)
    # Tasks waiting in the broker; None when it did not answer in time.
    queue_depth: int | None = None
    # Images the active model has embedded and whose file is there (missing ones are not searched).
    searchable: int = 0
    recent_rejections: list[Rejection] = field(default_factory=list)
    # The move to another model under way, if any (searches use `model` until it completes).
    switch: SwitchProgress | None = None
    # Pictures in the trash: counted in no status above, restorable until it is emptied.
    in_trash: int = 0
    # Naming where pictures were taken from their GPS (never a reason to fail a picture).
    places: PlacesStatus = field(default_factory=PlacesStatus)
    # Reading the words in indexed pictures (an enrichment: its failures leave images searchable).
    reading: ReadingCounts | None = None
    # Perceptual hashes for near-duplicates, and those not yet compared with the others.
    hashes: HashCounts = field(default_factory=HashCounts)
    # The read-only replicas (DATABASE_READ_URL), each with its state and lag.
    replicas: list[ReplicaState] = field(default_factory=list)
    # Faces found and grouped into people (off by default; the caller's settings decide).
    people: PeopleCounts | None = None

    @property
    def switch_percent(self) -> int | None:
        """How much of the collection the incoming model has embedded, in whole percent."""
        return None if self.switch is None else percent_done(self.switch)

    @property
    def images(self) -> int:
        """Every image in the library, whatever its status (those in the trash are apart)."""
        return sum(self.by_status.values())

    @property
    def live_workers(self) -> list[WorkerState]:
        """Workers whose heartbeat is recent."""
        return [w for w in self.workers if w.alive]

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek status --json`."""
        return {
            "model": self.model,
            "images": self.images,
            "by_status": self.by_status,
            "in_trash": self.in_trash,
            "embeddings_by_model": self.embeddings_by_model,
            "searchable": self.searchable,
            "queue_depth": self.queue_depth,
            "workers": [w.name for w in self.live_workers],
            "worker_details": [w.to_dict() for w in self.workers],
            "recent_failures": [{"image_id": f.image_id, "name": f.name, "path": f.path,
                                 "error": f.error, "at": f.at.isoformat()}
                                for f in self.recent_failures],
            "recent_rejections": [r.to_dict() for r in self.recent_rejections],
            "switch": None if self.switch is None else {**self.switch.to_dict(),
                                                         "percent": self.switch_percent},
            "places": self.places.to_dict(),
            "words_in_pictures": None if self.reading is None else self.reading.to_dict(),
            "near_duplicates": self.hashes.to_dict(),
            "replicas": [r.to_dict() for r in self.replicas],
            "people": None if self.people is None else self.people.to_dict(),
        }


def reading_summary(reading: ReadingCounts, *, enabled: bool) -> str:
    """One line on reading words in pictures, worded the same by `clipseek status` and the Status page."""
    line = (f"{reading.read} picture(s) read ({reading.with_text} with text), {reading.waiting} waiting, "
            f"{reading.failed} failed, {reading.skipped} skipped")
    if not enabled:
        return line + "; reading is off (CLIPSEEK_OCR=0)."
    return line + "."


def hashes_summary(hashes: HashCounts) -> str:
    """One line on the hashes that near-duplicates compare, worded the same by `clipseek status`
    and the Status page."""
    line = f"{hashes.hashed} picture(s) hashed"
    if hashes.unhashed:
        line += f", {hashes.unhashed} indexed without a hash (`clipseek reindex --hashes` computes them)"
    if hashes.unpaired:
        line += (f", {hashes.unpaired} waiting to be compared with the others (the workers' scheduler "
                 "does it in the background, `clipseek reindex --hashes` at once)")
    return line + "."
def people_summary(people: PeopleCounts) -> str:
    """One line on people, worded the same by `clipseek status` and the Status page."""
    if not people.enabled:
        return (f"people is off: no faces are looked for ({people.faces} kept). "
                "`clipseek people enable` turns it on.")
    return (f"people is on: {counted(people.faces, 'face')} found, "
            f"{counted(people.people, 'person', 'people')} ({people.named} named), "
            f"{counted(people.waiting, 'picture')} waiting, {people.failed} failed.")


def percent_done(progress: SwitchProgress) -> int:
    """The incoming model's share of the collection, rounded down so 100% means switched."""
    if progress.total <= 0:
        return 100
    return min(100, progress.embedded * 100 // progress.total)


def places_summary(places: PlacesStatus) -> str:
    """One line on placing, as `clipseek status` prints it."""
    if not places.with_gps:
        return "No picture has GPS coordinates."
    line = f"{places.placed} of {places.with_gps} pictures with GPS placed"
    if places.waiting:
        line += f", {places.waiting} waiting (`clipseek reindex --places` looks them up)"
    if places.no_place:
        line += f", {places.no_place} with no place ({places.no_place_reason})"
    return line + "."


def duration_text(seconds: float) -> str:
    """A time left as a person says it: "under a minute", "about 12 min", "about 3 h 20 min"."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h" + (f" {minutes} min" if minutes else "")


def switch_summary(progress: SwitchProgress) -> str:
    """One line on a switch's progress, worded the same by `clipseek status` and the Status page."""
    done = f"{progress.embedded} of {progress.total} images embedded ({percent_done(progress)}%)"
    if progress.rate is None or progress.eta_s is None:
        # No recent vector: the workers have not started on it, or none is running.
        return f"{done}; none in the last {RATE_WINDOW_S // 60} minutes, so the time left is unknown."
    return f"{done} at {rate_text(progress.rate)}; {duration_text(progress.eta_s)} left."


def rate_text(per_second: float) -> str:
    """An embedding rate in a unit that keeps a slow CPU's readable: "3 images/min", "12.5 images/s"."""
    if per_second * 60 < 0.5:
        return "under 1 image/min"
    if per_second < 1:
        return f"{per_second * 60:.0f} images/min"
    return f"{per_second:.1f} images/s"


def collection_status(session: Session, *, model: str, recent_failures: int = 10,
                      queue_depth: int | None = None,
                      replicas: Sequence[ReplicaState] = (),
                      settings: Settings | None = None) -> StatusReport:
    """Counts of images per status (outside the trash) and in the trash, embeddings per model,
    workers and the latest failures.

    The queue depth is measured by the caller before the session is used, so that no
    database connection is held while the broker is asked (clipseek.indexing.broker.queue_depth).
    With `settings`, it says whether people is on and what it found.
    """
    by_status: dict[str, int] = dict.fromkeys(ImageStatus, 0)
    in_trash = 0
    for status, trashed, count in session.execute(select(Image.status, ~in_library(), func.count())
                                                  .group_by(Image.status, ~in_library())):
        if trashed:
            in_trash += count
        else:
            by_status[status] = count
    per_model = {row.model: row.images for row in session.execute(
        select(EmbeddingCount.model, EmbeddingCount.images).where(EmbeddingCount.images > 0)
        .order_by(EmbeddingCount.model))}
    failures = session.execute(
        select(Image.id, Image.path, Image.error, Image.updated_at, Image.original_name)
        .where(Image.status == ImageStatus.FAILED, in_library())
        .order_by(Image.updated_at.desc(), Image.id.desc()).limit(recent_failures)).all()
    return StatusReport(
        model=model, by_status=by_status, embeddings_by_model=per_model,
        recent_failures=[Failure(f.id, f.path, f.error, f.updated_at, f.original_name)
                         for f in failures],
        workers=worker_states(session), queue_depth=queue_depth,
        searchable=count_searchable(session, model),
        recent_rejections=[Rejection(r.filename, r.file_size, r.reason, r.collection, r.rejected_at)
                           for r in recent_rejections(session, limit=recent_failures)],
        switch=switch_progress(session), in_trash=in_trash,
        places=places_status(session, recent=recent_failures),
        reading=reading_counts(session, recent_failures=recent_failures), hashes=hash_counts(session),
        replicas=list(replicas),
        people=None if settings is None else people_counts(session, settings))


def count_pending(session: Session) -> int:
    """How many images of the library are registered or queued: stored, but not yet indexed or failed."""
    return int(session.scalar(select(func.count()).select_from(Image)
                              .where(Image.status.in_(WAITING), in_library())) or 0)


def count_by_status(session: Session, image_ids: Sequence[int]) -> dict[str, int]:
    """How many of these images are in each status (statuses none of them is in are left out)."""
    return dict(session.execute(select(Image.status, func.count()).where(Image.id.in_(image_ids))
                                .group_by(Image.status)).all())


def count_images(session: Session) -> int:
    """How many images ClipSeek knows, whatever their status, in the trash too."""
    return int(session.scalar(select(func.count()).select_from(Image)) or 0)
