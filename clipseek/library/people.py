"""People: faces grouped into persons, named, merged and corrected by people; the switch that
turns finding faces on and off for the library (faces are personal data: off by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clipseek.errors import BadQuery
from clipseek.indexing.face_finding import PEOPLE_KEY, people_on, waits_for_faces
from clipseek.library.albums import split_album_refs
from clipseek.settings import Settings
from clipseek.store.tables import (
    SHOWN_AT_SQL,
    Face,
    FaceDescriptor,
    FacesState,
    Image,
    LibrarySetting,
    Person,
    in_library,
)
from clipseek.util.user_text import user_text

MAX_NAME_CHARS = 200


class BadPerson(BadQuery):
    """A person's name that cannot be used, or a person or face that is not there (the web answers 400)."""


@dataclass(frozen=True)
class PersonSummary:
    """A person: their name (None until someone names them), cover face and counts (the trash left out)."""

    id: int
    name: str | None
    cover_face_id: int | None
    faces: int
    images: int

    @property
    def label(self) -> str:
        """What the person is called on pages: their name, or a number until they have one."""
        return self.name or f"Person {self.id}"

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek people --json`."""
        return {"id": self.id, "name": self.name, "cover_face_id": self.cover_face_id,
                "faces": self.faces, "images": self.images}


@dataclass(frozen=True)
class PeopleCounts:
    """Where people stands: on or off, faces found, people, pictures waiting, failed."""

    enabled: bool
    faces: int
    people: int
    named: int
    waiting: int
    failed: int

    def to_dict(self) -> dict[str, object]:
        """JSON form for the status API."""
        return {"enabled": self.enabled, "faces": self.faces, "people": self.people, "named": self.named,
                "waiting": self.waiting, "failed": self.failed}


def person_name(raw: str) -> str:
    """A person's name as typed, trimmed; BadQuery when it is empty, too long or hides itself."""
    return user_text(raw, what="A person's name", max_chars=MAX_NAME_CHARS)


def _summaries(session: Session, *where: ColumnElement[bool]) -> list[PersonSummary]:
    faces = (select(func.count(Face.id)).join(Image, Image.id == Face.image_id)
             .where(Face.person_id == Person.id, in_library()).scalar_subquery())
    images = (select(func.count(func.distinct(Face.image_id))).join(Image, Image.id == Face.image_id)
              .where(Face.person_id == Person.id, in_library()).scalar_subquery())
    # The chosen cover while it is theirs and seen, else their surest face.
    cover = (select(Face.id).join(Image, Image.id == Face.image_id)
             .where(Face.person_id == Person.id, in_library())
             .order_by((Face.id == Person.cover_face_id).desc(), Face.score.desc().nulls_last(), Face.id)
             .limit(1).scalar_subquery())
    rows = session.execute(select(Person.id, Person.name, cover.label("cover"), faces.label("faces"),
                                  images.label("images")).where(*where))
    found = [PersonSummary(id=r.id, name=r.name, cover_face_id=r.cover, faces=int(r.faces),
                           images=int(r.images)) for r in rows]
    # Named people first, by name; then the others, the most seen first.
    return sorted(found, key=lambda p: (p.name is None, (p.name or "").lower(), -p.faces, p.id))


def list_people(session: Session) -> list[PersonSummary]:
    """Every person with a face in the library (named ones first, by name; then the most seen)."""
    return [p for p in _summaries(session) if p.faces]


def person_summary(session: Session, person_id: int) -> PersonSummary | None:
    """One person with their counts and cover; None if there is no such person."""
    found = _summaries(session, Person.id == person_id)
    return found[0] if found else None


def find_person(session: Session, ref: str) -> Person:
    """The person `ref` names (an id, or a name whatever its case); BadPerson for one that is none."""
    ids, names = split_album_refs([ref])
    statement = (select(Person).where(Person.id == ids[0]) if ids and ids[0] < 2**63
                 else select(Person).where(func.lower(Person.name).in_(names)))
    person = session.scalars(statement).first() if ids or names else None
    if person is None:
        raise BadPerson(f"There is no person {ref.strip()!r}; `clipseek people` lists them.")
    return person


def name_person(session: Session, *, person_id: int, name: str) -> Person:
    """Give a person a name (checked with person_name); BadPerson if it is another's. The caller commits."""
    person = session.get(Person, person_id)
    if person is None:
        raise BadPerson(f"There is no person {person_id}; `clipseek people` lists them.")
    try:
        with session.begin_nested():  # the unique index decides, so two at once cannot both win
            person.name, person.updated_at = name, func.now()
    except IntegrityError:
        session.refresh(person)
        raise BadPerson(f"Someone else is already named {name!r}: merge the two people instead.") from None
    session.refresh(person)
    return person


def merge_people(session: Session, *, keep_id: int, other_id: int) -> Person:
    """Move every face of `other_id` to `keep_id` and delete `other_id`; the kept person keeps
    their name, or takes the other's when they had none. The caller commits."""
    if keep_id == other_id:
        raise BadPerson("A person cannot be merged with themselves.")
    keep, other = session.get(Person, keep_id), session.get(Person, other_id)
    for wanted, found in ((keep_id, keep), (other_id, other)):
        if found is None:
            raise BadPerson(f"There is no person {wanted}; `clipseek people` lists them.")
    assert keep is not None and other is not None
    session.execute(update(Face).where(Face.person_id == other_id).values(person_id=keep_id))
    name = keep.name or other.name
    session.delete(other)
    session.flush()  # the other's name is free before the kept one takes it
    keep.name, keep.updated_at = name, func.now()
    session.flush()
    session.refresh(keep)
    return keep


def remove_face(session: Session, *, face_id: int) -> int:
    """Take a face from its person for good (grouping leaves it ungrouped); return the person's id.

    A person left with no face is deleted. The caller commits.
    """
    face = session.get(Face, face_id)
    if face is None or face.person_id is None:
        raise BadPerson(f"There is no face {face_id} in any person.")
    person_id = face.person_id
    face.person_id, face.person_locked = None, True
    session.flush()
    if not session.scalar(select(func.count()).select_from(Face).where(Face.person_id == person_id)):
        session.execute(delete(Person).where(Person.id == person_id))
    return person_id


def person_faces_with_images(session: Session, person_id: int, *,
                             limit: int = 200) -> list[tuple[Face, Image]]:
    """A person's faces in pictures in the library, each with its picture, the surest first."""
    rows = session.execute(select(Face, Image).join(Image, Image.id == Face.image_id)
                           .where(Face.person_id == person_id, in_library())
                           .order_by(Face.score.desc().nulls_last(), Face.id).limit(limit))
    return [(face, image) for face, image in rows]


def person_images(session: Session, person_id: int, *, page: int, per_page: int) -> tuple[int, list[Image]]:
    """How many pictures a person is in, and one page of them, newest first."""
    where = (Image.id.in_(select(Face.image_id).where(Face.person_id == person_id)), in_library())
    total = int(session.scalar(select(func.count()).select_from(Image).where(*where)) or 0)
    shown: ColumnElement[Any] = literal_column(SHOWN_AT_SQL)
    images = session.scalars(select(Image).where(*where).order_by(shown.desc(), Image.id.desc())
                             .offset((page - 1) * per_page).limit(per_page))
    return total, list(images)


def face_with_image(session: Session, face_id: int) -> tuple[Face, Image] | None:
    """A face and its picture (for its thumbnail), or None when either is gone or in the trash."""
    row = session.execute(select(Face, Image).join(Image, Image.id == Face.image_id)
                          .where(Face.id == face_id, in_library())).first()
    return (row[0], row[1]) if row else None


def enable_people(session: Session) -> list[int]:
    """Turn people on for the library; return the indexed images that now wait for their faces
    (those skipped while it was off, and those that failed). The caller commits, then queues them."""
    _set_switch(session, True)
    session.execute(update(Image).where(Image.faces_state.in_((FacesState.SKIPPED, FacesState.FAILED)))
                    .values(faces_state=None, faces_error=None, faces_at=None))
    return list(session.scalars(select(Image.id).where(waits_for_faces()).order_by(Image.id)))


@dataclass(frozen=True)
class PeopleDeleted:
    """What turning people off deleted."""

    faces: int
    people: int


def people_to_delete(session: Session) -> PeopleDeleted:
    """What `disable_people` would delete: every face (with its descriptor) and every unnamed person."""
    faces = int(session.scalar(select(func.count()).select_from(Face)) or 0)
    people = int(session.scalar(select(func.count()).select_from(Person).where(Person.name.is_(None))) or 0)
    return PeopleDeleted(faces=faces, people=people)


def disable_people(session: Session, settings: Settings) -> PeopleDeleted:
    """Turn people off: delete every face and descriptor and every unnamed person (named ones
    keep their names, with no faces, for a later `enable`); pictures wait as skipped.

    BadQuery when CLIPSEEK_PEOPLE=1 keeps it on. The caller commits.
    """
    if settings.people:
        raise BadQuery("CLIPSEEK_PEOPLE=1 turns people on for this process; unset it (for the workers "
                       "and the web app too) before turning people off.")
    _set_switch(session, False)
    # The pictures first: their row locks wait for a worker recording faces in one of them,
    # and the deletes below (a statement sees what committed before it) then take those too;
    # the worker that comes later finds the picture skipped and records nothing.
    session.execute(update(Image).where(Image.faces_state.is_not(None) | waits_for_faces())
                    .values(faces_state=FacesState.SKIPPED, faces_error=None, faces_at=func.now()))
    counted = people_to_delete(session)
    session.execute(delete(FaceDescriptor))
    session.execute(delete(Face))
    session.execute(delete(Person).where(Person.name.is_(None)))
    return counted


def _set_switch(session: Session, on: bool) -> None:
    session.execute(insert(LibrarySetting).values(key=PEOPLE_KEY, value=on)
                    .on_conflict_do_update(index_elements=[LibrarySetting.key],
                                           set_={"value": on, "updated_at": func.now()}))


def people_counts(session: Session, settings: Settings) -> PeopleCounts:
    """Whether people is on, faces found and people (the trash left out), pictures waiting and failed."""
    faces = int(session.scalar(select(func.count()).select_from(Face).join(Image, Image.id == Face.image_id)
                               .where(in_library())) or 0)
    people = session.execute(
        select(func.count(func.distinct(Person.id)), func.count(func.distinct(Person.id)).filter(
            Person.name.is_not(None)))
        .join(Face, Face.person_id == Person.id).join(Image, Image.id == Face.image_id)
        .where(in_library())).one()
    on = people_on(session, settings)
    waiting = int(session.scalar(select(func.count()).select_from(Image).where(waits_for_faces())) or 0)
    failed = int(session.scalar(select(func.count()).select_from(Image)
                                .where(Image.faces_state == FacesState.FAILED)) or 0)
    return PeopleCounts(enabled=on, faces=faces, people=int(people[0]), named=int(people[1]),
                        waiting=waiting if on else 0, failed=failed)


def people_filter_ids(session: Session, refs: Sequence[str]) -> list[int]:
    """The ids of the people `refs` name (ids or names, any case); BadPerson for one that is none."""
    return [find_person(session, ref).id for ref in refs]
