"""People on real photos with dlib's real models: faces found where they are, grouped into
people, named, merged, corrected, searched with person=, deleted with their pictures, and
all of them deleted when people is turned off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import func, select

from clipseek.api import search as api_search
from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.errors import ConfigError
from clipseek.indexing.broker import broker_client
from clipseek.indexing.face_finder import FaceFinder
from clipseek.indexing.face_finding import find_faces, people_on
from clipseek.library.deletion import Selection, purge_images
from clipseek.library.derivatives import ensure_face_thumbnail
from clipseek.library.ingest import ingest_inline
from clipseek.library.people import enable_people, list_people, person_faces_with_images, remove_face
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.tables import Face, FaceDescriptor, FacesState, Image, Person
from clipseek.upkeep.recovery import requeue_lost_faces
from tests.cli import run_in_process
from tests.conftest import Library, built_library
from tests.faces import face_sources, rotated_with_exif, write_face_photos


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    """The real models, loaded once for the module."""
    found = FaceFinder()
    found.load()
    return found


@pytest.fixture(scope="module")
def face_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_face_photos(tmp_path_factory.mktemp("faces"))


def test_faces_are_found_where_the_displayed_picture_shows_them(
    finder: FaceFinder, face_photos: dict[str, Path], tmp_path: Path,
) -> None:
    grace = finder.find_in_file(face_photos["grace-original"], max_pixels=10**8)
    astronaut = finder.find_in_file(face_photos["astronaut-original"], max_pixels=10**8)
    assert len(grace) == 1 and len(astronaut) == 1
    assert finder.find_in_file(face_photos["coffee"], max_pixels=10**8) == []
    # Grace Hopper's face is in the upper middle of her portrait (512 x 600).
    face = grace[0]
    assert 150 < face.left < face.right < 400 and 100 < face.top < face.bottom < 360
    assert face.descriptor.shape == (128,)
    # The same file turned a quarter, with EXIF saying so: the box is in upright pixels.
    turned = finder.find_in_file(rotated_with_exif(face_sources()["grace"], tmp_path / "turned.jpg"),
                                 max_pixels=10**8)
    assert len(turned) == 1
    assert all(abs(a - b) < 25 for a, b in zip(
        (turned[0].left, turned[0].top, turned[0].right, turned[0].bottom),
        (face.left, face.top, face.right, face.bottom), strict=True))


def _ingest(db: Database, encoder: ClipEncoder, settings: Settings,
            paths: dict[str, Path]) -> dict[str, int]:
    ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in paths.values()],
                  settings=settings)
    with db.session() as session:
        rows = session.execute(select(Image.id, Image.path))
        return {Path(path).stem: image_id for image_id, path in rows}


@pytest.fixture(scope="module")
def grouped_library(pg_server: EmbeddedPostgres, encoder: ClipEncoder, finder: FaceFinder,
                    face_photos: dict[str, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library[dict[str, int]]]:
    """The face photos indexed, people turned on and their faces found and grouped (no worker),
    once for the module: each test that starts from it gets a copy of its database."""
    def group(db: Database, settings: Settings) -> dict[str, int]:
        ids = _ingest(db, encoder, settings, face_photos)
        with db.session() as session:
            waiting = enable_people(session)
            session.commit()
            assert sorted(waiting) == sorted(ids.values())
            report = find_faces(session, finder, waiting, max_pixels=settings.max_image_pixels,
                                distance=settings.people_distance)
        assert report.faces == 10 and not report.failed
        return ids

    with built_library(pg_server, tmp_path_factory.mktemp("grouped") / "home", group) as library:
        yield library


@pytest.fixture
def grouped(grouped_library: Library[dict[str, int]], db: Database) -> dict[str, int]:
    """The test's database holds the face photos, indexed, their faces found and grouped: their ids."""
    return dict(grouped_library.built)


def _people_of(db: Database) -> dict[int, set[int]]:
    with db.session() as session:
        rows = session.execute(select(Face.person_id, Face.image_id).where(Face.person_id.is_not(None)))
        people: dict[int, set[int]] = {}
        for person_id, image_id in rows:
            assert person_id is not None
            people.setdefault(person_id, set()).add(image_id)
        return people


def test_two_people_in_five_pictures_each_become_exactly_two_people(
    db: Database, grouped: dict[str, int],
) -> None:
    people = sorted(_people_of(db).values(), key=min)
    expected = sorted(({i for n, i in grouped.items() if n.startswith(who)}
                       for who in ("grace", "astronaut")), key=min)
    assert people == expected
    with db.session() as session:
        states = {i: s for i, s in session.execute(select(Image.id, Image.faces_state))}
    assert states[grouped["coffee"]] == FacesState.NONE
    assert {states[i] for n, i in grouped.items() if n != "coffee"} == {FacesState.FOUND}


