"""Collections on the web: their page, renaming and deleting them (into the trash), and deleting
by selection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek.accounts import record_deletions
from clipseek.errors import BadQuery
from clipseek.library.collections import (
    collection_counts,
    collection_images,
    collection_name,
    rename_collection,
)
from clipseek.library.deletion import Deletion, Selection, delete_images, selected_ids
from clipseek.store.tables import Image
from webapp.auth import actor
from webapp.db_session import clipseek, get_session, reads_from_replica
from webapp.params import MAX_IDS, MAX_IMAGE_ID, paging
from webapp.presenters import counted

bp = Blueprint("collections", __name__)
api_bp = Blueprint("collections_api", __name__, url_prefix="/api")

ONE_WAY = 'Say which images to delete in one way: "ids", "collection" or "path_prefix".'


@dataclass(frozen=True)
class BrowsePage:
    """Where a collection's browsing stands, as the pager macro reads it."""

    page: int
    pages: int


def _no_collection(name: str, where: str) -> str:
    return f"There is no collection {name!r}; {where} lists them."


def _delete(selection: Selection) -> Deletion:
    """Move the selection to the trash and record who did."""
    settings, session = clipseek().settings, get_session()
    names = {row.id: row.original_name for row in
             session.execute(select(Image.id, Image.original_name).where(selection.condition()))}
    who = actor()
    deletion = delete_images(session, selection, store=settings.image_store,
                             thumbnails=settings.thumbnails, by=who.user_id if who else None)
    record_deletions(session, who, {i: names.get(i, "") for i in deletion.image_ids})
    session.commit()
    return deletion


@bp.get("/collections")
def page() -> str:
    """Every collection with its images per status, a link to browse it, rename and delete."""
    return render_template("collections.html", collections=collection_counts(get_session()))


@bp.get("/collections/browse")
@reads_from_replica()
def browse() -> str:
    """One collection's images, newest first, page by page."""
    name = collection_name(request.args.get("name", ""))
    number, per_page = paging()
    total, images = collection_images(get_session(), name, page=number, per_page=per_page)
    if total == 0:
        abort(404, description=_no_collection(name, "the Collections page"))
    return render_template("collection.html", name=name, total=total, images=images,
                           results=BrowsePage(number, max(1, -(-total // per_page))))


@bp.post("/collections/rename")
def rename() -> Response:
    """Rename (or merge into another) the collection the form names."""
    old = collection_name(request.form.get("name", ""))
    new = collection_name(request.form.get("new_name", ""))
    moved = rename_collection(get_session(), old=old, new=new)
    if not moved:
        abort(404, description=_no_collection(old, "the Collections page"))
    get_session().commit()
    flash(f"Renamed {old} to {new} ({counted(moved, 'image')}).", "info")
    return redirect(url_for("collections.page"))


@bp.post("/collections/delete")
def delete() -> Response:
    """Move every image of the collection the form names to the trash (the page's button asks first)."""
    name = collection_name(request.form.get("name", ""))
    deleted = _delete(Selection(collection=name)).image_ids
    if not deleted:
        abort(404, description=_no_collection(name, "the Collections page"))
    flash(f"Moved the {counted(len(deleted), 'image')} of {name} to the trash; the Trash page restores them "
          f"for {clipseek().settings.trash_days} days.", "info")
    return redirect(url_for("collections.page"))


def json_ids(raw: object) -> tuple[int, ...]:
    """Image ids from a JSON list; BadQuery for anything else, or too many."""
    if not isinstance(raw, list) or not all(
            type(i) is int and 1 <= i <= MAX_IMAGE_ID for i in raw):
        raise BadQuery('"ids" must be a list of image ids (whole numbers from 1).')
    if len(raw) > MAX_IDS:
        raise BadQuery(f"Delete at most {MAX_IDS} images by id at once.")
    return tuple(raw)


def _path_prefix(raw: object) -> Path:
    if not isinstance(raw, str) or not raw.startswith("/") or "\x00" in raw:
        raise BadQuery('"path_prefix" must be an absolute folder path, such as /photos/2019.')
    return Path(raw)


def json_selection(data: object) -> tuple[Selection, bool]:
    """The images a JSON body names in one way, and whether it asks for a dry run only."""
    if not isinstance(data, dict):
        raise BadQuery('Send a JSON object, such as {"collection": "holiday", "dry_run": true}.')
    named = [key for key in ("ids", "collection", "path_prefix") if data.get(key) not in (None, [])]
    if len(named) != 1:
        raise BadQuery(ONE_WAY)
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadQuery('"dry_run" must be true or false.')
    if named == ["ids"]:
        return Selection(image_ids=json_ids(data["ids"])), dry_run
    if named == ["collection"]:
        if not isinstance(data["collection"], str):
            raise BadQuery('"collection" must be a collection name.')
        return Selection(collection=collection_name(data["collection"])), dry_run
    return Selection(path_prefix=_path_prefix(data["path_prefix"])), dry_run


@api_bp.post("/images/delete")
def delete_selected() -> Response:
    """POST /api/images/delete {"ids"|"collection"|"path_prefix", "dry_run"} : trash them, or count first."""
    selection, dry_run = json_selection(request.get_json(silent=True))
    if dry_run:
        ids = selected_ids(get_session(), selection)
        return jsonify({"dry_run": True, "count": len(ids), "image_ids": ids})
    deletion = _delete(selection)
    if not deletion.image_ids:
        abort(404, description="No image matches that selection; nothing was deleted.")
    return jsonify(deletion.to_dict())


@api_bp.post("/collections/<path:name>/rename")
def rename_api(name: str) -> Response:
    """POST /api/collections/<name>/rename {"name": NEW} : rename a collection, or merge it into NEW."""
    old = collection_name(name)
    data = request.get_json(silent=True)
    new = collection_name(data["name"] if isinstance(data, dict) and isinstance(data.get("name"), str)
                          else "")
    moved = rename_collection(get_session(), old=old, new=new)
    if not moved:
        abort(404, description=_no_collection(old, "GET /api/collections"))
    get_session().commit()
    return jsonify({"from": old, "to": new, "images": moved})


@api_bp.delete("/collections/<path:name>")
def delete_api(name: str) -> Response:
    """DELETE /api/collections/<name> : move every image of a collection to the trash."""
    deletion = _delete(Selection(collection=collection_name(name)))
    if not deletion.image_ids:
        abort(404, description=_no_collection(name, "GET /api/collections"))
    return jsonify(deletion.to_dict())
