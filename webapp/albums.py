"""Albums on the web: their pages, making, renaming and deleting them, putting pictures in and out
(the same as JSON: webapp.albums_api)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, flash, g, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from clipseek.errors import BadQuery
from clipseek.library.albums import (
    AlbumChange,
    AlbumSummary,
    add_to_album,
    album_images,
    album_name,
    album_summary,
    albums_of_image,
    create_album,
    delete_album,
    list_albums,
    remove_from_album,
    rename_album,
)
from clipseek.store.tables import Album, Image, Role
from webapp.auth import accounts_on, signed_in
from webapp.collections import BrowsePage
from webapp.db_session import get_session
from webapp.params import MAX_IMAGE_ID, paging, whole_number
from webapp.policies import may_manage_album
from webapp.presenters import counted
from webapp.selection import back, form_selection

bp = Blueprint("albums", __name__)


class AlbumIdConverter(BaseConverter):
    """An album id in a URL (a bigint like image ids), or a 404 that says it is no album."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        """The id, or a 404 for a number no album can have."""
        if len(value) > len(str(MAX_IMAGE_ID)) or int(value) > MAX_IMAGE_ID:
            abort(404, description=f"There is no album {value[:20]}.")
        return int(value)


def add_album_id_converter(state: BlueprintSetupState) -> None:
    """Make `<album_id:...>` in routes an album id; recorded before a blueprint's routes."""
    state.app.url_map.converters["album_id"] = AlbumIdConverter


bp.record_once(add_album_id_converter)

ORDERS = ("newest", "oldest")


def album_order() -> str:
    """The order the request asks an album's pictures in: newest (the default) or oldest first."""
    order = request.args.get("order", "newest")
    if order not in ORDERS:
        raise BadQuery(f"The order parameter must be newest or oldest, not {order[:20]!r}.")
    return order


def album_page(album_id: int) -> tuple[AlbumSummary, tuple[int, int], str,
                                      tuple[int, list[Image]]]:
    """The album (404 when unknown), the page and order the request asks for, and that page:
    its total and pictures (the page and the JSON API read an album alike)."""
    summary = summary_or_404(album_id)
    number, per_page = paging()
    order = album_order()
    return summary, (number, per_page), order, album_images(
        get_session(), album_id, page=number, per_page=per_page, oldest_first=order == "oldest")


def maker() -> int | None:
    """The signed-in user, recorded as an album's maker (None in the local single-user mode)."""
    account = signed_in()
    return account.user_id if account else None


def offers_album_making() -> bool:
    """Whether this request's account may make albums (everyone in the local mode)."""
    account = signed_in()
    return not accounts_on() or (account is not None and account.role.rank >= Role.CONTRIBUTOR.rank)


def offers_album_change(made_by: int | None) -> bool:
    """Whether this request's account may change an album made by `made_by`."""
    account = signed_in()
    return not accounts_on() or (account is not None and may_manage_album(account.role, account.user_id,
                                                                          made_by=made_by))


def album_choices() -> list[AlbumSummary]:
    """Every album, for the search form's album filter (read once per request)."""
    if "albums" not in g:
        g.albums = list_albums(get_session())
    albums: list[AlbumSummary] = g.albums
    return albums


def addable_albums() -> list[AlbumSummary]:
    """The albums this request's account may put pictures in, by name."""
    return [a for a in album_choices() if offers_album_change(a.created_by)]


def summary_or_404(album_id: int) -> AlbumSummary:
    """The album's summary, or a 404 that says where the albums are listed."""
    summary = album_summary(get_session(), album_id)
    if summary is None:
        abort(404, description=f"There is no album {album_id}; the Albums page lists them.")
    return summary


def album_dict(summary: AlbumSummary) -> dict[str, Any]:
    """An album as the API returns it, with its URLs and whether the caller may change it."""
    return {**summary.to_dict(), "may_change": offers_album_change(summary.created_by),
            "page_url": url_for("albums.show", album_id=summary.id),
            "cover_url": (url_for("files.thumbnail", image_id=summary.cover_id)
                          if summary.cover_id is not None else None)}


