"""Errors: one readable sentence, as JSON for the API and as a page for people."""

from __future__ import annotations

import psycopg
from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from clipseek.errors import BadQuery, ClipSeekError, DatabaseUnavailable, InTrash, WeightsError

DATABASE_DOWN = "The database is not reachable right now; try again in a minute."
# What to do if it goes on, by where the database is.
EMBEDDED_ADVICE = (" If this goes on: `clipseek up` starts its embedded PostgreSQL again by itself "
                   "within seconds; otherwise any clipseek command starts it (`clipseek db url`).")
EXTERNAL_ADVICE = " If this goes on, check that the PostgreSQL server that DATABASE_URL names is running."
# What the driver raises when the server is gone, restarting or refusing connections,
# whether SQLAlchemy wraps it or not.
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def wants_json() -> bool:
    """Whether the request came to the JSON API."""
    return request.path.startswith("/api/")


def error_response(status: int, message: str) -> tuple[Response | str, int]:
    """Render `message` with `status` in the form the client expects."""
    if wants_json():
        return jsonify({"error": message, "status": status}), status
    return render_template("error.html", status=status, message=message), status


def _http(exc: HTTPException) -> tuple[Response | str, int]:
    return error_response(exc.code or 500, exc.description or exc.name)


def _clipseek(exc: ClipSeekError) -> tuple[Response | str, int]:
    if isinstance(exc, BadQuery):
        return error_response(400, str(exc))
    if isinstance(exc, InTrash):
        return error_response(409, str(exc))
    if isinstance(exc, DatabaseUnavailable | WeightsError):
        return error_response(503, str(exc))
    return error_response(500, str(exc))


def _database_down(exc: Exception) -> tuple[Response | str, int]:
    reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
    current_app.logger.warning("%s %s: the database is not reachable: %s", request.method,
                               request.path, reason)
    from webapp.db_session import clipseek

    advice = EXTERNAL_ADVICE if clipseek().settings.database_url else EMBEDDED_ADVICE
    return error_response(503, DATABASE_DOWN + advice)


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(ClipSeekError, _clipseek)
    for kind in DATABASE_DOWN_ERRORS:
        app.register_error_handler(kind, _database_down)
