"""The HTML pages: search, image details with similar images, search by example, status."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from clipseek.broker import queue_depth
from clipseek.deletion import Selection, delete_images
from clipseek.errors import BadQuery
from clipseek.imaging import ImageDecodeError, read_rgb
from clipseek.search import (
    MAX_PER_PAGE,
    SearchPage,
    count_searchable,
    search_by_image,
    search_images,
    similar_images,
)
from clipseek.status import collection_status, count_pending
from webapp.db_session import clipseek, get_session, image_or_404
from webapp.params import DEFAULT_PAGE_SIZE, PAGE_SIZES, int_arg, paging
from webapp.presenters import server_timing

bp = Blueprint("pages", __name__)


@bp.get("/")
def search() -> tuple[str, int, dict[str, str]]:
    """The search form and, with a query, one page of results."""
    query = request.args.get("q", "")
    page, per_page = paging()
    results: SearchPage | None = None
    error = None
    if query.strip() or "q" in request.args:
        try:
            results = search_images(get_session(), clipseek().encoder, query, page=page,
                                    per_page=per_page, ef_search=clipseek().settings.ef_search)
        except BadQuery as exc:
            error = str(exc)
    searchable = results.total if results else count_searchable(get_session(), clipseek().settings.model)
    return render_template("search.html", query=query, results=results, error=error,
                           per_page=per_page, page_sizes=PAGE_SIZES, searchable=searchable,
                           pending=count_pending(get_session()),
                           endpoint="pages.search"), 400 if error else 200, server_timing(results)


@bp.post("/search/by-image")
def by_image() -> tuple[str, int]:
    """Rank the collection against an uploaded example picture (not stored)."""
    per_page = int_arg("per_page", DEFAULT_PAGE_SIZE, low=1, high=MAX_PER_PAGE, source=request.form)
    upload = request.files.get("image")
    if upload is None or not upload.filename:
        raise BadQuery("Choose a picture to search with.")
    try:
        example = read_rgb(upload.stream, max_pixels=clipseek().settings.max_image_pixels)
    except ImageDecodeError as exc:
        raise BadQuery(f"{upload.filename} cannot be used: {exc}.") from None
    results = search_by_image(get_session(), clipseek().encoder, example, per_page=per_page,
                              ef_search=clipseek().settings.ef_search)
    return render_template("search.html", query="", results=results, error=None, per_page=per_page,
                           page_sizes=PAGE_SIZES, searchable=results.total, example=upload.filename,
                           endpoint=None), 200


@bp.get("/image/<int:image_id>")
def image(image_id: int) -> str:
    """One image: the picture, its captions and facts, and its nearest neighbours."""
    picture = image_or_404(image_id)
    similar = similar_images(get_session(), image_id, model=clipseek().settings.model, per_page=12,
                             ef_search=clipseek().settings.ef_search)
    return render_template("image.html", image=picture, similar=similar)


@bp.post("/image/<int:image_id>/delete")
def delete(image_id: int) -> Response:
    """Delete an image (the page's button asks first), then go back to the search page."""
    picture = image_or_404(image_id)
    name, settings = picture.original_name, clipseek().settings
    delete_images(get_session(), Selection(image_ids=(image_id,)), store=settings.image_store,
                  thumbnails=settings.thumbnails)
    flash(f"Deleted {name} (image {image_id}).", "info")
    return redirect(url_for("pages.search"))


@bp.get("/image/<int:image_id>/similar")
def similar(image_id: int) -> str:
    """All images ranked by similarity to one image, page by page."""
    picture = image_or_404(image_id)
    page, per_page = paging()
    results = similar_images(get_session(), image_id, model=clipseek().settings.model, page=page,
                             per_page=per_page, ef_search=clipseek().settings.ef_search)
    return render_template("similar.html", image=picture, results=results, per_page=per_page,
                           page_sizes=PAGE_SIZES)


@bp.get("/status")
def status() -> str:
    """Counts per status and model, the queue, workers, and recent failures."""
    # The broker first: no database connection is held while it is asked.
    depth = queue_depth(clipseek().settings)
    report = collection_status(get_session(), model=clipseek().settings.model, recent_failures=20,
                               queue_depth=depth)
    return render_template("status.html", report=report)
