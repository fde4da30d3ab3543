"""Serving pictures: cached thumbnails, originals and display copies, only by image id."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_file
from werkzeug.wrappers import Response

from clipseek.library.derivatives import DISPLAY_SIZE, ensure_display_copy, ensure_thumbnail
from clipseek.photo.imaging import ImageDecodeError
from clipseek.store.tables import Image
from webapp.auth import accounts_on, signed_in
from webapp.db_session import clipseek, get_session, reads_from_replica
from webapp.policies import may_delete
from webapp.presenters import missing_notice

bp = Blueprint("files", __name__)

# Formats every browser shows; others are served as a PNG display copy.
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                   "WEBP": "image/webp", "BMP": "image/bmp"}
YEAR = 365 * 24 * 3600


def _image(image_id: int) -> Image:
    # Files are found through the database only: no path from the request is ever opened.
    image = get_session().get(Image, image_id)
    if image is None or (image.status == "failed" and image.format is None):
        abort(404, description=f"There is no picture for image {image_id}.")
    if image.trashed_at is not None and not _sees_trash_of(image):
        abort(404, description=f"Image {image_id} is in the trash; the Trash page restores it.")
    notice = missing_notice(image, f"image {image_id}")
    if notice:
        abort(410, description=notice)  # gone until a sync finds the file again
    return image


def _sees_trash_of(image: Image) -> bool:
    # Whoever the Trash page shows the picture to: everyone in the local mode, an admin, and
    # the contributor who uploaded it. Others get what the picture's page gives them.
    if not accounts_on():
        return True
    account = signed_in()
    return account is not None and may_delete(account.role, account.user_id, picture_by=image.added_by)


def _derived(path: Path, mimetype: str, etag: str) -> Response:
    # A derived file never changes for a given etag, so browsers need not ask again.
    response = send_file(path, mimetype=mimetype, conditional=True, etag=etag, max_age=YEAR)
    response.cache_control.immutable = True
    return response


@bp.get("/thumb/<int:image_id>.jpg")
@reads_from_replica()
def thumbnail(image_id: int) -> Response:
    """A 320-pixel JPEG thumbnail, cached on disk and by browsers (content never changes)."""
    image = _image(image_id)
    settings = clipseek().settings
    try:
        path = ensure_thumbnail(settings.thumbnails, sha256=image.sha256, source=Path(image.path),
                                max_pixels=settings.max_image_pixels)
    except ImageDecodeError as exc:
        abort(404, description=f"Image {image_id} cannot be shown: {exc}.")
    return _derived(path, "image/jpeg", image.sha256)


@bp.get("/file/<int:image_id>")
@reads_from_replica()
def original(image_id: int) -> Response:
    """The picture: the stored file, or a cached PNG display copy for formats browsers lack."""
    image = _image(image_id)
    path = Path(image.path)
    if not path.exists():
        abort(404, description=f"The file of image {image_id} is no longer at {path}.")
    if image.format in BROWSER_FORMATS:
        return send_file(path, mimetype=BROWSER_FORMATS[image.format], conditional=True,
                         etag=image.sha256, max_age=YEAR)
    settings = clipseek().settings
    try:
        copy = ensure_display_copy(settings.thumbnails, sha256=image.sha256, source=path,
                                   max_pixels=settings.max_image_pixels)
    except ImageDecodeError as exc:
        abort(404, description=f"Image {image_id} cannot be shown: {exc}.")
    # The size is part of the tag, so a change of DISPLAY_SIZE reaches browsers' caches.
    return _derived(copy, "image/png", f"{image.sha256}-{DISPLAY_SIZE}")
