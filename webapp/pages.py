"""The HTML pages: search, image details with similar images, search by example, status."""

from __future__ import annotations

import io
from urllib.parse import urlencode

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from clipseek.accounts import record_deletions
from clipseek.errors import BadQuery
from clipseek.indexing.broker import queue_depth
from clipseek.library.albums import album_ref_names
from clipseek.library.captions import listed_captions
from clipseek.library.deletion import Selection, delete_images
from clipseek.photo.imaging import ImageDecodeError, read_rgb
from clipseek.search.examples import store_example
from clipseek.search.query import FORMATS, SOURCES, Mode, Orientation, SearchRequest, Sort
from clipseek.search.run import MAX_PER_PAGE, SearchPage, count_searchable, run_search, similar_images
from clipseek.upkeep.status import (
    collection_status,
    count_pending,
    hashes_summary,
    people_summary,
    reading_summary,
    switch_summary,
)
from webapp.auth import actor
from webapp.db_session import (
    active_model_name,
    clipseek,
    get_session,
    image_or_404,
    primary_session,
    reads_from_replica,
)
from webapp.params import DEFAULT_PAGE_SIZE, PAGE_SIZES, int_arg, paging, search_request, tidy_search_args
from webapp.presenters import search_chips, server_timing

bp = Blueprint("pages", __name__)


@bp.get("/")
@reads_from_replica(unless_arg="example")
def search() -> tuple[str, int, dict[str, str]] | Response:
    """The search form with its filters and a page of results (without a query: newest first)."""
    tidy = tidy_search_args(request.args)
    if tidy is not None:
        # The form sends every field, filled or not; the address shows only what is set.
        query = urlencode(list(tidy.items(multi=True)))
        return redirect(url_for("pages.search") + (f"?{query}" if query else ""))
    results: SearchPage | None = None
    request_: SearchRequest | None = None
    error = None
    try:
        request_ = search_request(request.args)
        results = run_search(get_session(), clipseek().encoder_for(active_model_name()), request_,
                             ef_search=clipseek().settings.ef_search, texts_session=primary_session())
    except BadQuery as exc:
        error = str(exc)
    searchable = (results.searchable if results is not None and results.searchable is not None
                  else count_searchable(get_session(), active_model_name()))
    pending = count_pending(get_session())
    albums = album_ref_names(get_session(), request_.filters.albums) if request_ else []
    if results is not None:
        # An example's last use; after the counts, so that they run in the same transaction
        # rather than check the connection out again.
        get_session().commit()
        primary_session().commit()  # the texts kept for SQL
    return render_template(
        "search.html", query=request.args.get("q", ""), results=results, error=error,
        request=request_ or SearchRequest(per_page=DEFAULT_PAGE_SIZE), args=request.args,
        per_page=request_.per_page if request_ else DEFAULT_PAGE_SIZE, page_sizes=PAGE_SIZES,
        searchable=searchable, pending=pending, modes=list(Mode),
        sorts=list(Sort), orientations=list(Orientation), sources=SOURCES, formats=FORMATS,
        chips=search_chips(request_.params(), albums=albums) if request_ else [],
        endpoint="pages.search"), 400 if error else 200, server_timing(results)


@bp.post("/search/by-image")
def by_image() -> Response:
    """Store an example picture's embedding and show its search at a URL that pages and shares."""
    per_page = int_arg("per_page", DEFAULT_PAGE_SIZE, low=1, high=MAX_PER_PAGE, source=request.form)
    upload = request.files.get("image")
    if upload is None or not upload.filename:
        raise BadQuery("Choose a picture to search with.")
    data = upload.stream.read()
    try:
        example = read_rgb(io.BytesIO(data), max_pixels=clipseek().settings.max_image_pixels)
    except ImageDecodeError as exc:
        raise BadQuery(f"{upload.filename} cannot be used: {exc}.") from None
    example_id = store_example(get_session(), clipseek().encoder_for(active_model_name()), example, data)
    get_session().commit()
    return redirect(url_for("pages.search", example=example_id, per_page=per_page), code=303)


@bp.get("/image/<int:image_id>")
@reads_from_replica()
def image(image_id: int) -> str:
    """One image: the picture, its captions and facts, and its nearest neighbours."""
    return image_page(image_id)


def image_page(image_id: int, *, caption_error: str | None = None, typed_caption: str = "",
               edited_caption: int | None = None) -> str:
    """The image page, with a refused caption's sentence and its text kept in the form it came
    from: the Edit form of `edited_caption`, else the Add form."""
    picture = image_or_404(image_id)
    similar = similar_images(get_session(), image_id, model=active_model_name(), per_page=12,
                             ef_search=clipseek().settings.ef_search)
    return render_template("image.html", image=picture, captions=listed_captions(picture.captions),
                           similar=similar, pending=count_pending(get_session()),
                           caption_error=caption_error, typed_caption=typed_caption,
                           edited_caption=edited_caption)


@bp.post("/image/<int:image_id>/delete")
def delete(image_id: int) -> Response:
    """Move an image to the trash (the page's button asks first), then go back to the search page."""
    picture = image_or_404(image_id)
    name, settings, who = picture.original_name, clipseek().settings, actor()
    deletion = delete_images(get_session(), Selection(image_ids=(image_id,)),
                             store=settings.image_store, thumbnails=settings.thumbnails,
                             by=who.user_id if who else None)
    record_deletions(get_session(), who, dict.fromkeys(deletion.image_ids, name))
    get_session().commit()
    flash(f"Moved {name} (image {image_id}) to the trash; the Trash page restores it for "
          f"{settings.trash_days} days.", "info")
    return redirect(url_for("pages.search"))


@bp.get("/image/<int:image_id>/similar")
@reads_from_replica()
def similar(image_id: int) -> str:
    """All images ranked by similarity to one image, page by page."""
    picture = image_or_404(image_id)
    page, per_page = paging()
    results = similar_images(get_session(), image_id, model=active_model_name(), page=page,
                             per_page=per_page, ef_search=clipseek().settings.ef_search)
    return render_template("similar.html", image=picture, results=results, per_page=per_page,
                           page_sizes=PAGE_SIZES)


@bp.get("/status")
def status() -> str:
    """The active model, a switch's progress, counts per status and model, workers, recent failures."""
    # The broker first: no database connection is held while it is asked.
    depth = queue_depth(clipseek().settings)
    report = collection_status(get_session(), model=active_model_name(), recent_failures=20,
                               queue_depth=depth, replicas=clipseek().db.replica_states(),
                               settings=clipseek().settings)
    return render_template("status.html", report=report,
                           precision_text=clipseek().encoder_for(report.model).precision_sentence(),
                           people_text=people_summary(report.people) if report.people else None,
                           switch_text=switch_summary(report.switch) if report.switch else None,
                           reading_text=reading_summary(report.reading, enabled=clipseek().settings.ocr)
                           if report.reading else None, hashes_text=hashes_summary(report.hashes))
