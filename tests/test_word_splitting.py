"""Words the text recognizer ran together are split apart; real words, numbers and codes are not."""

from __future__ import annotations

import pytest

from clipseek.photo.word_splitting import recover_words


@pytest.mark.parametrize(("read", "meant"), [
    ("FARMERSMARKET", "FARMERS MARKET"),
    ("BAKERYOPENSUNDAY", "BAKERY OPEN SUNDAY"),
    ("FarmersMarket open", "Farmers Market open"),
    ("ATASTEOFHOME", "A TASTE OF HOME"),
    ("NOPARKING!", "NO PARKING!"),
    ("FARMERSMARKET. OPENDAILY", "FARMERS MARKET. OPEN DAILY"),
])
def test_words_run_together_are_split_on_the_word_list(read: str, meant: str) -> None:
    assert recover_words(read) == meant


@pytest.mark.parametrize("line", [
    "PLATFORM 9 NORTHBOUND",   # real words stay whole
    "Platform9 COVID19 A4",    # letters with digits are codes, kept as read
    "wifi ecoli",              # too short to tell a run from a word
    "CAFÉ Speisekarte",        # beyond the English word list
    "Bienvenue",               # a split into rare words is a guess
    "www.farmersmarket.com info@farmersmarket.org",  # addresses
    "XQWZRTYB",                # no split at all
])
def test_real_words_numbers_codes_and_addresses_stay_as_read(line: str) -> None:
    assert recover_words(line) == line
