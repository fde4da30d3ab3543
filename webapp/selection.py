"""Acting on many pictures at once: a selection (ids, or every match of a page) and what it may do.

A selection is the pictures ticked on one page, or "every match" of the page's search,
collection or album, which the server finds again itself: no list of 100,000 ids travels.
The pages post forms (each answered with one message on the page it came from), the API
posts JSON; both end in the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs, urlencode

from flask import Blueprint, Flask, abort, flash, jsonify, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek.accounts import record_deletions
from clipseek.errors import BadQuery
from clipseek.library.albums import album_image_ids
from clipseek.library.archive import plan_zip, stream_zip
from clipseek.library.collections import collection_image_ids, collection_name
from clipseek.library.deletion import Selection, delete_images
from clipseek.search.query import parse_request
from clipseek.search.run import all_matches
from clipseek.store.tables import Image, Role
from clipseek.upkeep.retrying import retry_failed_images
from webapp.auth import accounts_on, actor, safe_next, signed_in
from webapp.db_session import active_model_name, clipseek, get_session
from webapp.params import MAX_IMAGE_ID, parse_ids, whole_number
from webapp.policies import NOT_YOUR_PICTURES, may_trash
from webapp.presenters import counted

bp = Blueprint("selection", __name__, url_prefix="/selection")
api_bp = Blueprint("selection_api", __name__, url_prefix="/api/selection")

# The most pictures one action takes: the count a search or browse page counts exactly.
MAX_SELECTION = 10_000
ONE_WAY = ('Say which pictures in one way: "ids" (a list), "search" (the parameters of a search), '
           '"collection" (a name) or "album" (an id).')
# Search parameters that only choose a page: every match is every page.
_PAGING = ("page", "per_page")


def _bounded(ids: list[int], what: str) -> list[int]:
    if len(ids) > MAX_SELECTION:
        raise BadQuery(f"{what} holds more than {MAX_SELECTION:,} pictures; act on at most "
                       f"{MAX_SELECTION:,} at once.")
    return ids


def every_match(kind: str, value: str) -> list[int]:
    """The pictures of a whole search ("search"), collection or album, as ids, newest or best first."""
    session = get_session()
    if kind == "search":
        params = {k: v for k, v in parse_qs(value).items() if k not in _PAGING}
        request_ = parse_request(params)
        encoder = clipseek().encoder_for(active_model_name())
        return all_matches(session, encoder, request_, limit=MAX_SELECTION,
                           ef_search=clipseek().settings.ef_search)
    if kind == "collection":
        name = collection_name(value)
        return _bounded(collection_image_ids(session, name, limit=MAX_SELECTION + 1),
                        f"The collection {name!r}")
    if kind == "album":
        album_id = whole_number(value, "album", 1, MAX_IMAGE_ID)
        return _bounded(album_image_ids(session, album_id, limit=MAX_SELECTION + 1), "The album")
    raise BadQuery(ONE_WAY)


def form_selection() -> list[int]:
    """The pictures a page's selection form names: its ticked ids, or `every` match of the page."""
    every = request.form.get("every", "").strip()
    if every:
        kind, _, value = every.partition(":")
        return every_match(kind, value)
    ids = parse_ids(",".join(request.form.getlist("ids")))
    if not ids:
        raise BadQuery("Select some pictures first: tick them, or choose Select page.")
    return ids


def json_selection(data: object) -> list[int]:
    """The pictures a JSON body names in exactly one way (see ONE_WAY)."""
    if not isinstance(data, dict):
        raise BadQuery('Send a JSON object, such as {"ids": [1, 2, 3]}.')
    named = [key for key in ("ids", "search", "collection", "album") if data.get(key) not in (None, [], {})]
    if len(named) != 1:
        raise BadQuery(ONE_WAY)
    raw = data[named[0]]
    if named == ["ids"]:
        if not isinstance(raw, list) or not all(type(i) is int and 1 <= i <= MAX_IMAGE_ID for i in raw):
            raise BadQuery('"ids" must be a list of image ids (whole numbers from 1).')
        return _bounded(list(dict.fromkeys(raw)), "The selection")
    if named == ["search"]:
        if not isinstance(raw, dict) or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
                for v in raw.values()):
            raise BadQuery('"search" must be an object of search parameters, such as {"q": "a cat"}.')
        return every_match("search", urlencode(raw, doseq=True))
    if named == ["collection"]:
        if not isinstance(raw, str):
            raise BadQuery('"collection" must be a collection name.')
        return every_match("collection", raw)
    if type(raw) is not int:
        raise BadQuery('"album" must be an album id.')
    return every_match("album", str(raw))


