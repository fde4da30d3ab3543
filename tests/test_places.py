"""Places from GPS with the real gazetteer: naming them, recording them as pictures arrive, the
place filter in the service, the API, the command line and Python, text search, the picture's
page, status, `reindex --places`, and a sync that changes a picture's coordinates."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, select, update

from clipseek.api import search as python_search
from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.library.captions import has_given_captions
from clipseek.library.ingest import decode_pool, ingest_inline, register_candidates
from clipseek.library.register import Candidate
from clipseek.library.sync import sync_folder
from clipseek.photo import places
from clipseek.photo.places import Place, gazetteer
from clipseek.search.query import parse_request
from clipseek.search.run import SearchPage, run_search
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Image
from tests.cli import run_in_process
from tests.images import photo_taken_at, photo_with_exif

LISBON = (38.7223, -9.1393)
CASCAIS = (38.6979, -9.4215)  # a town of its own, in the region of Lisbon
PORTO = (41.1579, -8.6291)
SYDNEY = (-33.8688, 151.2093)
MID_ATLANTIC = (30.0, -40.0)  # 1,300 km from the Azores
API = {"X-Requested-With": "test"}


def test_the_gazetteer_names_the_city_people_name_not_the_nearest_quarter() -> None:
    found = gazetteer()
    # GeoNames' nearest point to central Lisbon is the quarter of Intendente.
    assert found.place_at(*LISBON) == Place("Lisbon", "Lisbon", "Portugal", "PT")
    assert found.place_at(*SYDNEY) == Place("Sydney", "New South Wales", "Australia", "AU")
    assert found.place_at(*CASCAIS) == Place("Cascais", "Lisbon", "Portugal", "PT")
    assert found.place_at(37.5665, 126.978) == Place("Seoul", "Seoul", "South Korea", "KR")
    assert [found.place_at(*LISBON).text, found.place_at(*SYDNEY).text] == [  # type: ignore[union-attr]
        "Lisbon, Portugal", "Sydney, New South Wales, Australia"]


@pytest.mark.parametrize("where", [(0.0, 0.0), MID_ATLANTIC, (-77.85, 166.67), (91.0, 10.0),
                                   (float("nan"), 10.0)])
def test_the_open_sea_the_wilds_and_no_fix_name_no_place(where: tuple[float, float]) -> None:
    assert gazetteer().place_at(*where) is None


def _taken_at(folder: Path, sample_photos: list[Candidate],
              spots: dict[str, tuple[float, float]]) -> list[Path]:
    """A new folder of sample photos with GPS, one per spot, named after it."""
    folder.mkdir()
    return [photo_taken_at(sample_photos[n].path, folder / f"{name}.jpg", *spot)
            for n, (name, spot) in enumerate(spots.items())]


def _trip_photos(folder: Path, sample_photos: list[Candidate]) -> list[Candidate]:
    """Photos taken in Lisbon, Cascais, Porto, Sydney, mid-ocean, without a fix and without GPS."""
    paths = _taken_at(folder, sample_photos, {"lisbon": LISBON, "cascais": CASCAIS, "porto": PORTO,
                                              "sydney": SYDNEY, "ocean": MID_ATLANTIC})
    paths.append(photo_with_exif(sample_photos[5].path, folder / "nofix.jpg", lat_ref="N",
                                 lat=(0.0, 0.0, 0.0), lon_ref="E", lon=(0.0, 0.0, 0.0)))
    paths.append(photo_with_exif(sample_photos[6].path, folder / "plain.jpg"))
    return [Candidate(path=p, source="folder") for p in paths]


def _ids(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {Path(path).stem: image_id for image_id, path in session.execute(select(Image.id, Image.path))}


@pytest.fixture
def trip(db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path) -> dict[str, int]:
    """The trip's photos registered (not indexed: what is shown of them needs no model)."""
    with decode_pool(settings) as pool:
        register_candidates(db, _trip_photos(tmp_path / "trip", sample_photos), settings=settings, pool=pool)
    return _ids(db)


@pytest.fixture
def indexed_trip(db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
                 tmp_path: Path) -> dict[str, int]:
    """The trip's photos registered and indexed, for searches."""
    ingest_inline(db, encoder, _trip_photos(tmp_path / "trip", sample_photos), settings=settings)
    return _ids(db)


