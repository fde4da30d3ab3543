"""The context of a request: the process's ClipSeek context and one database session."""

from __future__ import annotations

from flask import Flask, abort, current_app, g
from sqlalchemy.orm import Session, selectinload

from clipseek.context import Context
from clipseek.store.tables import Image
from clipseek.switching.switch import active_model


def clipseek() -> Context:
    """The app's ClipSeek context (settings, database, encoder, Celery)."""
    context: Context = current_app.extensions["clipseek"]
    return context


def active_model_name() -> str:
    """The model searches use now, read once per request (a switch may change it any time)."""
    if "active_model" not in g:
        g.active_model = active_model(get_session())
    name: str = g.active_model
    return name


def get_session() -> Session:
    """The request's database session, opened on first use and closed after the request."""
    if "db_session" not in g:
        g.db_session = clipseek().db.session()
    session: Session = g.db_session
    return session


def image_or_404(image_id: int) -> Image:
    """The image with its captions, or a 404 that says which id was not found (or is in the trash)."""
    image = get_session().get(Image, image_id, options=[selectinload(Image.captions)])
    if image is None:
        abort(404, description=f"There is no image {image_id}.")
    if image.trashed_at is not None:
        abort(404, description=f"Image {image_id} is in the trash; the Trash page restores it.")
    return image


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    """Close the request's session at the end of every request."""
    app.teardown_appcontext(_close_session)
