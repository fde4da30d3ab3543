"""Grouping faces into people as they are found, one face at a time.

A new face joins the person most of its nearest grouped faces belong to, when they lie
within the distance (CLIPSEEK_PEOPLE_DISTANCE). With no grouped face near, it waits
ungrouped; when a later face matches ungrouped ones, they become a new person together.
Two faces at least make a person: a stranger seen once in the background stays nobody.
Faces a person moved by hand (`person_locked`) never move and never pull others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from clipseek.store.tables import Face, FaceDescriptor, Person

# Nearest faces looked at for each new face: enough for a majority when a person has many
# faces, few enough that the HNSW query stays a fraction of a millisecond.
NEIGHBOURS = 8
# Faces that make a new person together (see the module's docstring).
MIN_FACES = 2
# Grouping takes this transaction lock, so two workers never make two people of one.
GROUPING_LOCK = 0x70656F70  # "peop"


def nearest_faces(session: Session, face_id: int, descriptor: np.ndarray, *, distance: float,
                  limit: int = NEIGHBOURS) -> list[tuple[int, int | None, bool]]:
    """(face id, person id, locked) of the faces nearest this one within `distance`, nearest first.

    Faces in the same picture are left out: two faces in one picture are two people.
    """
    image_id = select(Face.image_id).where(Face.id == face_id).scalar_subquery()
    gap = FaceDescriptor.descriptor.l2_distance(descriptor.tolist())
    rows = session.execute(
        select(Face.id, Face.person_id, Face.person_locked, gap.label("gap"))
        .join(FaceDescriptor, FaceDescriptor.face_id == Face.id)
        .where(Face.id != face_id, Face.image_id != image_id)
        .order_by(gap).limit(limit)).all()
    return [(row.id, row.person_id, row.person_locked) for row in rows if row.gap <= distance]


def group_face(session: Session, face_id: int, descriptor: np.ndarray, *, distance: float) -> int | None:
    """Give one new face a person if its neighbours say whose it is; return the person's id or None.

    The caller commits.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GROUPING_LOCK})
    near = nearest_faces(session, face_id, descriptor, distance=distance)
    votes = Counter(person for _, person, _ in near if person is not None)
    if votes:
        person_id = votes.most_common(1)[0][0]
        session.execute(update(Face).where(Face.id == face_id, Face.person_locked.is_(False))
                        .values(person_id=person_id))
        return person_id
    loose = [face for face, person, locked in near if person is None and not locked]
    if len(loose) + 1 < MIN_FACES:
        return None
    return new_person(session, [face_id, *loose])


def new_person(session: Session, face_ids: Sequence[int]) -> int:
    """Make a person of these faces (its cover the surest of them); return its id. The caller commits."""
    cover = session.scalar(select(Face.id).where(Face.id.in_(face_ids))
                           .order_by(Face.score.desc().nulls_last(), Face.id).limit(1))
    person_id = int(session.scalar(insert(Person).values(cover_face_id=cover).returning(Person.id)) or 0)
    session.execute(update(Face).where(Face.id.in_(face_ids)).values(person_id=person_id))
    session.execute(update(Person).where(Person.id == person_id).values(updated_at=func.now()))
    return person_id