def _place(db: Database, image_id: int) -> tuple[object, ...]:
    with db.session() as session:
        image = session.get(Image, image_id)
        assert image is not None
        captions = [c.text for c in image.captions if c.source == "place"]
        return (image.place_city, image.place_region, image.place_country, image.place_country_code,
                image.placed_at is not None, captions)


def test_pictures_are_placed_as_they_are_registered_and_bad_gps_places_none(
    db: Database, trip: dict[str, int],
) -> None:
    assert _place(db, trip["lisbon"]) == ("Lisbon", "Lisbon", "Portugal", "PT", True, ["Lisbon, Portugal"])
    assert _place(db, trip["sydney"]) == ("Sydney", "New South Wales", "Australia", "AU", True,
                                          ["Sydney, New South Wales, Australia"])
    # Looked up, but nowhere: placed_at tells it from a picture never looked up.
    assert _place(db, trip["ocean"]) == (None, None, None, None, True, [])
    for unlocated in ("nofix", "plain"):
        assert _place(db, trip[unlocated]) == (None, None, None, None, False, [])
    with db.session() as session:
        nofix = session.get(Image, trip["nofix"])
        assert nofix is not None and (nofix.latitude, nofix.longitude) == (None, None)
        # Its place is no caption of the file's: a sync would still renew those.
        assert not has_given_captions(session, trip["lisbon"])


def _search(db: Database, encoder: ClipEncoder, **params: str) -> SearchPage:
    with db.session() as session:
        return run_search(session, encoder, parse_request({k: [v] for k, v in params.items()}))


def test_the_place_filter_keeps_exactly_the_pictures_taken_there_in_every_mode(
    db: Database, encoder: ClipEncoder, indexed_trip: dict[str, int],
) -> None:
    expected = {
        "Portugal": {"lisbon", "cascais", "porto"}, "portugal": {"lisbon", "cascais", "porto"},
        "PT": {"lisbon", "cascais", "porto"}, "Lisbon": {"lisbon", "cascais"},  # the city or its region
        "  new south   WALES ": {"sydney"}, "Atlantis": set(),
    }
    for query in ({}, {"q": "a photo", "mode": "semantic"}, {"q": "a photo", "mode": "hybrid"}):
        for place, names in expected.items():
            page = _search(db, encoder, **query, place=place, per_page="20")
            assert {h.image_id for h in page.hits} == {indexed_trip[n] for n in names}, (query, place)
            assert page.total == len(names)
            # Where it was taken is no caption to show.
            assert all("Portugal" not in caption for h in page.hits for caption in h.captions)


def test_the_place_filter_through_the_api_the_command_line_and_python(
    client: FlaskClient, indexed_trip: dict[str, int], cli_env: dict[str, str], settings: Settings,
) -> None:
    portugal = {indexed_trip["lisbon"], indexed_trip["cascais"], indexed_trip["porto"]}
    answer = client.get("/api/search?place=Portugal&per_page=20").get_json()
    assert {r["image_id"] for r in answer["results"]} == portugal
    assert answer["filters"] == {"place": "Portugal"}
    page = client.get("/?place=Portugal").get_data(as_text=True)
    assert 'name="place" value="Portugal"' in page
    printed = run_in_process(cli_env, "search", "--place", "portugal", "--json", "-k", "20")
    assert printed.returncode == 0, printed.stderr
    assert {r["image_id"] for r in json.loads(printed.stdout)["results"]} == portugal
    ctx = Context(settings)
    try:
        assert {h.image_id for h in python_search(place="PT", top_k=20, context=ctx).hits} == portugal
    finally:
        ctx.close()


