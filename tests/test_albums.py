"""Albums on real PostgreSQL: the service, the album filter on every interface, and the commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import select, update

from clipseek.api import search
from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.errors import BadQuery
from clipseek.library.albums import (
    add_to_album,
    album_image_ids,
    album_images,
    album_name,
    album_summary,
    albums_of_image,
    create_album,
    delete_album,
    find_albums,
    list_albums,
    remove_from_album,
    rename_album,
)
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.search.query import parse_request
from clipseek.search.run import run_search
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.cli import run_in_process


@pytest.fixture
def pictures(db: Database, encoder: ClipEncoder, settings: Settings,
             sample_photos: list[Candidate]) -> list[int]:
    """Six sample photos indexed, taken a day apart (the first the oldest)."""
    ingest_inline(db, encoder, sample_photos[:6], settings=settings)
    with db.session() as session:
        ids = sorted(session.scalars(select(Image.id)))
        for day, image_id in enumerate(ids, start=1):
            session.execute(update(Image).where(Image.id == image_id)
                            .values(taken_at=datetime(2024, 5, day, 12)))
        session.commit()
    return ids


def _trash(db: Database, image_id: int) -> None:
    # What the trash does to a picture: it keeps its rows, with the time it went.
    with db.session() as session:
        session.execute(update(Image).where(Image.id == image_id).values(trashed_at=datetime.now(UTC)))
        session.commit()


def test_albums_are_made_renamed_and_deleted_with_names_unique_whatever_the_case(
    db: Database, pictures: list[int],
) -> None:
    with db.session() as session:
        summer = create_album(session, name=album_name("  Summer 2024 "), created_by=None)
        create_album(session, name="Family", created_by=None)
        session.commit()
        with pytest.raises(BadQuery, match="There is already an album named 'SUMMER 2024'"):
            create_album(session, name="SUMMER 2024", created_by=None)
        with pytest.raises(BadQuery, match="already an album named 'family'"):
            rename_album(session, album_id=summer.id, name="family")
        assert rename_album(session, album_id=summer.id, name="summer 2024") is not None  # its own name
        renamed = rename_album(session, album_id=summer.id, name="Beach")
        assert renamed is not None and renamed.name == "Beach"
        assert rename_album(session, album_id=999999, name="x") is None
        session.commit()
        assert [a.name for a in list_albums(session)] == ["Beach", "Family"]
        assert [a.id for a in find_albums(session, ["beach", str(summer.id)])] == [summer.id] * 2
        with pytest.raises(BadQuery, match="There is no album 'Winter'"):
            find_albums(session, ["Winter"])
        add_to_album(session, album_id=summer.id, image_ids=pictures[:2], added_by=None)
        assert delete_album(session, album_id=summer.id) is not None
        session.commit()
        assert [a.name for a in list_albums(session)] == ["Family"]
        # The pictures stay in the library.
        assert len(list(session.scalars(select(Image.id)))) == len(pictures)
    for bad, message in (("", "cannot be empty"), ("x" * 201, "at most 200 characters"),
                         ("a\u202eb", "reverse or reorder")):
        with pytest.raises(BadQuery, match=message):
            album_name(bad)


def test_a_picture_is_in_any_number_of_albums_and_the_trash_leaves_counts_pages_and_covers(
    db: Database, pictures: list[int],
) -> None:
    with db.session() as session:
        beach = create_album(session, name="Beach", created_by=None)
        family = create_album(session, name="Family", created_by=None)
        session.flush()
        first = add_to_album(session, album_id=beach.id, image_ids=pictures[:4], added_by=None)
        again = add_to_album(session, album_id=beach.id, image_ids=[*pictures[2:5], 999999], added_by=None)
        add_to_album(session, album_id=family.id, image_ids=pictures[3:], added_by=None)
        session.commit()
        assert first.to_dict() == {"added": 4, "already": 0, "unknown": 0}
        assert again.to_dict() == {"added": 1, "already": 2, "unknown": 1}
        assert [a.name for a in albums_of_image(session, pictures[3])] == ["Beach", "Family"]
        beach_id = beach.id
    _trash(db, pictures[4])  # the newest in Beach: it leaves the count, the pages and the cover
    with db.session() as session:
        summary = album_summary(session, beach_id)
        assert summary is not None and (summary.images, summary.cover_id) == (4, pictures[3])
        total, newest = album_images(session, beach_id, page=1, per_page=3)
        assert total == 4 and [i.id for i in newest] == pictures[3:0:-1]
        _, oldest = album_images(session, beach_id, page=1, per_page=10, oldest_first=True)
        assert [i.id for i in oldest] == pictures[:4]
        assert album_image_ids(session, beach_id, limit=10) == pictures[3::-1]
        assert add_to_album(session, album_id=beach_id, image_ids=[pictures[4]],
                            added_by=None).unknown == 1  # a picture in the trash is not added
        assert remove_from_album(session, album_id=beach_id, image_ids=pictures[:2]) == 2
        session.commit()
        assert album_image_ids(session, beach_id, limit=10) == [pictures[3], pictures[2]]


def test_the_album_filter_keeps_an_albums_pictures_on_every_interface(
    db: Database, app: Flask, settings: Settings, cli_env: dict[str, str], pictures: list[int],
) -> None:
    with db.session() as session:
        album = create_album(session, name="Beach days", created_by=None)
        other = create_album(session, name="Other", created_by=None)
        session.flush()
        add_to_album(session, album_id=album.id, image_ids=pictures[1:4], added_by=None)
        add_to_album(session, album_id=other.id, image_ids=pictures[5:], added_by=None)
        session.commit()
        album_id, other_id = album.id, other.id
    wanted = set(pictures[1:4])
    encoder = app.extensions["clipseek"].encoder
    # The service, by id and by name (any case), browsing and searching in each mode.
    with db.session() as session:
        for params in ({"album": str(album_id)}, {"album": "beach DAYS"},
                       {"album": str(album_id), "q": "a photo"},
                       {"album": str(album_id), "q": "a photo", "mode": "semantic", "sort": "date"}):
            page = run_search(session, encoder, parse_request({k: [v] for k, v in params.items()}))
            assert {h.image_id for h in page.hits} == wanted and page.total == 3, params
        both = run_search(session, encoder, parse_request({"album": [f"{album_id},Other"]}))
        assert {h.image_id for h in both.hits} == wanted | {pictures[5]}
        none = run_search(session, encoder, parse_request({"album": ["No such album"]}))
        assert none.total == 0
    _trash(db, pictures[5])  # the picture of "Other": in the trash, no album filter finds it
    with db.session() as session:
        other_only = run_search(session, encoder, parse_request({"album": ["Other"], "q": ["a photo"]}))
        assert other_only.total == 0
    request = parse_request({"album": [str(album_id)], "q": ["sea"]})
    assert request.params()["album"] == str(album_id)
    assert parse_request({k: [v] for k, v in request.params().items()}) == request
    with pytest.raises(BadQuery, match="album id from 1 to"):
        parse_request({"album": ["9999999999999999999"]})
    # The web form and the JSON API.
    client = app.test_client()
    api = client.get(f"/api/search?album={album_id}&per_page=50").get_json()
    assert {r["image_id"] for r in api["results"]} == wanted and api["filters"] == {"albums": [str(album_id)]}
    form = client.get(f"/?album={album_id}").get_data(as_text=True)
    assert f'<option value="{album_id}" selected>Beach days</option>' in form
    assert all(f'data-viewer-id="{i}"' in form for i in wanted)
    assert f'data-viewer-id="{pictures[0]}"' not in form
    # The command line, by name, and the Python API.
    out = run_in_process(cli_env, "search", "--album", "Beach days", "--album", str(other_id), "--json",
                         "-k", "20")
    assert out.returncode == 0, out.stderr
    assert {r["image_id"] for r in json.loads(out.stdout)["results"]} == wanted
    ctx = Context(settings)
    try:
        found = search("", top_k=20, album="beach days", context=ctx)
    finally:
        ctx.close()
    assert {h.image_id for h in found.hits} == wanted


def test_album_commands_list_create_rename_add_remove_and_delete(
    cli_env: dict[str, str], db: Database, pictures: list[int],
) -> None:
    def run(*args: str, answer: str | None = None) -> str:
        out = run_in_process(cli_env, "album", *args, stdin=answer)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "No albums yet" in run("list")
    assert run("create", "Summer").startswith("Created album 'Summer' (id ")
    refused = run_in_process(cli_env, "album", "create", "summer")
    assert refused.returncode == 1 and "There is already an album named 'summer'" in refused.stderr
    added = run("add", "summer", *map(str, pictures[:3]))
    assert added == "Added 3 picture(s) to 'Summer'; 0 were in it already.\n"
    assert "1 id(s) name no picture" in run("add", "Summer", str(pictures[0]), "999999")
    assert run("remove", "Summer", str(pictures[0])) == "Took 1 picture(s) out of 'Summer'.\n"
    assert run("rename", "Summer", "Beach") == "Renamed album 'Summer' to 'Beach'.\n"
    listed = json.loads(run("list", "--json"))["albums"]
    assert [(a["name"], a["images"]) for a in listed] == [("Beach", 2)]
    assert run("list") == f"{listed[0]['id']}\tBeach\t2 picture(s)\n"
    assert "Nothing was deleted" in run("delete", str(listed[0]["id"]), answer="n\n")
    assert run("delete", "beach", "--yes") == "Deleted the album 'Beach'; its pictures stay in the library.\n"
    missing = run_in_process(cli_env, "album", "add", "Beach", "1")
    assert missing.returncode == 1 and "There is no album 'Beach'" in missing.stderr
    with db.session() as session:
        assert list_albums(session) == []
