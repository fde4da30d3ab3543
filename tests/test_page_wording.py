"""What the pages say: page numbers, page sizes, failures, file names, sources, scores, favicon."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select, update

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import decode_pool, ingest_inline, register_candidates
from clipseek.library.register import Candidate
from clipseek.store.tables import Caption, Embedding, Image
from tests.images import write_bad_files
from webapp.presenters import score_text


@pytest.fixture
def indexed(app: Flask, indexed_samples: list[int]) -> list[int]:
    """The 22 sample photos, indexed, in the app's database."""
    return indexed_samples


@pytest.fixture
def failed_upload(app: Flask, encoder: ClipEncoder, sample_photos: list[Candidate],
                  tmp_path: Path) -> int:
    """An uploaded file that is not a picture, kept in a temporary file with an internal name."""
    bad = write_bad_files(tmp_path / "bad", sample_photos[0].path)["text"]
    stored = bad.rename(tmp_path / "bad" / "upload-3f9c2a.tmp")
    ctx = app.extensions["clipseek"]
    ingest_inline(ctx.db, encoder, [Candidate(path=stored, source="upload",
                                              original_name="holiday notes.jpg")],
                  settings=ctx.settings)
    with ctx.db.session() as session:
        return int(session.scalars(select(Image.id).where(Image.status == "failed")).one())


def _h1_count(html: str) -> int:
    return len(re.findall(r"<h1[\s>]", html))


def test_a_page_past_the_last_says_how_many_pages_there_are(client: FlaskClient,
                                                            indexed: list[int]) -> None:
    html = client.get("/?q=a+cat&per_page=12&page=99999").get_data(as_text=True)
    assert "page 99999 of 2" not in html
    assert "There is no page 99,999: the results fill 2 pages." in html
    assert 'href="/?page=2&amp;q=a+cat&amp;per_page=12"' in html


def test_a_page_size_not_in_the_list_is_shown_as_chosen(client: FlaskClient,
                                                        indexed: list[int]) -> None:
    html = client.get("/?q=a+cat&per_page=7").get_data(as_text=True)
    assert re.search(r'<option value="7" selected>7 per page</option>', html)
    assert not re.search(r'<option value="12" selected>', html)
    assert html.count('class="hit"') == 7


def test_a_failed_image_says_it_failed_and_why(client: FlaskClient, failed_upload: int) -> None:
    html = client.get(f"/image/{failed_upload}").get_data(as_text=True)
    assert "not indexed yet" not in html
    assert "could not be indexed, so it has no neighbours:" in html
    similar = client.get(f"/image/{failed_upload}/similar").get_data(as_text=True)
    assert "not indexed yet" not in similar and "could not be indexed" in similar


def test_status_lists_failures_by_file_name_with_their_reasons(client: FlaskClient,
                                                                failed_upload: int) -> None:
    html = client.get("/status").get_data(as_text=True)
    row = html.split('<table class="failures">', 1)[1].split("</table>", 1)[0]
    assert f'<a href="/image/{failed_upload}">holiday notes.jpg</a>' in row
    assert "upload-3f9c2a.tmp" not in row
    assert 'class="reason"' in row


def test_source_and_collection_are_two_plain_facts(client: FlaskClient, app: Flask,
                                                   indexed: list[int]) -> None:
    with app.extensions["clipseek"].db.session() as session:
        session.execute(update(Image).where(Image.id == indexed[0])
                        .values(source="upload", collection="uploads"))
        session.commit()
    html = client.get(f"/image/{indexed[0]}").get_data(as_text=True)
    assert "upload (uploads)" not in html
    assert "<dt>Source</dt><dd>uploaded in the browser</dd>" in html
    assert '<dt>Collection</dt><dd><a href="/collections/browse?name=uploads">uploads</a></dd>' in html


@pytest.mark.parametrize(("score", "shown"), [
    (-0.0001, "0.00"), (0.0, "0.00"), (0.31234, "0.31"), (-0.1234, "−0.12"), (0.999999, "1.00"),
])
def test_scores_are_shown_with_two_decimals_and_never_as_minus_zero(score: float,
                                                                    shown: str) -> None:
    assert score_text(score) == shown


def test_scores_come_with_one_legend_per_page(client: FlaskClient, indexed: list[int]) -> None:
    for url in ("/?q=a+cat", f"/image/{indexed[0]}", f"/image/{indexed[0]}/similar"):
        html = client.get(url).get_data(as_text=True)
        assert html.count('class="score-legend"') == 1, url
        assert "only the order matters" in html
        assert "-0.000" not in html
    browse = client.get("/").get_data(as_text=True)  # browsing has no scores, so no legend
    assert 'class="score-legend"' not in browse


