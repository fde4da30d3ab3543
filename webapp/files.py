"""Serving pictures: cached thumbnails and originals, only by image id."""

from __future__ import annotations

import io
from pathlib import Path

from flask import Blueprint, abort, send_file
from werkzeug.wrappers import Response

from clipseek.imaging import ImageDecodeError, load_rgb
from clipseek.models import Image
from clipseek.thumbnails import ensure_thumbnail
from webapp.db_session import clipseek, get_session

bp = Blueprint("files", __name__)

# Formats every browser shows; others are converted to PNG when served.
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                   "WEBP": "image/webp", "BMP": "image/bmp"}
YEAR = 365 * 24 * 3600


def _image(image_id: int) -> Image:
    # Files are found through the database only: no path from the request is ever opened.
    image = get_session().get(Image, image_id)
    if image is None or (image.status == "failed" and image.format is None):
        abort(404, description=f"There is no picture for image {image_id}.")
    return image


@bp.get("/thumb/<int:image_id>.jpg")
def thumbnail(image_id: int) -> Response:
    """A 320-pixel JPEG thumbnail, cached on disk and by browsers (content never changes)."""
    image = _image(image_id)
    settings = clipseek().settings
    try:
        path = ensure_thumbnail(settings.thumbnails, sha256=image.sha256, source=Path(image.path),
                                max_pixels=settings.max_image_pixels)
    except ImageDecodeError as exc:
        abort(404, description=f"Image {image_id} cannot be shown: {exc}.")
    response = send_file(path, mimetype="image/jpeg", conditional=True, etag=image.sha256,
                         max_age=YEAR)
    response.cache_control.immutable = True
    return response


@bp.get("/file/<int:image_id>")
def original(image_id: int) -> Response:
    """The full picture: the stored file, or a PNG copy when browsers cannot show its format."""
    image = _image(image_id)
    path = Path(image.path)
    if not path.exists():
        abort(404, description=f"The file of image {image_id} is no longer at {path}.")
    if image.format in BROWSER_FORMATS:
        return send_file(path, mimetype=BROWSER_FORMATS[image.format], conditional=True,
                         etag=image.sha256, max_age=YEAR)
    try:
        picture = load_rgb(path, max_pixels=clipseek().settings.max_image_pixels, min_side=10**6)
    except ImageDecodeError as exc:
        abort(404, description=f"Image {image_id} cannot be shown: {exc}.")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    buffer.seek(0)
    return send_file(buffer, mimetype="image/png", max_age=YEAR)
