"""Where pictures were taken: the place their GPS coordinates name, kept on the image and as a
caption (source 'place') so that text search finds it, and how far placing has got."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from clipseek.photo.metadata import is_position
from clipseek.photo.places import MAX_DISTANCE_KM, GazetteerUnavailable, Place, gazetteer
from clipseek.store.tables import Caption, CaptionSource, Image

log = logging.getLogger(__name__)

# An image's coordinates as stored: (latitude, longitude), either None.
Coordinates = tuple[float | None, float | None]

# Why coordinates name no place (they are a point on Earth, but none the gazetteer knows near it).
NO_PLACE_REASON = f"no town within {MAX_DISTANCE_KM:.0f} km: at sea or in the wilds"


@dataclass
class PlacingReport:
    """What one pass did: images placed, images whose coordinates name no place, and
    coordinates dropped because they name no point (a phone's (0, 0), say)."""

    placed: int = 0
    no_place: int = 0
    dropped: int = 0

    @property
    def looked_at(self) -> int:
        """Every image the pass went through."""
        return self.placed + self.no_place + self.dropped

    def merge(self, other: PlacingReport) -> None:
        """Add another pass's counts to this one."""
        self.placed += other.placed
        self.no_place += other.no_place
        self.dropped += other.dropped


def place_columns(place: Place | None) -> dict[str, object]:
    """The images table's place columns for a place (all None for none)."""
    return {"place_city": place.city if place else None, "place_region": place.region if place else None,
            "place_country": place.country if place else None,
            "place_country_code": place.country_code if place else None}


def record_places(session: Session, coordinates: Mapping[int, Coordinates]) -> PlacingReport:
    """Look up the place of each image's coordinates and record it: the place columns, one
    caption with source 'place', and placed_at. The caller commits.

    Images without a position lose any place they had (their file changed, say), and stored
    coordinates that name no point are dropped, as reading EXIF drops them now. Raises
    GazetteerUnavailable when the list of places cannot be read.
    """
    report = PlacingReport()
    located: dict[int, tuple[float, float]] = {}
    for image_id, (lat, lon) in coordinates.items():
        if lat is not None and lon is not None and is_position(lat, lon):
            located[image_id] = (lat, lon)
    unlocated = [i for i in coordinates if i not in located]
    # First, before anything is written: a gazetteer that cannot be read changes nothing.
    places = gazetteer().places_at(located.values()) if located else []
    now = datetime.now(UTC)
    session.execute(delete(Caption).where(Caption.image_id.in_(list(coordinates)),
                                          Caption.source == CaptionSource.PLACE))
    if unlocated:
        session.execute(update(Image).where(Image.id.in_(unlocated))
                        .values(placed_at=None, **place_columns(None)))
    dropped = [i for i in unlocated if coordinates[i] != (None, None)]
    if dropped:
        session.execute(update(Image).where(Image.id.in_(dropped)).values(latitude=None, longitude=None))
        report.dropped = len(dropped)
    if located:
        session.execute(update(Image), [{"id": i, "placed_at": now, **place_columns(place)}
                                        for i, place in zip(located, places, strict=True)])
        captions = [{"image_id": i, "source": CaptionSource.PLACE, "text": place.text}
                    for i, place in zip(located, places, strict=True) if place is not None]
        if captions:
            session.execute(insert(Caption), captions)
        report.placed = len(captions)
        report.no_place = len(located) - len(captions)
    return report


def place_images(session: Session, coordinates: Mapping[int, Coordinates]) -> None:
    """record_places for pictures being registered or read again: a list of places that cannot
    be read leaves them waiting for `clipseek reindex --places`, and never costs the picture
    its registration. The caller commits."""
    if not coordinates:
        return
    try:
        record_places(session, coordinates)
    except GazetteerUnavailable as exc:
        log.warning("%d picture(s) wait for their place: %s", len(coordinates), exc)
        session.execute(update(Image).where(Image.id.in_(list(coordinates)))
                        .values(placed_at=None, **place_columns(None)))
        session.execute(delete(Caption).where(Caption.image_id.in_(list(coordinates)),
                                              Caption.source == CaptionSource.PLACE))


def waiting_to_be_placed() -> ColumnElement[bool]:
    """The condition on `images` that selects pictures with coordinates but no lookup yet."""
    return and_(Image.placed_at.is_(None), Image.latitude.is_not(None), Image.longitude.is_not(None))


@dataclass(frozen=True)
class Unplaced:
    """A picture whose coordinates name no place."""

    image_id: int
    name: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class PlacesStatus:
    """How far placing has got: pictures with GPS, placed, waiting, and those that name no place."""

    with_gps: int = 0
    placed: int = 0
    waiting: int = 0
    no_place: int = 0
    no_place_reason: str = NO_PLACE_REASON
    recent_no_place: list[Unplaced] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the API and `clipseek status --json`."""
        return {"with_gps": self.with_gps, "placed": self.placed, "waiting": self.waiting,
                "no_place": self.no_place,
                "no_place_reason": self.no_place_reason if self.no_place else None,
                "recent_no_place": [{"image_id": u.image_id, "name": u.name, "latitude": u.latitude,
                                     "longitude": u.longitude} for u in self.recent_no_place]}


def places_status(session: Session, *, recent: int = 10) -> PlacesStatus:
    """Counts of pictures with GPS, placed, waiting for a lookup and naming no place, with the
    latest of those that name none."""
    has_gps = and_(Image.latitude.is_not(None), Image.longitude.is_not(None))
    looked_up = and_(has_gps, Image.placed_at.is_not(None))
    counts = session.execute(select(
        func.count().filter(has_gps), func.count().filter(and_(looked_up, Image.place_country.is_not(None))),
        func.count().filter(waiting_to_be_placed()),
        func.count().filter(and_(looked_up, Image.place_country.is_(None))))).one()
    unplaced = session.execute(
        select(Image.id, Image.original_name, Image.latitude, Image.longitude)
        .where(looked_up, Image.place_country.is_(None))
        .order_by(Image.placed_at.desc(), Image.id.desc()).limit(recent)).all()
    return PlacesStatus(with_gps=counts[0], placed=counts[1], waiting=counts[2], no_place=counts[3],
                        recent_no_place=[Unplaced(row.id, row.original_name, row.latitude or 0.0,
                                                  row.longitude or 0.0) for row in unplaced])
