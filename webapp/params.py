"""Reading query parameters: whole numbers and page sizes, with readable errors."""

from __future__ import annotations

from flask import request

from clipseek.errors import BadQuery

PAGE_SIZES = (12, 24, 48, 96)
DEFAULT_PAGE_SIZE = 24


def int_arg(name: str, default: int) -> int:
    """A whole-number query parameter, or BadQuery naming it."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadQuery(f"The {name} parameter must be a whole number, not {raw[:20]!r}.") from None


def paging() -> tuple[int, int]:
    """The requested page and page size."""
    return int_arg("page", 1), int_arg("per_page", DEFAULT_PAGE_SIZE)
