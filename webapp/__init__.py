"""The ClipSeek web application: search pages, image pages, uploads, status and a JSON API."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask

from clipseek.accounts import accounts_required, ready_for_accounts
from clipseek.context import Context
from clipseek.library.places import NO_PLACE_REASON
from clipseek.settings import Settings
from clipseek.store.tables import ImageStatus


def _secret_key(settings: Settings) -> str:
    """CLIPSEEK_SECRET_KEY, or a random key kept in the data folder so sessions survive restarts."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.home / "secret_key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(test_config: dict[str, Any] | None = None, *, settings: Settings | None = None,
               context: Context | None = None) -> Flask:
    """Build the Flask app for `settings` (from the environment by default).

    `context`: the process's own, whose database is open already (`clipseek up`), so that the
    first request does not connect and check the schema again.
    """
    from webapp import (
        account_pages,
        albums,
        albums_api,
        api,
        auth,
        captions,
        collections,
        csrf,
        db_session,
        duplicates,
        errors,
        files,
        pages,
        params,
        people,
        presenters,
        security,
        selection,
        trash,
        upload_limits,
        uploads,
    )

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        MAX_CONTENT_LENGTH=upload_limits.MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=upload_limits.MAX_FIELD_BYTES,
        MAX_FORM_PARTS=upload_limits.MAX_FORM_PARTS,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    context = app.extensions["clipseek"] = context or Context(settings)
    if accounts_required(settings):
        try:
            with context.db.session() as session:
                ready_for_accounts(session, settings)
        except BaseException:
            context.close()
            raise
    app.jinja_env.globals["ImageStatus"] = ImageStatus  # templates compare statuses by name
    app.jinja_env.globals["missing_notice"] = presenters.missing_notice
    app.jinja_env.globals["alt_text"] = presenters.alt_text
    app.jinja_env.globals["place_parts"] = presenters.place_parts
    app.jinja_env.globals["coordinates_text"] = presenters.coordinates_text
    app.jinja_env.globals["no_place_reason"] = NO_PLACE_REASON
    app.jinja_env.globals["words_read"] = presenters.words_read
    app.jinja_env.filters["score"] = presenters.score_text
    app.jinja_env.filters["source_words"] = presenters.source_text
    app.jinja_env.filters["counted"] = presenters.counted

    from clipseek.clip.encoder import is_random_model

    @app.context_processor
    def model_banner() -> dict[str, Any]:
        try:
            name = db_session.active_model_name()
        except Exception:  # an error page while the database is down still renders
            name = settings.model
        return {"model_name": name, "model_is_random": is_random_model(name)}

    security.init_app(app, settings)
    auth.init_app(app, settings)
    upload_limits.init_app(app)
    params.init_app(app)
    db_session.init_app(app)
    csrf.init_app(app)
    errors.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(captions.bp)
    app.register_blueprint(collections.bp)
    app.register_blueprint(collections.api_bp)
    app.register_blueprint(duplicates.bp)
    app.register_blueprint(duplicates.api_bp)
    app.register_blueprint(albums.bp)
    app.register_blueprint(albums_api.api_bp)
    app.register_blueprint(selection.bp)
    app.register_blueprint(selection.api_bp)
    albums.init_app(app)
    app.register_blueprint(people.bp)
    people.init_app(app)
    selection.init_app(app)
    app.register_blueprint(trash.bp)
    app.register_blueprint(trash.api_bp)
    app.register_blueprint(account_pages.account_bp)
    app.register_blueprint(account_pages.admin_bp)
    return app
