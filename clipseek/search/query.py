"""A search request as typed values, parsed once from the string parameters of every interface."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TypeVar

from clipseek.errors import BadQuery
from clipseek.library.albums import split_album_refs

MAX_QUERY_CHARS = 1000
MAX_PER_PAGE = 100
# Nobody reads further, and it keeps the row offset far inside PostgreSQL's bigint.
MAX_PAGE = 100_000
MAX_VALUES = 50
# Ids are PostgreSQL bigints.
MAX_ID = 2**63 - 1
# GeoNames' longest place names run to about 60 characters.
MAX_PLACE_CHARS = 100
# SHA-256 in hex: stored examples are named by the hash of their picture.
_EXAMPLE_ID = re.compile(r"[0-9a-f]{64}")
_SIZE = re.compile(r"(?P<w>[0-9]{1,6})x(?P<h>[0-9]{1,6})|(?P<mp>[0-9]{1,4}(?:\.[0-9]{1,3})?)mp")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
E = TypeVar("E", bound=StrEnum)
# How each way in marks its images (clipseek.library.register.Candidate.source).
SOURCES = ("coco", "folder", "samples", "upload")
# Pillow's names of the formats ClipSeek reads, and the file extensions people type instead.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF", "MPO", "PPM")
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}


class Mode(StrEnum):
    """How a query is matched: CLIP only, CLIP fused with caption text, or caption text only."""

    SEMANTIC = "semantic"
    HYBRID = "hybrid"
    TEXT = "text"


class Sort(StrEnum):
    """The order of the matches: best first, or newest (capture date, else added date) first."""

    RELEVANCE = "relevance"
    DATE = "date"


class Orientation(StrEnum):
    """The shape of a picture as it is shown (EXIF rotation applied)."""

    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"
    SQUARE = "square"


@dataclass(frozen=True)
class Filters:
    """What an image must be to take part in a search; empty means no restriction.

    Date ranges are whole days, both ends included. The capture date of an image without
    one (no EXIF) is the date it was added.
    """

    collections: tuple[str, ...] = ()
    # Album ids (whole numbers), or names whatever their case (clipseek.library.albums).
    albums: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    folder: str | None = None
    taken_from: date | None = None
    taken_to: date | None = None
    added_from: date | None = None
    added_to: date | None = None
    formats: tuple[str, ...] = ()
    orientation: Orientation | None = None
    min_width: int | None = None
    min_height: int | None = None
    min_megapixels: float | None = None
    # A city, region, country or country code, any of them, whatever the case.
    place: str | None = None
    # People in the picture, each an id or a name whatever its case (clipseek.library.people);
    # a picture must show every one of them.
    people: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self))

    def to_dict(self) -> dict[str, object]:
        """The filters that are set, as the JSON API shows them."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, ()):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else (
                value.isoformat() if isinstance(value, date) else str(value)
                if isinstance(value, StrEnum) else value)
        return out


@dataclass(frozen=True)
class Term:
    """One part of a combined query: text to embed, added (+1) or subtracted (-1)."""

    text: str
    sign: int = 1


@dataclass(frozen=True)
class SearchRequest:
    """Everything one search asks for, validated."""

    query: str = ""
    terms: tuple[Term, ...] = ()
    example: str | None = None
    like: int | None = None
    filters: Filters = field(default_factory=Filters)
    # None: hybrid when any captions exist, else semantic.
    mode: Mode | None = None
    sort: Sort = Sort.RELEVANCE
    min_score: float | None = None
    show_all: bool = False
    page: int = 1
    per_page: int = 10

    @property
    def browsing(self) -> bool:
        """True when nothing is asked for: the collection is shown newest first."""
        return not self.terms and self.example is None and self.like is None

    def with_page(self, page: int) -> SearchRequest:
        """The same request for another page."""
        return replace(self, page=page)

    def params(self) -> dict[str, str]:
        """The request as string parameters, so that a link repeats it (parse_request inverts it)."""
        out: dict[str, str] = {}
        if self.query:
            out["q"] = self.query
        if self.example:
            out["example"] = self.example
        if self.like is not None:
            out["like"] = str(self.like)
        names = {"collections": "collection", "albums": "album", "sources": "source", "formats": "format",
                 "people": "person"}
        for key, value in self.filters.to_dict().items():
            name = names.get(key, key)
            if key in ("min_width", "min_height", "min_megapixels"):
                continue
            out[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        if self.filters.min_megapixels is not None:
            out["min_size"] = f"{self.filters.min_megapixels:g}mp"
        elif self.filters.min_width is not None or self.filters.min_height is not None:
            out["min_size"] = f"{self.filters.min_width or 0}x{self.filters.min_height or 0}"
        if self.mode is not None:
            out["mode"] = self.mode.value
        if self.sort is not Sort.RELEVANCE:
            out["sort"] = self.sort.value
        if self.min_score is not None:
            out["min_score"] = f"{self.min_score:g}"
        if self.show_all:
            out["all"] = "1"
        out["per_page"] = str(self.per_page)
        return out


PARAMETERS = ("q", "example", "like", "collection", "album", "source", "folder", "taken_from", "taken_to",
              "added_from", "added_to", "format", "orientation", "min_size", "place", "person", "mode",
              "sort", "min_score", "all", "page", "per_page")


def _shown(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:30]}…"


