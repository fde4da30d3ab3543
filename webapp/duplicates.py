"""Near-duplicates on the web: the groups with the picture to keep, and moving the others to the trash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from clipseek.accounts import record_deletions
from clipseek.errors import BadQuery
from clipseek.library.deletion import Deletion
from clipseek.library.duplicates import (
    DuplicateGroup,
    find_duplicate_groups,
    group_of,
    hash_counts,
    trash_extras,
)
from clipseek.settings import MAX_DUPLICATE_DISTANCE
from webapp.auth import actor
from webapp.collections import BrowsePage
from webapp.db_session import clipseek, get_session
from webapp.params import MAX_IMAGE_ID, int_arg, paging, parse_ids
from webapp.presenters import counted

bp = Blueprint("duplicates", __name__)
api_bp = Blueprint("duplicates_api", __name__, url_prefix="/api")

CHANGED = ("These pictures no longer all look alike (one was moved to the trash or changed since); "
           "reload the page.")


def _distance(source: Mapping[str, str] | None = None) -> int:
    return int_arg("threshold", clipseek().settings.duplicate_distance, low=0, high=MAX_DUPLICATE_DISTANCE,
                   source=source)


def _one_group(ids: Sequence[int], distance: int) -> DuplicateGroup:
    if len(ids) < 2:
        raise BadQuery("Name every picture of the group (at least two ids).")
    group = group_of(get_session(), ids, distance=distance)
    if group is None:
        abort(409, description=CHANGED)
    return group


def _trash(groups: Sequence[DuplicateGroup]) -> Deletion:
    settings, session = clipseek().settings, get_session()
    names = {m.id: m.name for g in groups for m in g.members}
    deletion = trash_extras(session, groups, store=settings.image_store, thumbnails=settings.thumbnails)
    record_deletions(session, actor(), {i: names.get(i, "") for i in deletion.image_ids})
    session.commit()
    return deletion


@dataclass(frozen=True)
class GroupsPage:
    """One page of the groups, with what the whole list holds."""

    groups: Sequence[DuplicateGroup]
    total: int
    extras: int
    page: int
    pages: int
    per_page: int


def _groups_page(distance: int) -> GroupsPage:
    """The groups at `distance`, the page the query string asks for (the last one if past it)."""
    number, per_page = paging()
    found = find_duplicate_groups(get_session(), distance=distance)
    pages = max(1, -(-len(found) // per_page))
    number = min(number, pages)
    return GroupsPage(found[(number - 1) * per_page:number * per_page], len(found),
                      sum(len(g.extra_ids) for g in found), number, pages, per_page)


@bp.get("/duplicates")
def page() -> str:
    """The groups of the same picture, a page at a time, the one to keep marked, with a button
    per group and for all."""
    distance = _distance()
    shown = _groups_page(distance)
    counts = hash_counts(get_session())
    args = {name: request.args[name] for name in ("threshold", "per_page") if request.args.get(name)}
    return render_template("duplicates.html", shown=shown, distance=distance, counts=counts,
                           results=BrowsePage(shown.page, shown.pages), pager_args=args)


@bp.post("/duplicates/trash")
def trash() -> Response:
    """Move to the trash the others of the group the form names (every picture of it), or of all groups."""
    distance = _distance(request.form)
    if request.form.get("all"):
        groups = find_duplicate_groups(get_session(), distance=distance)
    else:
        groups = [_one_group(parse_ids(request.form.get("ids", "")), distance)]
    moved = len(_trash(groups).image_ids)
    flash(f"Moved {counted(moved, 'picture')} to the trash, keeping one of each of "
          f"{counted(len(groups), 'group')}.", "info")
    return redirect(url_for("duplicates.page", threshold=request.form.get("threshold") or None,
                            page=request.form.get("page") or None))


@api_bp.get("/duplicates")
def groups() -> Response:
    """GET /api/duplicates?threshold=&page=&per_page= : the groups of the same picture, a page at
    a time (most copies first), the one to keep first in each."""
    distance = _distance()
    shown = _groups_page(distance)
    counts = hash_counts(get_session())
    return jsonify({"distance": distance, "groups": [g.to_dict() for g in shown.groups],
                    "total": shown.total, "extras": shown.extras, "page": shown.page,
                    "per_page": shown.per_page, "unhashed": counts.unhashed,
                    "unpaired": counts.unpaired})


def _json_ids(raw: object) -> list[int]:
    if not isinstance(raw, list) or not all(type(i) is int and 1 <= i <= MAX_IMAGE_ID for i in raw):
        raise BadQuery('"ids" must be a list of image ids: every picture of one group.')
    return list(raw)


@api_bp.post("/duplicates/trash")
def trash_api() -> Response:
    """POST /api/duplicates/trash {"ids": [...]} or {"all": true}, "threshold" optional : keep one of each."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or ("ids" in data) == bool(data.get("all")):
        raise BadQuery('Send {"ids": [every picture of one group]} or {"all": true}.')
    threshold = data.get("threshold")
    if threshold is not None and not (type(threshold) is int and 0 <= threshold <= MAX_DUPLICATE_DISTANCE):
        raise BadQuery(f'"threshold" must be a whole number of bits from 0 to {MAX_DUPLICATE_DISTANCE}.')
    distance = clipseek().settings.duplicate_distance if threshold is None else threshold
    if data.get("all"):
        found = find_duplicate_groups(get_session(), distance=distance)
    else:
        found = [_one_group(_json_ids(data["ids"]), distance)]
    deletion = _trash(found)
    return jsonify({"groups": len(found), "kept": [g.keeper.id for g in found], **deletion.to_dict()})
