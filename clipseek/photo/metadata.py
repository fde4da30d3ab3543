"""What a photo says about itself: when and with what it was taken, where, its upright size,
and the titles, descriptions and keywords written into it (EXIF and XMP)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import ExifTags, Image

from clipseek.photo.caption_text import clean_description
from clipseek.photo.xmp_text import xmp_texts

_MAKE, _MODEL, _ORIENTATION, _DATETIME = 271, 272, 274, 306
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 36867, 36868
_OFFSET_ORIGINAL, _OFFSET = 36881, 36880
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
# EXIF orientations 5-8 turn the picture by a quarter: its displayed sides are swapped.
_QUARTER_TURNS = {5, 6, 7, 8}
_OFFSET_FORMAT = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_IMAGE_DESCRIPTION, _USER_COMMENT = 270, 0x9286
# Windows' XPTitle, XPSubject, XPComment and XPKeywords: UTF-16LE in BYTE fields.
_XP_TITLE, _XP_SUBJECT, _XP_COMMENT, _XP_KEYWORDS = 0x9C9B, 0x9C9F, 0x9C9C, 0x9C9E
# UserComment starts with 8 bytes naming its character code.
_COMMENT_CODES = {b"ASCII\0\0\0": "ascii", b"UNICODE\0": "utf-16", b"\0" * 8: "utf-8"}


@dataclass(frozen=True)
class PhotoText:
    """The titles, descriptions and keywords a photo carries, by where they were written.

    Camera defaults ("OLYMPUS DIGITAL CAMERA") and blanks are already left out; each text
    appears once, under the first place it was found.
    """

    exif: tuple[str, ...] = ()
    xmp: tuple[str, ...] = ()


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
    # Stored as captions (clipseek.library.captions), not as columns of the images table.
    text: PhotoText = PhotoText()

    def columns(self) -> dict[str, object]:
        """The facts as values for the images table's columns of the same names."""
        return {name: value for name, value in self.__dict__.items() if name != "text"}


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


def _degrees(value: object, ref: object, directions: tuple[str, str], limit: int) -> float | None:
    """Degrees from EXIF's (degrees, minutes, seconds) and its reference letter; None unless
    both are whole: a missing letter leaves the hemisphere unknown, not north or east."""
    direction = (_text(ref) or "").upper()
    if direction not in directions:
        return None
    try:
        d, m, s = (float(part) for part in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (0 <= d <= limit and 0 <= m < 60 and 0 <= s < 60):  # NaN fails these too
        return None
    degrees = d + m / 60 + s / 3600
    if degrees > limit:
        return None
    return -degrees if direction == directions[1] else degrees


def is_position(latitude: float | None, longitude: float | None) -> bool:
    """Whether a latitude and longitude name a point on Earth: both given, in range, and not
    (0, 0), which phones write when they have no fix."""
    if latitude is None or longitude is None:
        return False
    in_range = -90 <= latitude <= 90 and -180 <= longitude <= 180  # NaN is in no range
    return in_range and (latitude, longitude) != (0.0, 0.0)


def _plain(value: object) -> str | None:
    """A text tag in full; Pillow reads EXIF ASCII as Latin-1, but most writers put UTF-8 there."""
    if isinstance(value, str):
        try:
            return value.encode("latin-1").decode("utf-8")
        except UnicodeError:  # not UTF-8 read as Latin-1: the text is what it says
            return value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else None


def _user_comment(value: object) -> str | None:
    if not isinstance(value, bytes):
        return _plain(value)
    code = _COMMENT_CODES.get(value[:8])
    body = value[8:] if code else value
    if code == "utf-16" and body[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        # No byte-order mark: most writers follow the file's byte order; a leading zero
        # byte before an ASCII letter means big-endian.
        code = "utf-16-be" if body[:1] == b"\0" else "utf-16-le"
    return body.decode(code or "utf-8", "replace")


def _xp(value: object) -> str | None:
    if isinstance(value, tuple):  # some writers leave the bytes as a tuple of ints
        value = bytes(value)
    if not isinstance(value, bytes):
        return _plain(value)
    return value.decode("utf-16-le", "replace")


def _keywords(text: str | None) -> str | None:
    if not text:
        return None
    return ", ".join(k.strip() for k in re.split(r"[;,]", text) if k.strip()) or None


def _exif_texts(img: Image.Image) -> list[str | None]:
    try:
        exif = img.getexif()
        comment = exif.get_ifd(ExifTags.IFD.Exif).get(_USER_COMMENT)
    except Exception:  # a damaged EXIF block leaves the XMP still worth reading
        return []
    return [_plain(exif.get(_IMAGE_DESCRIPTION)), _xp(exif.get(_XP_TITLE)), _xp(exif.get(_XP_SUBJECT)),
            _xp(exif.get(_XP_COMMENT)), _keywords(_xp(exif.get(_XP_KEYWORDS))), _user_comment(comment)]


def read_text(img: Image.Image, camera: tuple[str | None, ...] = ()) -> PhotoText:
    """The titles, descriptions and keywords in an opened image's EXIF and XMP, cleaned.

    `camera` (make and model) is left out where a camera copied it into the description.
    """
    seen: set[str] = set()

    def fresh(texts: list[str | None]) -> tuple[str, ...]:
        kept = []
        for raw in texts:
            text = clean_description(raw, camera=camera) if raw else None
            if text and text.casefold() not in seen:
                seen.add(text.casefold())
                kept.append(text)
        return tuple(kept)

    exif = fresh(_exif_texts(img))
    return PhotoText(exif=exif, xmp=fresh(list(xmp_texts(img.info.get("xmp")))))


def read_facts(img: Image.Image) -> PhotoFacts:
    """The facts in an opened image's EXIF (only the header needs to have been read)."""
    width, height = img.size
    try:
        exif = img.getexif()
        details = exif.get_ifd(ExifTags.IFD.Exif)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # a damaged EXIF block must not cost the picture: it just says nothing
        return PhotoFacts(display_width=width, display_height=height, text=read_text(img))
    orientation = exif.get(_ORIENTATION)
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    taken_at = _when(details.get(_DATETIME_ORIGINAL)) or _when(details.get(_DATETIME_DIGITIZED)) \
        or _when(exif.get(_DATETIME))
    offset = _offset(details.get(_OFFSET_ORIGINAL)) if details.get(_DATETIME_ORIGINAL) \
        else _offset(details.get(_OFFSET))
    latitude = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), ("N", "S"), 90)
    longitude = _degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), ("E", "W"), 180)
    if not is_position(latitude, longitude):  # half a position, or a phone's (0, 0), is none
        latitude = longitude = None
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    return PhotoFacts(
        taken_at=taken_at, taken_offset_minutes=offset if taken_at else None,
        camera_make=make, camera_model=model,
        latitude=latitude, longitude=longitude,
        display_width=width, display_height=height, text=read_text(img, (make, model)))


def read_facts_from(path: Path) -> PhotoFacts:
    """The facts in a file's EXIF; an unreadable file says nothing."""
    try:
        with Image.open(path) as img:
            return read_facts(img)
    except Exception:  # the caller records why a file is unusable; here it simply has no facts
        return PhotoFacts()