def test_beach_lisbon_ranks_the_beach_in_lisbon_first_in_hybrid_and_finds_only_it_in_text(
    db: Database, encoder: ClipEncoder, indexed_trip: dict[str, int],
) -> None:
    with db.session() as session:
        for name in ("lisbon", "porto", "sydney"):
            session.add(Caption(image_id=indexed_trip[name], text="a sunny beach", source="user"))
        session.commit()
    # The place completes a person's caption, whose words alone do not name Lisbon.
    lisbon = indexed_trip["lisbon"]
    assert [h.image_id for h in _search(db, encoder, q="beach Lisbon", mode="text").hits] == [lisbon]
    assert _search(db, encoder, q="beach Lisbon", mode="hybrid").hits[0].image_id == lisbon
    assert {h.image_id for h in _search(db, encoder, q="Portugal", mode="text").hits} == {
        indexed_trip["lisbon"], indexed_trip["cascais"], indexed_trip["porto"]}
    # Two captions a person or a file gave are not joined: each may describe another part.
    with db.session() as session:
        session.add(Caption(image_id=indexed_trip["sydney"], text="surfers", source="user"))
        session.commit()
    assert _search(db, encoder, q="beach surfers", mode="text").hits == []


def test_the_picture_page_and_the_api_show_the_place_and_coordinates_but_no_place_caption(
    client: FlaskClient, trip: dict[str, int],
) -> None:
    page = client.get(f"/image/{trip['lisbon']}").get_data(as_text=True)
    assert '<dd id="coordinates">38.72230° N, 9.13930° W</dd>' in page
    assert '<a href="/?place=Lisbon">Lisbon</a>, <a href="/?place=Portugal">Portugal</a>' in page
    assert 'class="caption-text">Lisbon, Portugal' not in page and "No captions yet." not in page
    ocean = client.get(f"/image/{trip['ocean']}").get_data(as_text=True)
    assert "none (no town within 50 km: at sea or in the wilds)" in ocean
    assert "30.00000° N, 40.00000° W" in ocean
    data = client.get(f"/api/images/{trip['lisbon']}").get_json()
    assert data["place"] == {"text": "Lisbon, Portugal", "city": "Lisbon", "region": "Lisbon",
                             "country": "Portugal", "country_code": "PT"}
    assert (data["latitude"], data["longitude"]) == pytest.approx(LISBON, abs=1e-4)
    assert all(c["source"] != "place" for c in data["caption_details"])
    assert "Lisbon, Portugal" not in data["captions"]


def test_an_upload_is_placed_as_it_is_stored(client: FlaskClient, sample_photos: list[Candidate],
                                              tmp_path: Path) -> None:
    photo = photo_taken_at(sample_photos[7].path, tmp_path / "harbour.jpg", *SYDNEY)
    answer = client.post("/api/images", headers=API,
                         data={"files": [(io.BytesIO(photo.read_bytes()), "harbour.jpg")]})
    assert answer.status_code == 202
    image_id = answer.get_json()["uploads"][0]["image_id"]
    assert client.get(f"/api/images/{image_id}").get_json()["place"]["text"] == \
        "Sydney, New South Wales, Australia"


def test_a_place_caption_cannot_be_edited_or_deleted_as_a_caption(
    client: FlaskClient, db: Database, trip: dict[str, int],
) -> None:
    with db.session() as session:
        caption_id = session.scalar(select(Caption.id).where(Caption.image_id == trip["lisbon"],
                                                             Caption.source == "place"))
    assert client.put(f"/api/captions/{caption_id}", headers=API, json={"text": "Faro"}).status_code == 404
    assert client.delete(f"/api/captions/{caption_id}", headers=API).status_code == 404
    assert _place(db, trip["lisbon"])[-1] == ["Lisbon, Portugal"]


def test_status_counts_placed_waiting_and_unplaced_pictures_and_says_why(
    client: FlaskClient, db: Database, trip: dict[str, int], cli_env: dict[str, str],
) -> None:
    with db.session() as session:  # as if registered before ClipSeek named places
        session.execute(update(Image).where(Image.id == trip["porto"]).values(placed_at=None))
        session.commit()
    places = client.get("/api/status").get_json()["places"]
    assert places == {"with_gps": 5, "placed": 3, "waiting": 1, "no_place": 1,
                      "no_place_reason": "no town within 50 km: at sea or in the wilds",
                      "recent_no_place": [{"image_id": trip["ocean"], "name": "ocean.jpg",
                                           "latitude": pytest.approx(30.0),
                                           "longitude": pytest.approx(-40.0)}]}
    page = client.get("/status").get_data(as_text=True)
    assert '<dd id="places-waiting">1: <code>clipseek reindex --places</code>' in page
    assert "30.00000, -40.00000" in page
    shown = run_in_process(cli_env, "status")
    assert shown.returncode == 0, shown.stderr
    assert ("Places: 3 of 5 pictures with GPS placed, 1 waiting (`clipseek reindex --places` looks them "
            "up), 1 with no place (no town within 50 km: at sea or in the wilds).") in shown.stdout


