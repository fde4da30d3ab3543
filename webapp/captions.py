"""Adding, editing and deleting captions: forms on the image page, and the JSON API."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, redirect, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from clipseek.errors import BadQuery
from clipseek.library.captions import (
    CaptionText,
    add_caption,
    caption_dict,
    delete_caption,
    edit_caption,
    parse_caption_text,
)
from clipseek.store.tables import Caption
from webapp.auth import signed_in
from webapp.db_session import get_session
from webapp.pages import image_page
from webapp.params import MAX_IMAGE_ID

bp = Blueprint("captions", __name__)


class CaptionIdConverter(BaseConverter):
    """A caption id in a URL (a bigint like image ids), or a 404 that says it is no caption."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        """The id, or a 404 for a number no caption can have."""
        if len(value) > len(str(MAX_IMAGE_ID)) or int(value) > MAX_IMAGE_ID:
            abort(404, description=f"There is no caption {value[:20]}.")
        return int(value)


@bp.record_once
def _add_converter(state: BlueprintSetupState) -> None:
    # Recorded before the routes below, so the converter exists when they are added.
    state.app.url_map.converters["caption_id"] = CaptionIdConverter


def _json_text() -> CaptionText:
    """The "text" of a JSON body; anything else is answered with one sentence."""
    body = request.get_json(silent=True)
    return parse_caption_text(body.get("text") if isinstance(body, dict) else None)


def _writer() -> int | None:
    """The signed-in user, recorded as a caption's author (None in the local single-user mode)."""
    account = signed_in()
    return account.user_id if account else None


def _found(caption: Caption | None, caption_id: int) -> Caption:
    if caption is None:
        abort(404, description=f"There is no caption {caption_id}.")
    return caption


def _back_to(image_id: int) -> Response:
    # 303: the browser shows the image page with GET, so reloading it sends nothing again.
    return redirect(url_for("pages.image", image_id=image_id, _anchor="captions"), code=303)


@bp.post("/api/images/<int:image_id>/captions")
def api_add(image_id: int) -> tuple[Response, int]:
    """POST /api/images/<id>/captions {"text": ...} : add a person's caption; 201 with it."""
    text = _json_text()
    caption = add_caption(get_session(), image_id=image_id, text=text, added_by=_writer())
    if caption is None:
        abort(404, description=f"There is no image {image_id}.")
    get_session().commit()
    return jsonify(caption_dict(caption)), 201


@bp.put("/api/captions/<caption_id:caption_id>")
def api_edit(caption_id: int) -> Response:
    """PUT /api/captions/<id> {"text": ...} : change a caption's text (it becomes the user's)."""
    text = _json_text()
    edited = edit_caption(get_session(), caption_id=caption_id, text=text, edited_by=_writer())
    caption = _found(edited, caption_id)
    get_session().commit()
    return jsonify(caption_dict(caption))


@bp.delete("/api/captions/<caption_id:caption_id>")
def api_delete(caption_id: int) -> Response:
    """DELETE /api/captions/<id> : remove a caption; answers with the removed one."""
    caption = _found(delete_caption(get_session(), caption_id=caption_id), caption_id)
    removed = caption_dict(caption)
    get_session().commit()
    return jsonify(removed)


@bp.post("/image/<int:image_id>/captions")
def add(image_id: int) -> Response | tuple[str, int]:
    """The image page's "Add caption" form (refused: the page again, the sentence by the form)."""
    try:
        text = parse_caption_text(request.form.get("text", ""))
    except BadQuery as exc:
        return image_page(image_id, caption_error=str(exc), typed_caption=request.form.get("text", "")), 400
    if add_caption(get_session(), image_id=image_id, text=text, added_by=_writer()) is None:
        abort(404, description=f"There is no image {image_id}.")
    get_session().commit()
    return _back_to(image_id)


@bp.post("/captions/<caption_id:caption_id>/edit")
def edit(caption_id: int) -> Response | tuple[str, int]:
    """A caption's "Save" form on the image page (refused: the page again, the sentence by that form)."""
    try:
        text = parse_caption_text(request.form.get("text", ""))
    except BadQuery as exc:
        caption = _found(get_session().get(Caption, caption_id), caption_id)
        return image_page(caption.image_id, caption_error=str(exc),
                          typed_caption=request.form.get("text", ""), edited_caption=caption_id), 400
    edited = edit_caption(get_session(), caption_id=caption_id, text=text, edited_by=_writer())
    caption = _found(edited, caption_id)
    image_id = caption.image_id
    get_session().commit()
    return _back_to(image_id)


@bp.post("/captions/<caption_id:caption_id>/delete")
def delete(caption_id: int) -> Response:
    """A caption's "Delete" button on the image page."""
    caption = _found(delete_caption(get_session(), caption_id=caption_id), caption_id)
    image_id = caption.image_id
    get_session().commit()
    return _back_to(image_id)