def back() -> Response:
    """Back to the page the form was on (303: reloading it sends nothing again)."""
    return redirect(safe_next(request.form.get("next")) or url_for("pages.search"), code=303)


def trash(ids: Sequence[int]) -> tuple[str, list[int]]:
    """Move the pictures to the trash through the deletion service, where this account may.

    The message, and the ids of the pictures moved.
    """
    session = get_session()
    rows = session.execute(select(Image.id, Image.original_name, Image.added_by)
                           .where(Image.id.in_(ids))).all()
    account = signed_in()
    if account is not None and not may_trash(account.role, account.user_id,
                                             uploaded_by=[r.added_by for r in rows]):
        theirs = sum(r.added_by != account.user_id for r in rows)
        abort(403, description=NOT_YOUR_PICTURES.format(theirs=theirs, count=len(rows)))
    settings = clipseek().settings
    deletion = delete_images(session, Selection(image_ids=tuple(r.id for r in rows)),
                             store=settings.image_store, thumbnails=settings.thumbnails)
    names = {r.id: r.original_name for r in rows}
    record_deletions(session, actor(), {i: names.get(i, "") for i in deletion.image_ids})
    session.commit()
    if not deletion.image_ids:
        raise BadQuery("None of the selected pictures is in the library any more; reload the page.")
    return f"Moved {counted(len(deletion.image_ids), 'picture')} to the trash.", deletion.image_ids


def retry(ids: Sequence[int]) -> tuple[str, dict[str, list[int]]]:
    """Queue the failed ones among the pictures again where another try can mend them; the message."""
    done = retry_failed_images(get_session(), ids, model=active_model_name(),
                               batch_size=clipseek().settings.batch_size, enqueue=clipseek().enqueue)
    parts = [f"Queued {counted(len(done.queued), 'failed picture')} again"]
    if done.not_retryable:
        parts.append(f"{len(done.not_retryable)} failed for a reason another try cannot mend "
                     "(each picture's page says why)")
    if done.not_failed:
        parts.append(f"{len(done.not_failed)} had not failed")
    return "; ".join(parts) + ".", done.to_dict()


def zip_response(ids: Sequence[int]) -> Response:
    """The pictures' files as one zip, streamed as it is written."""
    plan = plan_zip(get_session(), ids)
    get_session().close()  # nothing more to read: no connection is held while the zip is sent
    response = Response(stream_zip(plan), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{plan.filename}"'
    return response


def _flashed(action: str) -> Response:
    """Run a form's action on its selection; its message (or the error) shows on the page it came from."""
    try:
        ids = form_selection()
        message = trash(ids)[0] if action == "trash" else retry(ids)[0]
    except BadQuery as exc:
        flash(str(exc), "error")
    else:
        flash(message, "info")
    return back()


@bp.post("/trash")
def trash_form() -> Response:
    """The selection bar's "Move to trash"."""
    return _flashed("trash")


@bp.post("/retry")
def retry_form() -> Response:
    """The selection bar's "Retry failed"."""
    return _flashed("retry")


@bp.post("/zip")
def zip_form() -> Response:
    """The selection bar's "Download zip"."""
    try:
        return zip_response(form_selection())
    except BadQuery as exc:
        flash(str(exc), "error")
        return back()


@api_bp.post("/trash")
def trash_api() -> Response:
    """POST /api/selection/trash {selection} : move the pictures to the trash."""
    message, moved = trash(json_selection(request.get_json(silent=True)))
    return jsonify({"message": message, "image_ids": moved})


@api_bp.post("/retry")
def retry_api() -> Response:
    """POST /api/selection/retry {selection} : queue the failed ones again where it helps."""
    message, done = retry(json_selection(request.get_json(silent=True)))
    return jsonify({"message": message, **done})


@api_bp.post("/zip")
def zip_api() -> Response:
    """POST /api/selection/zip {selection} : the pictures' files as one streamed zip."""
    return zip_response(json_selection(request.get_json(silent=True)))


def offers_picture_changes() -> bool:
    """Whether the selection bar offers "Move to trash" and "Retry failed" (a contributor's actions)."""
    account = signed_in()
    return not accounts_on() or (account is not None and account.role.rank >= Role.CONTRIBUTOR.rank)


def init_app(app: Flask) -> None:
    """Give the templates the selection bar's limit and what it offers."""
    app.jinja_env.globals.update(offers_picture_changes=offers_picture_changes, max_selection=MAX_SELECTION,
                                 current_path=lambda: request.full_path.rstrip("?"))
