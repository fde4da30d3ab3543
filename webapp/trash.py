"""The trash on the web: its page, restoring and removing pictures for good, and its JSON API."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek.accounts import AuditAction, record_image_events
from clipseek.errors import BadQuery
from clipseek.indexing.queueing import queue_for_indexing
from clipseek.library.deletion import Deletion, Selection
from clipseek.library.trash import (
    Restored,
    count_trashed,
    due_ids,
    empty_trash,
    restore_images,
    trash_contents,
)
from clipseek.store.tables import Image, Role
from webapp.auth import accounts_on, actor, signed_in
from webapp.collections import json_ids
from webapp.db_session import active_model_name, clipseek, get_session
from webapp.params import paging
from webapp.presenters import counted

bp = Blueprint("trash", __name__)
api_bp = Blueprint("trash_api", __name__, url_prefix="/api")
PER_PAGE = 48


@dataclass(frozen=True)
class TrashPage:
    """Where the trash's browsing stands, as the pager macro reads it."""

    page: int
    pages: int


def may_empty() -> bool:
    """Whether this request may remove pictures for good: admins, and everyone in the local mode."""
    account = signed_in()
    return not accounts_on() or (account is not None and account.role is Role.ADMIN)


def _own_only() -> int | None:
    """The user whose uploads alone this request sees in the trash (a contributor), else None."""
    account = signed_in()
    return account.user_id if account is not None and account.role is not Role.ADMIN else None


def _names(ids: list[int]) -> dict[int, str | None]:
    rows = get_session().execute(select(Image.id, Image.original_name).where(Image.id.in_(ids)))
    return {row.id: row.original_name for row in rows}


def _restore(selection: Selection) -> Restored:
    """Restore, record who did, commit, then queue what still needs the model."""
    session, context = get_session(), clipseek()
    restored = restore_images(session, selection, model=active_model_name())
    record_image_events(session, actor(), AuditAction.RESTORE, _names(restored.image_ids))
    session.commit()
    if restored.to_queue:
        queue_for_indexing(session, restored.to_queue, model=active_model_name(),
                           batch_size=context.settings.batch_size, enqueue=context.enqueue)
    return restored


def _purge(selection: Selection | None, older_than_days: int | None = None) -> Deletion:
    """Remove pictures in the trash for good, and record who did."""
    session, settings = get_session(), clipseek().settings
    names = _names(due_ids(session, older_than_days=older_than_days, selection=selection))
    done = empty_trash(session, store=settings.image_store, thumbnails=settings.thumbnails,
                       older_than_days=older_than_days, selection=selection)
    record_image_events(session, actor(), AuditAction.PURGE, {i: names.get(i) for i in done.image_ids})
    session.commit()
    return done


def _not_in_trash(image_id: int) -> str:
    return f"Image {image_id} is not in the trash."


@bp.get("/trash")
def page() -> str:
    """The pictures in the trash, most recently deleted first, with Restore and Delete now."""
    number, _ = paging()
    keep = clipseek().settings.trash_days
    owner = _own_only()
    total = count_trashed(get_session(), added_by=owner)
    pictures = trash_contents(get_session(), keep_days=keep, page=number, per_page=PER_PAGE,
                              added_by=owner)
    return render_template("trash.html", pictures=pictures, total=total, keep_days=keep,
                           may_empty=may_empty(),
                           results=TrashPage(number, max(1, -(-total // PER_PAGE))))


@bp.post("/trash/<int:image_id>/restore")
def restore(image_id: int) -> Response:
    """Bring one picture back from the trash."""
    if not _restore(Selection(image_ids=(image_id,))).image_ids:
        abort(404, description=_not_in_trash(image_id))
    name = _names([image_id]).get(image_id) or f"image {image_id}"
    flash(f"Restored {name}.", "info")
    return redirect(url_for("trash.page"))


@bp.post("/trash/<int:image_id>/delete")
def delete_now(image_id: int) -> Response:
    """Remove one picture in the trash for good (the page's button asks first)."""
    if not _purge(Selection(image_ids=(image_id,))).image_ids:
        abort(404, description=_not_in_trash(image_id))
    flash(f"Removed image {image_id} for good.", "info")
    return redirect(url_for("trash.page"))


@bp.post("/trash/empty")
def empty() -> Response:
    """Remove everything in the trash for good (the page's button asks first)."""
    done = _purge(None)
    flash(f"Emptied the trash: {counted(len(done.image_ids), 'picture')} removed for good; files in synced "
          "folders stay on disk and are not registered again.", "info")
    return redirect(url_for("trash.page"))


@api_bp.get("/trash")
def list_api() -> Response:
    """GET /api/trash?page=&per_page= : the pictures in the trash (a contributor's own uploads only)."""
    number, per_page = paging()
    keep = clipseek().settings.trash_days
    owner = _own_only()
    pictures = trash_contents(get_session(), keep_days=keep, page=number, per_page=per_page,
                              added_by=owner)
    return jsonify({"total": count_trashed(get_session(), added_by=owner), "keep_days": keep,
                    "page": number, "per_page": per_page,
                    "pictures": [p.to_dict() for p in pictures]})


@api_bp.post("/trash/<int:image_id>/restore")
def restore_one_api(image_id: int) -> Response:
    """POST /api/trash/<id>/restore : bring one picture back from the trash."""
    restored = _restore(Selection(image_ids=(image_id,)))
    if not restored.image_ids:
        abort(404, description=_not_in_trash(image_id))
    return jsonify(restored.to_dict())


@api_bp.post("/trash/restore")
def restore_api() -> Response:
    """POST /api/trash/restore {"ids": [...]} or {"all": true} : bring pictures back from the trash."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or (data.get("all") is True) == ("ids" in data):
        raise BadQuery('Say which pictures to restore: {"ids": [1, 2]} or {"all": true}.')
    selection = (Selection(everything=True) if data.get("all") is True
                 else Selection(image_ids=json_ids(data["ids"])))
    restored = _restore(selection)
    if not restored.image_ids:
        abort(404, description="No picture in the trash matches; nothing was restored.")
    return jsonify(restored.to_dict())


@api_bp.delete("/trash/<int:image_id>")
def purge_api(image_id: int) -> Response:
    """DELETE /api/trash/<id> : remove one picture in the trash for good."""
    done = _purge(Selection(image_ids=(image_id,)))
    if not done.image_ids:
        abort(404, description=_not_in_trash(image_id))
    return jsonify(done.to_dict())


@api_bp.post("/trash/empty")
def empty_api() -> Response:
    """POST /api/trash/empty {"older_than_days": N} (optional) : remove pictures in the trash for good."""
    data = request.get_json(silent=True)
    data = {} if data is None else data
    days = data.get("older_than_days") if isinstance(data, dict) else "bad"
    if days is not None and (type(days) is not int or days < 0):
        raise BadQuery('"older_than_days" must be a whole number of days from 0, or left out to empty '
                       "the whole trash.")
    return jsonify(_purge(None, older_than_days=days).to_dict())
