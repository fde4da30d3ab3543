"""The context of a request: the process's ClipSeek context and one database session.

A view marked `reads_from_replica` reads on a replica (DATABASE_READ_URL) when one is up and
has replayed the visitor's own last write; every other view, and every view without
replicas, uses the primary.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, abort, current_app, g, request
from flask import session as visitor
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response

from clipseek.context import Context
from clipseek.store.tables import Image
from clipseek.switching.switch import active_model

P = ParamSpec("P")
R = TypeVar("R")
# The Flask session's key for the WAL position of the visitor's last write.
LAST_WRITE_KEY = "wal_after"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    """The request's database session, opened on first use and closed after the request (on a
    replica inside a view marked `reads_from_replica`)."""
    if g.get("on_replica"):
        if "read_session" not in g:
            after = visitor.get(LAST_WRITE_KEY)
            g.read_session = clipseek().db.read_session(
                after_lsn=after if isinstance(after, int) else None)
        read: Session = g.read_session
        return read
    if "db_session" not in g:
        g.db_session = clipseek().db.session()
    session: Session = g.db_session
    return session


def primary_session() -> Session:
    """The request's session on the primary, even inside a view that reads on a replica: for
    the little such a view writes (the texts a search keeps for SQL)."""
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


def reads_from_replica(*, unless_arg: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let a read-only view read on a replica; a failure there marks the replica down and the
    view runs again on the primary, so a replica that dies costs no request.

    `unless_arg`: a query parameter whose presence makes the request write (a stored example's
    last use), so it stays on the primary.
    """
    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            db = clipseek().db
            if db.replicas is None or (unless_arg is not None and unless_arg in request.args):
                return view(*args, **kwargs)
            g.on_replica = True
            try:
                return view(*args, **kwargs)
            except OperationalError as exc:
                read = g.pop("read_session", None)
                if read is None or not db.replica_failed(read, exc):
                    raise
                read.close()
                g.on_replica = False
                return view(*args, **kwargs)
            finally:
                g.on_replica = False
        return wrapper
    return decorate


def _remember_write(response: Response) -> Response:
    # After a request that may have written, this visitor's reads wait for a replica that has
    # replayed up to here (the primary answers them meanwhile): they see their own changes.
    if request.method not in _READ_METHODS and "db_session" in g and clipseek().db.replicas is not None:
        # Should the primary go away just now, the answer stands and reads keep the last mark.
        with contextlib.suppress(SQLAlchemyError):
            visitor[LAST_WRITE_KEY] = clipseek().db.write_position()
    return response


def _close_session(_exc: BaseException | None) -> None:
    for key in ("db_session", "read_session"):
        opened = g.pop(key, None)
        if opened is not None:
            opened.close()


def init_app(app: Flask) -> None:
    """Close the request's sessions at the end of every request, and remember the position of
    a visitor's writes when there are replicas."""
    app.after_request(_remember_write)
    app.teardown_appcontext(_close_session)