def test_reindex_places_fills_pictures_registered_before_places_and_drops_no_fix_zeros(
    db: Database, trip: dict[str, int], cli_env: dict[str, str],
) -> None:
    with db.session() as session:  # as rows written before places, and before (0, 0) was refused
        session.execute(update(Image).values(placed_at=None, place_city=None, place_region=None,
                                             place_country=None, place_country_code=None))
        session.execute(delete(Caption).where(Caption.source == "place"))
        session.execute(update(Image).where(Image.id == trip["nofix"]).values(latitude=0.0, longitude=0.0))
        session.commit()
    done = run_in_process(cli_env, "reindex", "--places")
    assert done.returncode == 0, done.stderr
    assert ("Looked up the place of 6 image(s): 4 placed, 1 with no town within 50 km: at sea or in "
            "the wilds, 1 whose coordinates name no point (dropped).") in done.stdout
    assert _place(db, trip["cascais"]) == ("Cascais", "Lisbon", "Portugal", "PT", True,
                                           ["Cascais, Lisbon, Portugal"])
    with db.session() as session:
        assert session.execute(select(Image.latitude, Image.placed_at)
                               .where(Image.id == trip["nofix"])).one() == (None, None)
    again = run_in_process(cli_env, "reindex", "--places")
    assert "Looked up the place of 0 image(s)" in again.stdout


def test_a_changed_file_takes_its_new_place_and_a_file_without_gps_loses_it(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    photo = photo_taken_at(sample_photos[0].path, folder / "walk.jpg", *LISBON)

    def sync() -> None:
        with db.session() as session, decode_pool(settings) as pool:
            sync_folder(session, folder, model=settings.model, max_pixels=settings.max_image_pixels,
                        pool=pool)
            session.commit()

    sync()
    with db.session() as session:
        image_id = session.scalars(select(Image.id)).one()
    photo_taken_at(sample_photos[1].path, photo, *SYDNEY)  # edited: another picture, another place
    os.utime(photo, (1, 1))
    sync()
    assert _place(db, image_id)[2:4] == ("Australia", "AU")
    photo_with_exif(sample_photos[2].path, photo)  # its GPS stripped
    sync()
    assert _place(db, image_id) == (None, None, None, None, False, [])


def test_a_gazetteer_that_cannot_be_read_leaves_pictures_registered_and_waiting(
    db: Database, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its data files gone, as after a broken install: the real reading fails.
    monkeypatch.setattr(places, "files", lambda package: tmp_path / "no-such-package")
    places.gazetteer.cache_clear()
    try:
        photo = photo_taken_at(sample_photos[0].path, tmp_path / "lisbon.jpg", *LISBON)
        with decode_pool(settings) as pool:
            report = register_candidates(db, [Candidate(path=photo, source="folder")], settings=settings,
                                         pool=pool)
        assert len(report.new_ids) == 1
        with db.session() as session:
            image = session.scalars(select(Image)).one()
            assert image.status == "registered" and image.latitude is not None and image.placed_at is None
    finally:
        places.gazetteer.cache_clear()


def test_the_place_filter_finds_a_name_typed_without_its_accents(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    # The gazetteer names the city "Kraków" and the region "São Paulo"; people type "Krakow"
    # and "Sao Paulo", which found nothing.
    paths = _taken_at(tmp_path / "trip", sample_photos,
                      {"krakow": (50.0614, 19.9366), "sao_paulo": (-23.5505, -46.6333)})
    ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in paths], settings=settings)
    ids = _ids(db)
    assert _place(db, ids["krakow"])[0] == "Kraków" and _place(db, ids["sao_paulo"])[1] == "São Paulo"
    for typed, name in (("Krakow", "krakow"), ("KRAKÓW", "krakow"), ("kraków", "krakow"),
                        ("Sao Paulo", "sao_paulo"), ("são paulo", "sao_paulo")):
        page = _search(db, encoder, place=typed)
        assert [h.image_id for h in page.hits] == [ids[name]], typed
    assert _search(db, encoder, place="Krakau").hits == []
