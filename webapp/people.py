"""People on the web: every person with a face and a count, a person's pictures, naming, merging
and taking a wrong face away (contributors and admins; viewers look)."""

from __future__ import annotations

import time
from pathlib import Path

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.wrappers import Response

from clipseek.errors import BadQuery
from clipseek.indexing.face_finding import people_on
from clipseek.library.derivatives import ensure_face_thumbnail
from clipseek.library.people import (
    PersonSummary,
    face_with_image,
    list_people,
    merge_people,
    name_person,
    person_faces_with_images,
    person_images,
    person_name,
    person_summary,
    remove_face,
)
from clipseek.photo.imaging import ImageDecodeError
from webapp.collections import BrowsePage
from webapp.db_session import clipseek, get_session
from webapp.params import MAX_IMAGE_ID, paging, whole_number

bp = Blueprint("people", __name__)
YEAR = 365 * 24 * 3600


# How long this app reuses the people switch it read: every page's menu asks, and the switch
# changes only by `clipseek people enable/disable`, so a page need not cost a statement more.
SWITCH_TTL_S = 5.0


def people_shown() -> bool:
    """Whether people is on (the menu then offers the People page), read at most every few seconds."""
    if "people_on" not in g:
        cached: tuple[float, bool] | None = current_app.extensions.get("clipseek.people_on")
        if cached is None or time.monotonic() - cached[0] > SWITCH_TTL_S:
            cached = (time.monotonic(), people_on(get_session(), clipseek().settings))
            current_app.extensions["clipseek.people_on"] = cached
        g.people_on = cached[1]
    shown: bool = g.people_on
    return shown


def person_choices() -> list[PersonSummary]:
    """The people for the search form's person filter: none while people is off."""
    return list_people(get_session()) if people_shown() else []


def _summary_or_404(person_id: int) -> PersonSummary:
    summary = person_summary(get_session(), person_id)
    if summary is None or not summary.faces:
        abort(404, description=f"There is no person {person_id}; the People page lists them.")
    return summary


@bp.get("/people")
def people_page() -> str:
    """Every person with a face and how many pictures they are in; named ones first."""
    return render_template("people.html", people=list_people(get_session()), enabled=people_shown())


@bp.get("/people/<int:person_id>")
def show(person_id: int) -> str:
    """One person's pictures, newest first, with their faces (to take a wrong one away) and forms."""
    summary = _summary_or_404(person_id)
    number, per_page = paging()
    total, images = person_images(get_session(), person_id, page=number, per_page=per_page)
    others = [p for p in list_people(get_session()) if p.id != person_id]
    return render_template("person.html", person=summary, total=total, images=images, per_page=per_page,
                           results=BrowsePage(number, max(1, -(-total // per_page))), others=others,
                           faces=person_faces_with_images(get_session(), person_id, limit=60))


@bp.get("/people/faces/<int:face_id>.jpg")
def face(face_id: int) -> Response:
    """A face's square crop, cached on disk and by browsers (a face's box never changes)."""
    found = face_with_image(get_session(), face_id)
    if found is None:
        abort(404, description=f"There is no face {face_id}.")
    found_face, image = found
    settings = clipseek().settings
    try:
        path = ensure_face_thumbnail(
            settings.thumbnails, sha256=image.sha256, source=Path(image.path),
            max_pixels=settings.max_image_pixels,
            box=(found_face.box_left, found_face.box_top, found_face.box_right, found_face.box_bottom))
    except ImageDecodeError as exc:
        abort(404, description=f"Face {face_id} cannot be shown: {exc}.")
    response = send_file(path, mimetype="image/jpeg", conditional=True, max_age=YEAR)
    response.cache_control.private = True  # a face is personal data: no shared cache keeps it
    return response


@bp.post("/people/<int:person_id>/name")
def rename(person_id: int) -> Response:
    """A person's "Name" form."""
    _summary_or_404(person_id)
    named = name_person(get_session(), person_id=person_id, name=person_name(request.form.get("name", "")))
    get_session().commit()
    flash(f"This person is now called {named.name}.", "info")
    return redirect(url_for("people.show", person_id=person_id), code=303)


@bp.post("/people/<int:person_id>/merge")
def merge(person_id: int) -> Response:
    """A person's "Same person as" form: the other's faces become this person's."""
    _summary_or_404(person_id)
    raw = request.form.get("other", "").strip()
    if not raw:
        raise BadQuery("Choose the person who is the same as this one.")
    other = whole_number(raw, "other", 1, MAX_IMAGE_ID)
    kept = merge_people(get_session(), keep_id=person_id, other_id=other)
    get_session().commit()
    flash(f"Merged: {kept.name or f'person {kept.id}'} now has both people's faces.", "info")
    return redirect(url_for("people.show", person_id=person_id), code=303)


@bp.post("/people/<int:person_id>/faces/<int:face_id>/remove")
def remove(person_id: int, face_id: int) -> Response:
    """A face's "Not this person" button: the face leaves the person for good."""
    left = remove_face(get_session(), face_id=face_id)
    get_session().commit()
    flash("That face is no longer this person's; grouping leaves it alone from now on.", "info")
    if person_summary(get_session(), left) is None:
        return redirect(url_for("people.people_page"), code=303)
    return redirect(url_for("people.show", person_id=person_id), code=303)


def init_app(app: Flask) -> None:
    """Give the templates what they ask about people."""
    app.jinja_env.globals.update(people_shown=people_shown, person_choices=person_choices)