def test_people_are_named_listed_and_found_by_name_in_every_interface(
    db: Database, grouped: dict[str, int], cli_env: dict[str, str], client: FlaskClient, settings: Settings,
) -> None:
    grace = next(p for p, images in _people_of(db).items() if grouped["grace-original"] in images)
    named = run_in_process(cli_env, "people", "name", str(grace), "Grace")
    assert named.returncode == 0 and "is now 'Grace'" in named.stdout, named.stderr
    listed = json.loads(run_in_process(cli_env, "people", "--json").stdout)
    assert listed["enabled"] is True
    assert [(p["name"], p["faces"], p["images"]) for p in listed["people"]] == [
        ("Grace", 5, 5), (None, 5, 5)]
    graces = {i for n, i in grouped.items() if n.startswith("grace")}
    # The command line, any case, alone and with a query.
    found = json.loads(run_in_process(cli_env, "search", "--person", "grace", "-k", "20", "--json").stdout)
    assert {r["image_id"] for r in found["results"]} == graces
    found = json.loads(run_in_process(cli_env, "search", "a portrait", "--person", "GRACE", "--json",
                                      "-k", "20", "--all").stdout)
    assert {r["image_id"] for r in found["results"]} == graces
    # The JSON API, by name and by id.
    for ref in ("Grace", str(grace)):
        answer = client.get("/api/search", query_string={"q": "a woman", "person": ref, "per_page": 20,
                                                         "all": 1})
        assert answer.status_code == 200
        assert {r["image_id"] for r in answer.get_json()["results"]} == graces
    # Python.
    ctx = Context(settings)
    try:
        page = api_search("", top_k=20, person="grace", context=ctx)
    finally:
        ctx.close()
    assert {hit.image_id for hit in page.hits} == graces
    # Nobody by that name: no pictures; two people at once: pictures of both (none here).
    assert client.get("/api/search", query_string={"person": "Nobody"}).get_json()["total"] == 0
    other = next(p for p in _people_of(db) if p != grace)
    both = client.get("/api/search", query_string=[("person", "Grace"), ("person", str(other))])
    assert both.get_json()["total"] == 0


def test_merging_two_people_and_removing_a_wrong_face(
    db: Database, grouped: dict[str, int], cli_env: dict[str, str],
) -> None:
    people = _people_of(db)
    grace, astronaut = sorted(people, key=lambda p: grouped["grace-original"] not in people[p])
    assert run_in_process(cli_env, "people", "name", str(astronaut), "Eileen").returncode == 0
    merged = run_in_process(cli_env, "people", "merge", "eileen", str(grace))
    assert merged.returncode == 0, merged.stderr
    assert list(_people_of(db)) == [astronaut] and len(_people_of(db)[astronaut]) == 10
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 1
        wrong = session.scalar(select(Face.id).where(Face.image_id == grouped["grace-mirrored"]))
    faces = run_in_process(cli_env, "people", "faces", "Eileen")
    assert f"{wrong}\t{grouped['grace-mirrored']}\t" in faces.stdout
    removed = run_in_process(cli_env, "people", "remove-face", str(wrong))
    assert removed.returncode == 0 and f"Face {wrong} is no longer" in removed.stdout
    assert grouped["grace-mirrored"] not in _people_of(db)[astronaut]
    with db.session() as session:
        face = session.get(Face, wrong)
        assert face is not None and face.person_locked and face.person_id is None
    again = run_in_process(cli_env, "people", "merge", "Eileen", "Eileen")
    assert again.returncode == 1 and "cannot be merged with themselves" in again.stderr
    assert run_in_process(cli_env, "people", "name", "404", "X").returncode == 1


def test_faces_removed_by_hand_stay_ungrouped_when_more_pictures_come(
    db: Database, grouped: dict[str, int], finder: FaceFinder, encoder: ClipEncoder, settings: Settings,
    tmp_path: Path,
) -> None:
    astronaut = next(p for p, images in _people_of(db).items() if grouped["astronaut-original"] in images)
    with db.session() as session:
        removed = list(session.scalars(select(Face.id).where(Face.person_id == astronaut)))
        for face_id in removed:
            remove_face(session, face_id=face_id)
        session.commit()
        assert session.get(Person, astronaut) is None  # a person left with no face is gone
    # Another picture of her: her only near faces were all removed by hand, so no new
    # person is made of them (without the lock, the six would become one).
    again = tmp_path / "astronaut-again.jpg"
    face_sources()["astronaut"].save(again, "JPEG", quality=75)
    ids = _ingest(db, encoder, settings, {"again": again})
    with db.session() as session:
        find_faces(session, finder, [ids["astronaut-again"]], max_pixels=settings.max_image_pixels,
                   distance=settings.people_distance)
        new = session.scalar(select(Face).where(Face.image_id == ids["astronaut-again"]))
        assert new is not None and new.person_id is None and not new.person_locked
        assert set(session.scalars(select(Face.person_id).where(Face.id.in_(removed)))) == {None}
    assert len(_people_of(db)) == 1


