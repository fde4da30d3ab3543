"""Finding the faces in indexed pictures: what waits, finding them, and the outcome.

Like reading words, it comes after CLIP, on the low-priority queue, and hands its turn to
indexing whenever pictures wait to become searchable. Each image's `faces_state` says
whether its faces were found (some or none), failed (reason in `faces_error`) or skipped
(people was off); a failure never touches the image's own status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, and_, func, insert, select, update
from sqlalchemy.orm import Session

from clipseek.indexing.face_finder import FaceFinder, FoundFace
from clipseek.indexing.face_grouping import group_face
from clipseek.indexing.reading import IDS_PER_STATEMENT, send_in_tasks, waiting_among
from clipseek.photo.imaging import ImageDecodeError
from clipseek.settings import Settings
from clipseek.store.tables import Face, FaceDescriptor, FacesState, Image, ImageStatus, LibrarySetting

log = logging.getLogger(__name__)

# Pictures per task: a few seconds of work, so a worker soon looks at its queues again.
FACES_BATCH = 8
# The library setting that turns people on (`clipseek people enable`).
PEOPLE_KEY = "people"

# Sends one batch of image ids to have their faces found.
EnqueueFaces = Callable[[list[int]], None]


def people_on(session: Session, settings: Settings) -> bool:
    """Whether faces are found and grouped: CLIPSEEK_PEOPLE=1, or turned on for the library."""
    if settings.people:
        return True
    return session.scalar(select(LibrarySetting.value).where(LibrarySetting.key == PEOPLE_KEY)) is True


def waits_for_faces() -> ColumnElement[bool]:
    """SQL condition: the image is indexed and its faces are not looked for yet (images_faces_waiting_idx)."""
    return and_(Image.faces_state.is_(None), Image.status == ImageStatus.INDEXED)


@dataclass
class FacesReport:
    """What one pass of finding faces did."""

    looked: list[int] = field(default_factory=list)
    faces: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    # Left for later because indexing work was waiting (sent again by the caller).
    handed_back: list[int] = field(default_factory=list)


def images_waiting_for_faces(session: Session, image_ids: Sequence[int]) -> list[tuple[int, str]]:
    """Of these ids, the (id, path) of the images whose faces wait to be found."""
    return waiting_among(session, image_ids, waits_for_faces())


def queue_for_faces(session: Session, image_ids: Sequence[int], *, enqueue: EnqueueFaces) -> int:
    """Send the images among these whose faces wait to be found, in tasks; return the number of tasks."""
    ids = [image_id for image_id, _ in images_waiting_for_faces(session, image_ids)]
    session.commit()
    return send_in_tasks(ids, FACES_BATCH, enqueue)


def skip_faces(session: Session, image_ids: Sequence[int]) -> list[int]:
    """Mark the images among these whose faces wait as skipped (people is off); the caller commits."""
    return list(session.scalars(
        update(Image).where(Image.id.in_(image_ids), waits_for_faces())
        .values(faces_state=FacesState.SKIPPED, faces_error=None, faces_at=func.now()).returning(Image.id)))


def record_faces(session: Session, image_id: int, faces: Sequence[FoundFace], *, distance: float) -> bool:
    """Keep the faces found in one image, grouped into people, and mark it; False if it is gone.

    The caller commits.
    """
    # Locked until the commit: a deletion waits, and so does a second finder of the same
    # image (a task sent twice), which then finds it done.
    row = session.execute(select(Image.id, Image.faces_state).where(Image.id == image_id)
                          .with_for_update()).first()
    if row is None:
        return False
    if row.faces_state is not None:
        return True
    for face in faces:
        face_id = session.scalar(insert(Face).values(
            image_id=image_id, box_left=face.left, box_top=face.top, box_right=face.right,
            box_bottom=face.bottom, score=face.score).returning(Face.id))
        assert face_id is not None
        session.execute(insert(FaceDescriptor).values(face_id=face_id, descriptor=face.descriptor.tolist()))
        group_face(session, face_id, face.descriptor, distance=distance)
    session.execute(update(Image).where(Image.id == image_id).values(
        faces_state=FacesState.FOUND if faces else FacesState.NONE, faces_error=None, faces_at=func.now()))
    return True


def find_one(finder: FaceFinder, path: str, *, max_pixels: int) -> list[FoundFace] | str:
    """The faces in one file, or the reason they could not be looked for."""
    try:
        return finder.find_in_file(Path(path), max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return str(exc)
    except MemoryError:
        return "the image is too large to decode in the available memory"
    except Exception as exc:  # dlib's own errors must not end the batch
        log.exception("finding the faces in %s failed", path)
        return f"the face finder failed ({type(exc).__name__}: {exc})"


def find_faces(session: Session, finder: FaceFinder | None, image_ids: Sequence[int], *, max_pixels: int,
               distance: float, hand_over: Callable[[], bool] = lambda: False) -> FacesReport:
    """Find and group the faces in those of these images that wait for it, committing after each.

    Without a finder (people is off) they are marked skipped. Before each picture
    `hand_over` is asked whether indexing waits; if so, the rest are left in `handed_back`.
    Images looked at already are passed over, so running it twice is safe.
    """
    report = FacesReport()
    todo = images_waiting_for_faces(session, image_ids)
    if finder is None:
        report.skipped = skip_faces(session, [image_id for image_id, _ in todo])
        session.commit()
        return report
    session.commit()  # no transaction stays open while the models run
    for position, (image_id, path) in enumerate(todo):
        if hand_over():
            report.handed_back = [i for i, _ in todo[position:]]
            break
        outcome = find_one(finder, path, max_pixels=max_pixels)
        if isinstance(outcome, str):
            session.execute(update(Image).where(Image.id == image_id).values(
                faces_state=FacesState.FAILED, faces_error=outcome, faces_at=func.now()))
            report.failed[image_id] = outcome
        elif record_faces(session, image_id, outcome, distance=distance):
            report.looked.append(image_id)
            report.faces += len(outcome)
        session.commit()
    return report


def unlooked(session: Session, image_ids: Sequence[int]) -> int:
    """How many of these images still wait to have their faces found."""
    ids = list(image_ids)
    return sum(int(session.scalar(select(func.count()).select_from(Image).where(
        Image.id.in_(ids[start:start + IDS_PER_STATEMENT]), waits_for_faces())) or 0)
        for start in range(0, len(ids), IDS_PER_STATEMENT))