def _choice(kind: type[E], raw: str, name: str) -> E:
    try:
        return kind(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(k.value for k in kind)
        raise BadQuery(f"The {name} parameter must be one of {allowed}, not {_shown(raw)!r}.") from None


def _whole(raw: str, name: str, low: int, high: int) -> int:
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]{1,7}", text):
        raise BadQuery(f"The {name} parameter must be a whole number, not {_shown(text)!r}.")
    value = int(text)
    if not low <= value <= high:
        raise BadQuery(f"The {name} parameter must be from {low:,} to {high:,}, not {value}.")
    return value


def _day(raw: str, name: str) -> date:
    text = raw.strip()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"The {name} parameter must be a date written YYYY-MM-DD, "
                       f"not {_shown(text)!r}.") from None


def _listed(values: Sequence[str], name: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for raw in values for v in raw.split(",") if v.strip()))
    if len(items) > MAX_VALUES:
        raise BadQuery(f"Give at most {MAX_VALUES} values for the {name} parameter.")
    return items


def _known(values: tuple[str, ...], allowed: tuple[str, ...], name: str,
           spelling: Callable[[str], str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(spelling(v) for v in values))
    for value in out:
        if value not in allowed:
            raise BadQuery(f"The {name} parameter must be one of {', '.join(allowed)}, "
                           f"not {_shown(value)!r}.")
    return out


def _albums(values: tuple[str, ...]) -> tuple[str, ...]:
    ids, _ = split_album_refs(values)
    if any(i > MAX_ID for i in ids):
        raise BadQuery(f"The album parameter must be an album id from 1 to {MAX_ID:,} or an "
                       "album's name.")
    return values


def _people(values: tuple[str, ...]) -> tuple[str, ...]:
    ids, _ = split_album_refs(values)  # the same rule: a whole number is an id, else a name
    if any(i > MAX_ID for i in ids):
        raise BadQuery(f"The person parameter must be a person's id from 1 to {MAX_ID:,} or their name.")
    return values


def _min_size(raw: str) -> tuple[int | None, int | None, float | None]:
    match = _SIZE.fullmatch(raw.strip().lower().replace(" ", ""))
    if not match:
        raise BadQuery(f"The min_size parameter must be WIDTHxHEIGHT in pixels (800x600) or "
                       f"megapixels (2mp), not {_shown(raw)!r}.")
    if match["mp"]:
        return None, None, float(match["mp"])
    return int(match["w"]) or None, int(match["h"]) or None, None


def _place(raw: str) -> str:
    text = " ".join(raw.split())
    if len(text) > MAX_PLACE_CHARS:
        raise BadQuery(f"The place parameter must be a city, region or country of at most "
                       f"{MAX_PLACE_CHARS} characters, not {_shown(text)!r}.")
    return text


def _date_range(low: date | None, high: date | None, what: str) -> None:
    if low and high and low > high:
        raise BadQuery(f"The {what} range starts on {low} after it ends on {high}; swap the two dates.")


def split_terms(query: str) -> tuple[Term, ...]:
    """The top-level `+` and `-` parts of a combined query (`cat + "sunset" - "people"`).

    An operator counts only outside quotes and with a space (or the start) before it, so
    "t-shirt" and "black-and-white" stay one term.
    """
    terms: list[Term] = []
    sign, start, quoted = 1, 0, False
    cleaned = " ".join(query.split())
    for i, char in enumerate(cleaned):
        if char == '"':
            quoted = not quoted
        elif (char in "+-" and not quoted and (i == 0 or cleaned[i - 1] == " ")
              and (i + 1 == len(cleaned) or cleaned[i + 1] == " ")):
            part = cleaned[start:i].strip()
            if part:
                terms.append(Term(part, sign))
            sign, start = (1 if char == "+" else -1), i + 1
    part = cleaned[start:].strip()
    if part:
        terms.append(Term(part, sign))
    return tuple(terms)


def _terms(query: str, *, has_base: bool) -> tuple[Term, ...]:
    if len(query) > MAX_QUERY_CHARS:
        raise BadQuery(f"The query is {len(query)} characters long; keep it under "
                       f"{MAX_QUERY_CHARS} (CLIP reads only about the first 60 words anyway).")
    terms = split_terms(query)
    if query.strip() and not terms:
        raise BadQuery("The query has operators but no words; write what to add or take away, "
                       'as in: beach + "sunset" - "people".')
    if terms and not has_base and all(t.sign < 0 for t in terms):
        raise BadQuery("A query cannot only take things away; start with what you are looking for, "
                       'as in: beach - "people".')
    return terms


def parse_request(params: Mapping[str, Sequence[str]], *, default_per_page: int = 10,
                  strict: bool = True) -> SearchRequest:
    """Validate string parameters (every value as given, repeated names allowed) into a request.

    With `strict`, unknown parameter names are refused rather than silently ignored.
    """
    for name, values in params.items():
        if any("\x00" in value for value in values):
            raise BadQuery(f"The {_shown(name)} parameter cannot contain a NUL character (\\x00).")
    if strict:
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise BadQuery(f"There is no search parameter {_shown(unknown[0])!r}; the parameters are "
                           f"{', '.join(PARAMETERS)}.")

    def one(name: str) -> str:
        values = [v for v in params.get(name, ()) if v.strip()]
        return values[-1].strip() if values else ""

    example = one("example").lower() or None
    if example is not None and not _EXAMPLE_ID.fullmatch(example):
        raise BadQuery("That example has expired, drop the picture again.")
    like = _whole(one("like"), "like", 1, 2**63 - 1) if one("like") else None
    if example and like:
        raise BadQuery("Search with either an example picture or a stored image, not both.")
    query = " ".join(one("q").split())
    terms = _terms(query, has_base=example is not None or like is not None)
    width, height, megapixels = _min_size(one("min_size")) if one("min_size") else (None, None, None)
    filters = Filters(
        collections=_listed(params.get("collection", ()), "collection"),
        albums=_albums(_listed(params.get("album", ()), "album")),
        sources=_known(_listed(params.get("source", ()), "source"), SOURCES, "source", str.lower),
        folder=one("folder") or None,
        taken_from=_day(one("taken_from"), "taken_from") if one("taken_from") else None,
        taken_to=_day(one("taken_to"), "taken_to") if one("taken_to") else None,
        added_from=_day(one("added_from"), "added_from") if one("added_from") else None,
        added_to=_day(one("added_to"), "added_to") if one("added_to") else None,
        formats=_known(_listed(params.get("format", ()), "format"), FORMATS, "format",
                       lambda f: FORMAT_ALIASES.get(f.upper(), f.upper())),
        orientation=_choice(Orientation, one("orientation"), "orientation") if one("orientation") else None,
        min_width=width, min_height=height, min_megapixels=megapixels,
        place=_place(one("place")) if one("place") else None,
        people=_people(_listed(params.get("person", ()), "person")),
    )
    _date_range(filters.taken_from, filters.taken_to, "taken")
    _date_range(filters.added_from, filters.added_to, "added")
    min_score = None
    if one("min_score"):
        try:
            min_score = float(one("min_score"))
        except ValueError:
            min_score = None
        if min_score is None or not -1.0 <= min_score <= 1.0:
            raise BadQuery(f"The min_score parameter must be a number from -1 to 1, "
                           f"not {_shown(one('min_score'))!r}.")
    show_all = one("all").lower()
    if show_all not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
        raise BadQuery(f"The all parameter must be 1 or 0, not {_shown(show_all)!r}.")
    return SearchRequest(
        query=query, terms=terms, example=example, like=like, filters=filters,
        mode=_choice(Mode, one("mode"), "mode") if one("mode") else None,
        sort=_choice(Sort, one("sort"), "sort") if one("sort") else Sort.RELEVANCE,
        min_score=min_score, show_all=show_all in ("1", "true", "yes", "on"),
        page=_whole(one("page"), "page", 1, MAX_PAGE) if one("page") else 1,
        per_page=(_whole(one("per_page"), "per_page", 1, MAX_PER_PAGE) if one("per_page")
                  else default_per_page),
    )


def day_start(day: date) -> datetime:
    """Midnight at the start of `day` (naive, like capture times)."""
    return datetime.combine(day, time.min)


def day_after(day: date) -> datetime:
    """Midnight at the end of `day`: ranges end before it, so the whole last day is included."""
    return datetime.combine(day + timedelta(days=1), time.min)
