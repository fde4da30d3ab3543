"""Words a text recognizer ran together, recovered: "FARMERSMARKET" reads "FARMERS MARKET".

PP-OCR's recognizer often drops the spaces between English words on signs. A run of letters
that is no English word is split where wordninja's word-frequency list finds a split into
common words; real words, numbers, codes and anything not plain ASCII stay as they were.
"""

from __future__ import annotations

import re
from functools import cache

# Shorter runs are too often abbreviations or names ("wifi" would become "wi fi").
MIN_LETTERS = 6
# Each part must be among this many most frequent words of the list: a split into rare
# words ("abc xyz") is no better than the run itself.
MAX_RANK = 30_000
# One-letter words English has; any other one-letter part means the split is a guess.
ONE_LETTER_WORDS = frozenset({"a", "i"})
# A run of ASCII letters that stands alone: no letter or digit touches it, and it is no part
# of an address ("www.farmersmarket.com", "name@example.org").
_RUN = re.compile(rf"(?<![A-Za-z0-9@./_])[A-Za-z]{{{MIN_LETTERS},}}(?![A-Za-z0-9@_]|[./][A-Za-z0-9])")


@cache
def _ranks() -> dict[str, int]:
    """Each word of wordninja's list with its frequency rank (0 the most frequent)."""
    import wordninja

    costs: dict[str, float] = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost
    return {word: rank for rank, word in enumerate(sorted(costs, key=costs.__getitem__))}


def split_run(run: str) -> list[str]:
    """The words a run of letters is made of, or the run alone when no split is clearly right."""
    import wordninja

    ranks = _ranks()
    if len(run) < MIN_LETTERS or not run.isascii() or not run.isalpha() or run.lower() in ranks:
        return [run]
    parts: list[str] = wordninja.split(run)
    if len(parts) < 2 or "".join(parts) != run:
        return [run]
    for part in parts:
        word = part.lower()
        if ranks.get(word, MAX_RANK) >= MAX_RANK or (len(word) == 1 and word not in ONE_LETTER_WORDS):
            return [run]
    return parts


def recover_words(line: str) -> str:
    """A recognized line with the words it ran together split apart; the rest left untouched."""
    return _RUN.sub(lambda found: " ".join(split_run(found.group())), line)