def test_every_page_has_one_h1_and_a_favicon(client: FlaskClient, indexed: list[int]) -> None:
    for url in ("/", "/?q=a+cat", f"/image/{indexed[0]}", f"/image/{indexed[0]}/similar",
                "/status", "/collections", "/image/999999"):
        html = client.get(url).get_data(as_text=True)
        assert _h1_count(html) == 1, url
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
        assert "<footer" in html and "<main" in html and "<header" in html
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_pictures_without_captions_are_described_by_their_file_name(
    client: FlaskClient, app: Flask, indexed: list[int]
) -> None:
    with app.extensions["clipseek"].db.session() as session:
        session.execute(delete(Caption))
        names = {i: name for i, name in session.execute(select(Image.id, Image.original_name))}
        session.commit()
    for url in ("/", "/?q=a+cat", f"/image/{indexed[0]}", f"/image/{indexed[0]}/similar"):
        html = client.get(url).get_data(as_text=True)
        assert not re.search(r'alt="image [0-9]+"', html), url
    html = client.get(f"/image/{indexed[0]}/similar").get_data(as_text=True)
    alts = re.findall(r'<img src="/thumb/([0-9]+)\.jpg" alt="([^"]*)"', html)
    assert alts and all(alt == names[int(i)] for i, alt in alts)


def test_an_image_page_says_others_are_still_being_indexed(
    app: Flask, client: FlaskClient, encoder: ClipEncoder, sample_photos: list[Candidate]
) -> None:
    ctx = app.extensions["clipseek"]
    ingest_inline(ctx.db, encoder, sample_photos[:1], settings=ctx.settings)
    with decode_pool(ctx.settings) as pool:
        register_candidates(ctx.db, sample_photos[1:], settings=ctx.settings, pool=pool)
    with ctx.db.session() as session:
        first = session.scalars(select(Image.id).where(Image.status == "indexed")).one()
    html = client.get(f"/image/{first}").get_data(as_text=True)
    assert "No other images are indexed yet" not in html
    assert "No other pictures are searchable yet: 21 are still being indexed." in html


def test_one_picture_is_counted_in_the_singular(client: FlaskClient, app: Flask, indexed: list[int]) -> None:
    with app.extensions["clipseek"].db.session() as session:
        session.execute(update(Image).where(Image.id == indexed[0]).values(collection="solo"))
        session.commit()
    for url in ("/?collection=solo", "/?q=a+cat&collection=solo&all=1"):
        html = client.get(url).get_data(as_text=True)
        summary = html.split('<p class="summary">', 1)[1].split("</p>", 1)[0]
        assert re.search(r"1 (image|image searched|match) in", summary), (url, summary)


def test_a_collection_of_one_picture_is_counted_in_the_singular(
        client: FlaskClient, app: Flask, indexed: list[int]) -> None:
    with app.extensions["clipseek"].db.session() as session:
        session.execute(update(Image).where(Image.id == indexed[0]).values(collection="solo"))
        session.commit()
    listing = client.get("/collections").get_data(as_text=True)
    solo = listing.split("<h2>solo</h2>", 1)[1].split("</li>", 1)[0]
    assert re.search(r'<strong class="count">1</strong> image\s', solo)
    assert 'data-confirm="Move the 1 image of solo to the trash?' in solo
    assert re.search(r'<strong class="count">21</strong> images\s', listing)
    assert "<p>1 image, newest first." in client.get("/collections/browse?name=solo").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', listing)
    assert token
    done = client.post("/collections/delete", data={"csrf_token": token.group(1), "name": "solo"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Moved the 1 image of solo to the trash" in done
    assert "(s)" not in done and "(s)" not in listing


def test_one_searchable_picture_and_one_similar_one_are_counted_in_the_singular(
        client: FlaskClient, app: Flask, indexed: list[int]) -> None:
    db = app.extensions["clipseek"].db
    with db.session() as session:
        session.execute(delete(Image).where(Image.id.in_(indexed[2:])))
        session.commit()
    similar = client.get(f"/image/{indexed[0]}/similar").get_data(as_text=True)
    assert "1 image, most similar first." in similar
    with db.session() as session:  # the second picture waits to be indexed again
        session.execute(delete(Embedding).where(Embedding.image_id == indexed[1]))
        session.execute(update(Image).where(Image.id == indexed[1]).values(status="queued"))
        session.commit()
    browse = client.get("/").get_data(as_text=True)
    assert "1 of 2 pictures is searchable; 1 is still being indexed" in browse
