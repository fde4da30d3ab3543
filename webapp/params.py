"""Reading request parameters: image ids, page numbers and page sizes, with readable errors."""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import Flask, abort, request
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BaseConverter

from clipseek.errors import BadQuery
from clipseek.search.query import SearchRequest, parse_request
from clipseek.search.run import MAX_PAGE, MAX_PER_PAGE

PAGE_SIZES = (12, 24, 48, 96)
DEFAULT_PAGE_SIZE = 24
# Image ids are PostgreSQL bigints; a larger number would make the query itself fail.
MAX_IMAGE_ID = 2**63 - 1
MAX_IDS = 500
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
# No number in range has more digits; int() of longer strings is slow, or refused by Python.
_MAX_DIGITS = len(str(MAX_IMAGE_ID))


def _shown(text: str) -> str:
    return text if len(text) <= 20 else f"{text[:20]}…"


def _parse(text: str, low: int, high: int) -> int | None:
    """The number in `text` when it is a whole number from `low` to `high`, else None."""
    if not _WHOLE_NUMBER.fullmatch(text) or len(text.lstrip("-")) > _MAX_DIGITS:
        return None
    value = int(text)
    return value if low <= value <= high else None


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """`raw` as a whole number from `low` to `high`, or BadQuery naming the parameter."""
    text = raw.strip()
    value = _parse(text, low, high)
    if value is not None:
        return value
    if not _WHOLE_NUMBER.fullmatch(text):
        raise BadQuery(f"The {name} parameter must be a whole number, not {_shown(text)!r}.")
    raise BadQuery(f"The {name} parameter must be from {low:,} to {high:,}, not {_shown(text)}.")


def int_arg(name: str, default: int, *, low: int, high: int,
            source: Mapping[str, str] | None = None) -> int:
    """A whole-number parameter of the query string (or of `source`), within `low`..`high`."""
    raw = (request.args if source is None else source).get(name, "").strip()
    return whole_number(raw, name, low, high) if raw else default


def paging(source: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The requested page and page size."""
    return (int_arg("page", 1, low=1, high=MAX_PAGE, source=source),
            int_arg("per_page", DEFAULT_PAGE_SIZE, low=1, high=MAX_PER_PAGE, source=source))


def search_request(args: MultiDict[str, str]) -> SearchRequest:
    """The search the query string asks for (every parameter of the form and of /api/search)."""
    return parse_request(args.to_dict(flat=False), default_per_page=DEFAULT_PAGE_SIZE)


def search_body(body: object) -> tuple[MultiDict[str, str], object | None]:
    """A POSTed search: its parameters as a query string would give them, and its "embedding"."""
    if not isinstance(body, dict):
        raise BadQuery('Send the search as a JSON object, e.g. {"embedding": [...], "per_page": 10}.')
    embedding = body.get("embedding")
    if embedding is not None and str(body.get("q", "")).strip():
        raise BadQuery("Send either q (words) or embedding (a vector), not both.")
    args: MultiDict[str, str] = MultiDict()
    for name, value in body.items():
        if name == "embedding":
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict | list) or item is None:
                raise BadQuery(f"The {name} parameter must be text, a number or a list of them.")
            args.add(name, str(item).lower() if isinstance(item, bool) else str(item))
    return args, embedding


def tidy_search_args(args: MultiDict[str, str]) -> MultiDict[str, str] | None:
    """The search page's arguments without empty values, and without the example when new words replace it.

    None when they are tidy already. Words typed into the box start a new search by text;
    words that begin with + or - add to or take from the example or picture ("more like
    this") instead, as in `like=17&q=- "people"`, which the API reads the same way.
    """
    kept = MultiDict([(k, v) for k, v in args.items(multi=True) if v.strip()])
    query = kept.get("q", "").strip()
    if query and query[0] not in "+-":
        kept.poplist("example")
        kept.poplist("like")
    return None if list(kept.items(multi=True)) == list(args.items(multi=True)) else kept


def parse_ids(raw: str) -> list[int]:
    """Image ids from '1,2,3' (at most 500 of them)."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if len(parts) > MAX_IDS:
        raise BadQuery(f"Ask for at most {MAX_IDS} images at once.")
    for part in parts:
        if _parse(part, 1, MAX_IMAGE_ID) is None:
            raise BadQuery(f"The ids parameter must list image ids (whole numbers from 1 to "
                           f"{MAX_IMAGE_ID:,}) separated by commas; {_shown(part)!r} is not one.")
    return [int(part) for part in parts]


def parse_sha256s(raw: str) -> list[str]:
    """SHA-256 checksums from 'ab12…,cd34…' (64 hex digits each, at most 500 of them), lower-cased."""
    parts = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if len(parts) > MAX_IDS:
        raise BadQuery(f"Ask for at most {MAX_IDS} checksums at once.")
    for part in parts:
        if len(part) != 64 or any(ch not in "0123456789abcdef" for ch in part):
            raise BadQuery("The sha256 parameter must list SHA-256 checksums (64 hexadecimal digits) "
                           f"separated by commas; {_shown(part)!r} is not one.")
    return parts


class ImageIdConverter(BaseConverter):
    """A whole number in a URL: an image id from 1 to 2**63 - 1, or a 404 that names it."""

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        """The id, or a 404 for a number no image can have."""
        number = _parse(value, 1, MAX_IMAGE_ID)
        if number is None:
            abort(404, description=f"There is no image {_shown(value)}.")
        return number

    def to_url(self, value: object) -> str:
        """The id as written in a URL."""
        return str(int(value))  # type: ignore[call-overload]


UNSTORABLE_TEXT = ("Text in a request cannot contain a NUL character (\\x00, \\u0000) or half of a "
                   "UTF-16 surrogate pair (\\ud800-\\udfff): remove it and try again.")
# NUL, which PostgreSQL's text cannot hold, and lone surrogates, which UTF-8 cannot encode
# (a JSON body may spell either as a \u escape).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


def refuse_unstorable_text() -> None:
    """Refuse a request whose parameters, form fields or JSON text no database text can hold.

    Any such value would otherwise fail deep in a statement as a server error; it is refused
    here, at the edge, for every route at once.
    """
    values: list[object] = [request.path, *request.args.keys(), *request.args.values()]
    if request.method != "GET":
        values += [*request.form.keys(), *request.form.values()]
        if request.is_json:
            values.append(request.get_json(silent=True))
    if any(_unstorable(v) for v in values):
        abort(400, description=UNSTORABLE_TEXT)


def init_app(app: Flask) -> None:
    """Make `<int:...>` in every route an image id (each one is), and refuse text no database
    can hold in every request; call before adding routes."""
    app.url_map.converters["int"] = ImageIdConverter
    app.before_request(refuse_unstorable_text)
