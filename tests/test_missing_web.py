"""A missing image (its file gone since a sync) says so on its page, in the API and for its files."""

from __future__ import annotations

import shutil
from datetime import UTC
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.encoding import index_images
from clipseek.library.ingest import decode_pool
from clipseek.library.register import Candidate
from clipseek.library.sync import sync_folder
from clipseek.store.tables import Image, ImageStatus


def _sync(app: Flask, folder: Path, encoder: ClipEncoder) -> None:
    ctx = app.extensions["clipseek"]
    settings = ctx.settings
    with ctx.db.session() as session, decode_pool(settings) as pool:
        found = sync_folder(session, folder, model=settings.model,
                            max_pixels=settings.max_image_pixels, pool=pool)
        session.commit()
        if found.to_queue:
            index_images(session, encoder, found.to_queue, pool=pool, batch_size=8,
                         max_pixels=settings.max_image_pixels)


def _missing_image(app: Flask, client: FlaskClient, encoder: ClipEncoder,
                   sample_photos: list[Candidate], tmp_path: Path) -> Image:
    folder = tmp_path / "photos"
    folder.mkdir()
    for c in sample_photos[:2]:
        shutil.copy(c.path, folder / c.path.name)
    _sync(app, folder, encoder)
    gone = folder / sample_photos[0].path.name
    with app.extensions["clipseek"].db.session() as session:
        image = session.scalars(select(Image).where(Image.path == str(gone))).one()
    cached = client.get(f"/thumb/{image.id}.jpg")  # made while the file was there
    assert cached.status_code == 200
    cached.close()
    gone.unlink()
    _sync(app, folder, encoder)
    with app.extensions["clipseek"].db.session() as session:
        missing: Image = session.get(Image, image.id)
    assert missing.status == ImageStatus.MISSING and missing.missing_since is not None
    return missing


def test_a_missing_images_page_says_since_when_and_shows_no_broken_picture(
    app: Flask, client: FlaskClient, encoder: ClipEncoder, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    image = _missing_image(app, client, encoder, sample_photos, tmp_path)
    assert image.missing_since is not None
    since = image.missing_since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    answer = client.get(f"/image/{image.id}")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert f"The file of this image has been missing since {since}" in page
    assert 'class="notice missing"' in page
    assert f'src="/file/{image.id}"' not in page and "<img class=\"full\"" not in page


def test_a_missing_images_file_and_thumbnail_are_gone_with_a_sentence(
    app: Flask, client: FlaskClient, encoder: ClipEncoder, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    image = _missing_image(app, client, encoder, sample_photos, tmp_path)
    assert image.missing_since is not None
    since = image.missing_since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for url in (f"/file/{image.id}", f"/thumb/{image.id}.jpg"):
        answer = client.get(url)
        assert answer.status_code == 410, url
        assert f"The file of image {image.id} has been missing since {since}" in \
            answer.get_data(as_text=True)


def test_the_api_gives_a_missing_images_status_and_since_when(
    app: Flask, client: FlaskClient, encoder: ClipEncoder, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    image = _missing_image(app, client, encoder, sample_photos, tmp_path)
    assert image.missing_since is not None
    data = client.get(f"/api/images/{image.id}").get_json()
    assert data["status"] == "missing"
    assert data["missing_since"] == image.missing_since.isoformat()
    with app.extensions["clipseek"].db.session() as session:
        other = session.scalar(select(Image.id).where(Image.id != image.id))
    present = client.get(f"/api/images/{other}").get_json()
    assert present["status"] == "indexed" and present["missing_since"] is None
