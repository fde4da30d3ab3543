"""Uploading pictures: the form, storing the files, and a page that follows their indexing."""

from __future__ import annotations

import json

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from clipseek.accounts import record_uploads
from clipseek.errors import BadQuery
from clipseek.library.collections import UPLOADS, collection_name
from clipseek.library.uploads import (
    MAX_UPLOAD_BYTES,
    UploadOutcome,
    accept_uploads,
    recent_rejections,
    registered_ids,
    too_large,
)
from clipseek.store.tables import Image
from webapp.auth import actor
from webapp.db_session import active_model_name, clipseek, get_session, reads_from_replica
from webapp.params import parse_ids
from webapp.upload_limits import MAX_FILES, MAX_REQUEST_BYTES

# Room left in a request for the form's other fields and the multipart headers.
PART_OVERHEAD_BYTES = 1024 * 1024


def _too_large_files() -> list[UploadOutcome]:
    """Files the browser left out for their size, each sent as a field {"name": ..., "size": ...}."""
    outcomes = []
    for raw in request.form.getlist("too_large"):
        try:
            entry = json.loads(raw)
            name, size = entry["name"], entry["size"]
        except (ValueError, TypeError, KeyError):
            name = size = None
        if not isinstance(name, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadQuery('Each too_large field must be JSON like {"name": "a.jpg", "size": 123}.')
        outcomes.append(too_large(name, size))
    return outcomes

bp = Blueprint("uploads", __name__)


def save_uploads(files: list[FileStorage]) -> list[UploadOutcome]:
    """Store, register and queue uploaded files in the form's collection (for the page and the API)."""
    raw = request.form.get("collection", "")
    collection = collection_name(raw) if raw.strip() else UPLOADS
    chosen = [f for f in files if f.filename]
    refused = _too_large_files()
    if not chosen and not refused:
        raise BadQuery("Choose one or more pictures to upload.")
    if len(chosen) > MAX_FILES:
        raise BadQuery(f"Upload at most {MAX_FILES} files at once.")
    ctx = clipseek()
    settings = ctx.settings
    session = get_session()
    outcomes = accept_uploads(session, [(f.filename or "upload", f.stream) for f in chosen],
                              store=settings.image_store, max_pixels=settings.max_image_pixels,
                              model=active_model_name(), batch_size=settings.batch_size,
                              enqueue=ctx.enqueue, collection=collection, refused=refused,
                              duplicate_distance=settings.duplicate_distance)
    record_uploads(session, actor(), registered_ids(outcomes))
    session.commit()
    return outcomes


@bp.get("/upload")
def form() -> str:
    """The upload form (drag and drop, a file or folder picker) and the latest rejections."""
    return render_template("upload.html", rejections=recent_rejections(get_session()),
                           max_files=MAX_FILES, max_file_bytes=MAX_UPLOAD_BYTES,
                           max_part_bytes=MAX_REQUEST_BYTES - PART_OVERHEAD_BYTES)


@bp.post("/upload")
def upload() -> Response:
    """Store the files, then show their indexing status on the follow-up page."""
    outcomes = save_uploads(request.files.getlist("files"))
    for outcome in outcomes:
        if outcome.state == "rejected":
            flash(f"{outcome.filename} refused: {outcome.message}", "error")
        elif outcome.state == "duplicate":
            flash(f"{outcome.filename}: {outcome.message} (image {outcome.image_id})", "info")
    alike = sum(o.looks_like is not None for o in outcomes)
    if alike:
        flash(f"{alike} look like pictures you already have: the Duplicates page groups them.", "info")
    ids = ",".join(str(o.image_id) for o in outcomes if o.image_id is not None)
    return redirect(url_for("uploads.progress", ids=ids))


@bp.get("/uploads")
@reads_from_replica()
def progress() -> str:
    """The uploaded images and their statuses, updated by the page itself until done."""
    ids = parse_ids(request.args.get("ids", ""))
    images = get_session().scalars(select(Image).where(Image.id.in_(ids)).order_by(Image.id)).all()
    return render_template("progress.html", images=images, ids=",".join(map(str, ids)))
