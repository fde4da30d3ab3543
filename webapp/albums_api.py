"""Albums in the JSON API: list, make, read, rename and delete them, put pictures in and out."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from clipseek.errors import BadQuery
from clipseek.library.albums import (
    add_to_album,
    album_name,
    create_album,
    delete_album,
    list_albums,
    remove_from_album,
    rename_album,
)
from clipseek.store.tables import Image
from webapp.albums import (
    add_album_id_converter,
    added_message,
    album_dict,
    album_page,
    maker,
    offers_album_making,
    summary_or_404,
)
from webapp.db_session import get_session
from webapp.presenters import counted, image_dict
from webapp.selection import json_selection

api_bp = Blueprint("albums_api", __name__, url_prefix="/api/albums")
api_bp.record_once(add_album_id_converter)


def _json_name() -> str:
    body = request.get_json(silent=True)
    raw = body.get("name") if isinstance(body, dict) else None
    if not isinstance(raw, str):
        raise BadQuery('Send the album\'s name as a string in the "name" field.')
    return album_name(raw)


@api_bp.get("")
def list_all() -> Response:
    """GET /api/albums : every album with its count, cover and whether the caller may change it."""
    return jsonify({"albums": [album_dict(a) for a in list_albums(get_session())],
                    "may_create": offers_album_making()})


@api_bp.post("")
def create_api() -> tuple[Response, int]:
    """POST /api/albums {"name": ...} : make an empty album; 201 with it."""
    album = create_album(get_session(), name=_json_name(), created_by=maker())
    get_session().commit()
    return jsonify(album_dict(summary_or_404(album.id))), 201


@api_bp.get("/<album_id:album_id>")
def one(album_id: int) -> Response:
    """GET /api/albums/<id>?page=&per_page=&order= : an album and one page of its pictures by date."""
    summary, (number, per_page), _, (total, images) = album_page(album_id)
    ids = [i.id for i in images]
    loaded = {i.id: i for i in get_session().scalars(select(Image).where(Image.id.in_(ids))
                                                     .options(selectinload(Image.captions)))}
    return jsonify({**album_dict(summary), "page": number, "per_page": per_page, "total": total,
                    "images": [image_dict(loaded[i]) for i in ids]})


@api_bp.post("/<album_id:album_id>/rename")
def rename_api(album_id: int) -> Response:
    """POST /api/albums/<id>/rename {"name": NEW} : give an album another name."""
    if rename_album(get_session(), album_id=album_id, name=_json_name()) is None:
        abort(404, description=f"There is no album {album_id}; GET /api/albums lists them.")
    get_session().commit()
    return jsonify(album_dict(summary_or_404(album_id)))


@api_bp.delete("/<album_id:album_id>")
def delete_api(album_id: int) -> Response:
    """DELETE /api/albums/<id> : delete an album; its pictures stay in the library."""
    summary = summary_or_404(album_id)
    delete_album(get_session(), album_id=album_id)
    get_session().commit()
    return jsonify({"deleted": summary.to_dict()})


@api_bp.post("/<album_id:album_id>/images")
def add_api(album_id: int) -> Response:
    """POST /api/albums/<id>/images {selection} : put pictures in an album."""
    summary = summary_or_404(album_id)
    change = add_to_album(get_session(), album_id=album_id,
                          image_ids=json_selection(request.get_json(silent=True)), added_by=maker())
    get_session().commit()
    return jsonify({**change.to_dict(), "message": added_message(change, summary.name),
                    "album": album_dict(summary_or_404(album_id))})


@api_bp.post("/<album_id:album_id>/images/remove")
def remove_api(album_id: int) -> Response:
    """POST /api/albums/<id>/images/remove {selection} : take pictures out of an album."""
    summary = summary_or_404(album_id)
    removed = remove_from_album(get_session(), album_id=album_id,
                                image_ids=json_selection(request.get_json(silent=True)))
    get_session().commit()
    message = f"Took {counted(removed, 'picture')} out of {summary.name}."
    return jsonify({"removed": removed, "message": message,
                    "album": album_dict(summary_or_404(album_id))})