def test_deleting_a_picture_deletes_its_faces_and_the_trash_leaves_the_counts(
    db: Database, grouped: dict[str, int], settings: Settings, cli_env: dict[str, str],
) -> None:
    gone = grouped["grace-larger"]
    trashed = run_in_process(cli_env, "delete", str(gone), "--yes")
    assert trashed.returncode == 0, trashed.stderr
    with db.session() as session:
        assert sorted(p.faces for p in list_people(session)) == [4, 5]
        purge_images(session, Selection(image_ids=(gone,)), store=settings.image_store,
                     thumbnails=settings.thumbnails)
        assert not session.scalar(select(func.count()).select_from(Face).where(Face.image_id == gone))
        assert session.scalar(select(func.count()).select_from(FaceDescriptor)) == 9


def test_turning_people_off_asks_then_deletes_every_face_and_unnamed_person(
    db: Database, grouped: dict[str, int], cli_env: dict[str, str], settings: Settings,
) -> None:
    grace = next(p for p, images in _people_of(db).items() if grouped["grace-original"] in images)
    assert run_in_process(cli_env, "people", "name", str(grace), "Grace").returncode == 0
    with db.session() as session:
        face, image = person_faces_with_images(session, grace)[0]
    crop = ensure_face_thumbnail(settings.thumbnails, sha256=image.sha256, source=Path(image.path),
                                 box=(face.box_left, face.box_top, face.box_right, face.box_bottom),
                                 max_pixels=settings.max_image_pixels)
    with PILImage.open(crop) as shown:
        assert shown.size == (160, 160)
    declined = run_in_process(cli_env, "people", "disable", stdin="n\n")
    assert "Delete 10 face(s) with their descriptors and 1 unnamed person(s)?" in declined.stderr
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(FaceDescriptor)) == 10
    done = run_in_process(cli_env, "people", "disable", "--yes")
    assert done.returncode == 0 and "10 face(s) and 1 unnamed person(s) deleted" in done.stdout, done.stderr
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(FaceDescriptor)) == 0
        assert session.scalar(select(func.count()).select_from(Face)) == 0
        assert list(session.scalars(select(Person.name))) == ["Grace"]
        assert not people_on(session, settings)
        assert set(session.scalars(select(Image.faces_state))) == {FacesState.SKIPPED}
    assert not crop.exists()
    status = json.loads(run_in_process(cli_env, "status", "--json").stdout)["people"]
    assert status == {"enabled": False, "faces": 0, "people": 0, "named": 0, "waiting": 0, "failed": 0}
    forced = run_in_process(cli_env | {"CLIPSEEK_PEOPLE": "1"}, "people", "disable", "--yes")
    assert forced.returncode == 1 and "CLIPSEEK_PEOPLE=1" in forced.stderr


def test_the_people_settings_read_from_the_environment() -> None:
    assert Settings.from_env({}).people is False
    chosen = Settings.from_env({"CLIPSEEK_PEOPLE": "1", "CLIPSEEK_PEOPLE_DISTANCE": "0.45"})
    assert chosen.people and chosen.people_distance == 0.45
    with pytest.raises(ConfigError):
        Settings.from_env({"CLIPSEEK_PEOPLE_DISTANCE": "3"})


def test_the_scheduler_sends_pictures_waiting_for_faces_only_while_people_is_on(
    db: Database, encoder: ClipEncoder, settings: Settings, face_photos: dict[str, Path], redis_url: str,
) -> None:
    ids = _ingest(db, encoder, settings, {k: v for k, v in face_photos.items() if k.endswith("original")})
    client = broker_client(settings.with_changes(redis_url=redis_url))
    sent: list[list[int]] = []
    try:
        with db.session() as session:
            # Indexed inline, never sent: lost, but people is off.
            assert requeue_lost_faces(session, client, settings, enqueue=sent.append, grace_s=0) == []
            assert requeue_lost_faces(session, client, settings.with_changes(people=True),
                                      enqueue=sent.append, grace_s=0) == sorted(ids.values())
    finally:
        client.close()
    assert sent == [sorted(ids.values())]
