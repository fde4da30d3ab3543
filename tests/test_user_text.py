"""One rule for the text people write: captions, collection names, user names and token names."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clipseek import accounts
from clipseek.errors import BadQuery
from clipseek.library.captions import parse_caption_text
from clipseek.library.collections import collection_name
from clipseek.store.db import Database
from clipseek.store.tables import Role

INVISIBLE = ["\u200b", "\ufeff", "\u200b\ufeff\u200b", " \u200b \ufeff ", "\u2060\u200d\u200c",
             "\u3164", "\u00ad\u200b"]
REORDERING = ["cat\u202etac", "\u202epasswd", "\u2066name\u2069", "left\u202aright", "x\u202cy",
              "\u2067abc", "\u2068a"]
CONTROL = ["bell\x07", "esc\x1b[31m", "nul\x00byte", "del\x7f"]
PARSERS: dict[str, Callable[[str], str]] = {
    "caption": parse_caption_text,
    "collection name": collection_name,
    "user name": accounts.user_name,
}


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("raw", INVISIBLE)
def test_text_made_only_of_invisible_characters_is_refused(kind: str, raw: str) -> None:
    with pytest.raises(BadQuery, match=r"only of invisible characters|cannot be empty"):
        PARSERS[kind](raw)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("raw", REORDERING)
def test_text_that_reorders_itself_is_refused(kind: str, raw: str) -> None:
    with pytest.raises(BadQuery, match=r"reverse or reorder text"):
        PARSERS[kind](raw)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("raw", CONTROL)
def test_control_characters_are_refused(kind: str, raw: str) -> None:
    with pytest.raises(BadQuery, match=r"control characters"):
        PARSERS[kind](raw)


@pytest.mark.parametrize(("raw", "kept"), [
    ("Mum and Dad", "Mum and Dad"),
    ("\ufeffholiday\u200b ", "holiday"),  # a byte-order mark pasted along, and trailing blanks
    ("\U0001f469\u200d\U0001f4bb at work", "\U0001f469\u200d\U0001f4bb at work"),  # emoji joined by ZWJ
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
])
@pytest.mark.parametrize("kind", ["caption", "collection name"])
def test_visible_text_keeps_the_joiners_scripts_and_emoji_need(kind: str, raw: str, kept: str) -> None:
    assert PARSERS[kind](raw) == kept


def test_a_caption_may_span_lines_and_tabs_which_become_spaces() -> None:
    assert parse_caption_text("A red bus\n\ton a bridge\r\n") == "A red bus on a bridge"


@pytest.mark.parametrize(("raw", "sentence"), [
    ("\u200b\u200b", "only of invisible characters"), ("lap\u202etop", "reorder"),
    ("lap\x07top", "control characters"), ("", "cannot be empty"), ("x" * 65, "at most 64"),
])
def test_token_names_follow_the_same_rule(db: Database, raw: str, sentence: str) -> None:
    with db.session() as session:
        user = accounts.add_user(session, name="ann", secret="correct horse battery", user_role=Role.VIEWER)
        with pytest.raises(BadQuery, match=sentence):
            accounts.create_token(session, user, raw)
        assert accounts.create_token(session, user, " laptop\u200b")[0].name == "laptop"
