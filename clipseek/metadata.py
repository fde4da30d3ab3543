"""What a photo says about itself: when and with what it was taken, where, and its upright size."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import ExifTags, Image

_MAKE, _MODEL, _ORIENTATION, _DATETIME = 271, 272, 274, 306
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 36867, 36868
_OFFSET_ORIGINAL, _OFFSET = 36881, 36880
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
# EXIF orientations 5-8 turn the picture by a quarter: its displayed sides are swapped.
_QUARTER_TURNS = {5, 6, 7, 8}
_OFFSET_FORMAT = re.compile(r"^([+-])(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class PhotoFacts:
    """Facts read from a photo's EXIF; None where the file does not say.

    `taken_at` is the camera's wall-clock time (what a person means by "taken at 6 pm"),
    `taken_offset_minutes` its offset from UTC where the camera recorded one.
    """

    taken_at: datetime | None = None
    taken_offset_minutes: int | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    display_width: int | None = None
    display_height: int | None = None

    def columns(self) -> dict[str, object]:
        """The facts as values for the images table's columns of the same names."""
        return dict(self.__dict__)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").strip()
    return cleaned[:120] or None


def _when(value: object) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        # EXIF's own format; cameras with no clock write zeros or blanks, which fail here.
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _offset(value: object) -> int | None:
    match = _OFFSET_FORMAT.match(_text(value) or "")
    if not match:
        return None
    sign, hours, minutes = match.groups()
    total = int(hours) * 60 + int(minutes)
    return -total if sign == "-" else total


def _degrees(value: object, ref: object, negative: str) -> float | None:
    try:
        d, m, s = (float(part) for part in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    if not math.isfinite(degrees):
        return None
    return -degrees if _text(ref) == negative else degrees


def read_facts(img: Image.Image) -> PhotoFacts:
    """The facts in an opened image's EXIF (only the header needs to have been read)."""
    width, height = img.size
    try:
        exif = img.getexif()
        details = exif.get_ifd(ExifTags.IFD.Exif)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # a damaged EXIF block must not cost the picture: it just says nothing
        return PhotoFacts(display_width=width, display_height=height)
    orientation = exif.get(_ORIENTATION)
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    taken_at = _when(details.get(_DATETIME_ORIGINAL)) or _when(details.get(_DATETIME_DIGITIZED)) \
        or _when(exif.get(_DATETIME))
    offset = _offset(details.get(_OFFSET_ORIGINAL)) if details.get(_DATETIME_ORIGINAL) \
        else _offset(details.get(_OFFSET))
    latitude = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "S")
    longitude = _degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "W")
    if latitude is not None and not -90 <= latitude <= 90:
        latitude = None
    if longitude is not None and not -180 <= longitude <= 180:
        longitude = None
    return PhotoFacts(
        taken_at=taken_at, taken_offset_minutes=offset if taken_at else None,
        camera_make=_text(exif.get(_MAKE)), camera_model=_text(exif.get(_MODEL)),
        latitude=latitude if longitude is not None else None,
        longitude=longitude if latitude is not None else None,
        display_width=width, display_height=height)


def read_facts_from(path: Path) -> PhotoFacts:
    """The facts in a file's EXIF; an unreadable file says nothing."""
    try:
        with Image.open(path) as img:
            return read_facts(img)
    except Exception:  # the caller records why a file is unusable; here it simply has no facts
        return PhotoFacts()