def added_message(change: AlbumChange, name: str) -> str:
    """The sentence that says what adding pictures to album `name` did."""
    parts = [f"Added {counted(change.added, 'picture')} to {name}"]
    if change.already:
        parts.append(f"{change.already} were in it already")
    if change.unknown:
        parts.append(f"{change.unknown} are no longer in the library")
    return "; ".join(parts) + "."


def _chosen_album() -> Album:
    """The album a form names: `album_id`, or a new one named `new_album` (made here)."""
    raw = request.form.get("album_id", "").strip()
    if raw:
        album = get_session().get(Album, whole_number(raw, "album_id", 1, MAX_IMAGE_ID))
        if album is None:
            abort(404, description="That album is gone; reload the page.")
        return album
    if not offers_album_making():
        abort(403, description="Your account may not make albums: it needs a contributor's role; ask "
                               "an admin.")
    name = request.form.get("new_album", "")
    if not name.strip():
        raise BadQuery("Choose an album, or type the name of a new one.")
    return create_album(get_session(), name=album_name(name), created_by=maker())


@bp.get("/albums")
def page() -> str:
    """Every album with its cover and count; making, renaming and deleting them."""
    return render_template("albums.html", albums=list_albums(get_session()))


@bp.get("/albums/<album_id:album_id>")
def show(album_id: int) -> str:
    """One album's pictures by date, page by page, with the selection bar."""
    summary, (number, per_page), order, (total, images) = album_page(album_id)
    return render_template("album.html", album=summary, total=total, images=images, order=order,
                           per_page=per_page, results=BrowsePage(number, max(1, -(-total // per_page))),
                           may_change=offers_album_change(summary.created_by))


@bp.post("/albums")
def create() -> Response:
    """The Albums page's "Make an album" form; then the new album's page."""
    album = create_album(get_session(), name=album_name(request.form.get("name", "")), created_by=maker())
    get_session().commit()
    flash(f"Made the album {album.name}: add pictures from any grid with the selection bar.", "info")
    return redirect(url_for("albums.show", album_id=album.id), code=303)


@bp.post("/albums/<album_id:album_id>/rename")
def rename(album_id: int) -> Response:
    """An album's "Rename" form."""
    name = album_name(request.form.get("name", ""))
    if rename_album(get_session(), album_id=album_id, name=name) is None:
        abort(404, description=f"There is no album {album_id}; the Albums page lists them.")
    get_session().commit()
    flash(f"Renamed the album to {name}.", "info")
    return redirect(url_for("albums.show", album_id=album_id), code=303)


@bp.post("/albums/<album_id:album_id>/delete")
def delete(album_id: int) -> Response:
    """An album's "Delete album" button (asks first): the album goes, its pictures stay."""
    album = delete_album(get_session(), album_id=album_id)
    if album is None:
        abort(404, description=f"There is no album {album_id}; the Albums page lists them.")
    name = album.name
    get_session().commit()
    flash(f"Deleted the album {name}; its pictures stay in the library.", "info")
    return redirect(url_for("albums.page"), code=303)


@bp.post("/albums/add")
def add() -> Response:
    """The selection bar's, the viewer's and a picture page's "Add to album"."""
    try:
        ids = form_selection()
        album = _chosen_album()
        change = add_to_album(get_session(), album_id=album.id, image_ids=ids, added_by=maker())
        message = added_message(change, album.name)
        get_session().commit()
    except BadQuery as exc:
        get_session().rollback()
        flash(str(exc), "error")
    else:
        flash(message, "info")
    return back()


@bp.post("/albums/<album_id:album_id>/remove")
def remove(album_id: int) -> Response:
    """An album page's "Remove from album": the pictures leave the album, not the library."""
    summary = summary_or_404(album_id)
    try:
        removed = remove_from_album(get_session(), album_id=album_id, image_ids=form_selection())
        get_session().commit()
    except BadQuery as exc:
        flash(str(exc), "error")
    else:
        flash(f"Took {counted(removed, 'picture')} out of {summary.name}; they stay in the library.", "info")
    return back()


def init_app(app: Flask) -> None:
    """Give the templates what they ask about albums."""
    app.jinja_env.globals.update(
        addable_albums=addable_albums, album_choices=album_choices, offers_album_making=offers_album_making,
        offers_album_change=offers_album_change,
        albums_of_image=lambda image_id: albums_of_image(get_session(), image_id))
