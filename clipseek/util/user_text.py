"""One rule for every text a person writes and others read (captions, collection, user and token names).

Text must show what it says: nothing made only of invisible characters, no controls that
reverse or reorder what follows (the "U+202E" trick that makes `exe.jpg` read `gpj.exe`),
and no control characters. The joiners that emoji and some scripts need stay.
"""

from __future__ import annotations

import unicodedata

from clipseek.errors import BadQuery

# Embeddings, overrides and isolates: each changes the order in which the rest is shown.
REORDERING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Letters and symbols that draw nothing, beside the format characters (category Cf).
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")


def _invisible(ch: str) -> bool:
    return ch.isspace() or ch in _BLANK_LOOKING or unicodedata.category(ch) == "Cf"


def user_text(raw: str, *, what: str, max_chars: int) -> str:
    """`raw` without blanks and invisible characters at its ends; BadQuery when it would hide itself.

    `what` names the text in the sentence, such as "A caption".
    """
    text = raw.strip()
    if not text:
        raise BadQuery(f"{what} cannot be empty.")
    if any(ch in REORDERING for ch in text):
        raise BadQuery(f"{what} cannot contain characters that reverse or reorder text "
                       "(U+202A to U+202E, U+2066 to U+2069).")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        raise BadQuery(f"{what} cannot contain control characters.")
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    if start == end:
        raise BadQuery(f"{what} cannot be made only of invisible characters; write some visible text.")
    text = text[start:end]
    if len(text) > max_chars:
        raise BadQuery(f"{what} has at most {max_chars:,} characters, not {len(text):,}.")
    return text


def counted(number: int, word: str, plural: str | None = None) -> str:
    """A number with its noun in the singular or plural: "1 image", "3 images"."""
    return f"{number:,} {word if number == 1 else plural or word + 's'}"
