"""Who may call each route: every endpoint declares a policy, and requests are checked against it."""

from __future__ import annotations

from enum import StrEnum

from flask import abort, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek.models import Image, Role
from webapp.db_session import get_session


class Policy(StrEnum):
    """What a route needs from the signed-in account."""

    PUBLIC = "public"  # the sign-in page and the static files
    SIGNED_IN = "signed in"  # one's own account page
    VIEW = "view"  # search, browse, look: viewers and up
    CONTRIBUTE = "contribute"  # upload and caption: contributors and admins
    DELETE_OWN = "delete own"  # contributors delete what they uploaded; admins anything
    ADMIN = "admin"  # users, collections, deleting in bulk


POLICIES: dict[str, Policy] = {
    "static": Policy.PUBLIC,
    "auth.login": Policy.PUBLIC,
    "auth.logout": Policy.PUBLIC,
    "account.page": Policy.SIGNED_IN,
    "account.change_password": Policy.SIGNED_IN,
    "account.create_token": Policy.SIGNED_IN,
    "account.revoke_token": Policy.SIGNED_IN,
    "admin.overview": Policy.ADMIN,
    "admin.add_user": Policy.ADMIN,
    "admin.set_role": Policy.ADMIN,
    "admin.remove_user": Policy.ADMIN,
    "pages.search": Policy.VIEW,
    "pages.by_image": Policy.VIEW,
    "pages.image": Policy.VIEW,
    "pages.similar": Policy.VIEW,
    "pages.status": Policy.VIEW,
    "pages.delete": Policy.DELETE_OWN,
    "files.thumbnail": Policy.VIEW,
    "files.original": Policy.VIEW,
    "uploads.form": Policy.CONTRIBUTE,
    "uploads.upload": Policy.CONTRIBUTE,
    "uploads.progress": Policy.VIEW,
    "api.search": Policy.VIEW,
    "api.image": Policy.VIEW,
    "api.images": Policy.VIEW,
    "api.similar": Policy.VIEW,
    "api.collections": Policy.VIEW,
    "api.status": Policy.VIEW,
    "api.upload": Policy.CONTRIBUTE,
    "api.delete": Policy.DELETE_OWN,
    # Queues failed pictures again where another try can mend them: as harmless as an upload.
    "api.retry": Policy.CONTRIBUTE,
    "captions.api_add": Policy.CONTRIBUTE,
    "captions.api_edit": Policy.CONTRIBUTE,
    "captions.api_delete": Policy.CONTRIBUTE,
    "captions.add": Policy.CONTRIBUTE,
    "captions.edit": Policy.CONTRIBUTE,
    "captions.delete": Policy.CONTRIBUTE,
    "collections.page": Policy.VIEW,
    "collections.browse": Policy.VIEW,
    "collections.rename": Policy.ADMIN,
    "collections.delete": Policy.ADMIN,
    "collections_api.delete_selected": Policy.ADMIN,
    "collections_api.rename_api": Policy.ADMIN,
    "collections_api.delete_api": Policy.ADMIN,
}

_NEEDS = {Policy.VIEW: Role.VIEWER, Policy.CONTRIBUTE: Role.CONTRIBUTOR,
          Policy.DELETE_OWN: Role.CONTRIBUTOR, Policy.ADMIN: Role.ADMIN}
_WHAT = {Role.VIEWER: "a viewer's", Role.CONTRIBUTOR: "a contributor's", Role.ADMIN: "an admin's"}


def enforce(endpoint: str | None, user_id: int | None, role: Role | None) -> Response | None:
    """Stop the request unless the account (None: nobody signed in) may call `endpoint`."""
    policy = POLICIES.get(endpoint or "")
    if policy is None:
        # An unknown route (a 404, or one added without a policy) is closed, never open.
        if endpoint is None:
            return None
        abort(403, description="This page has no access policy yet; ask an admin.")
    if policy is Policy.PUBLIC:
        return None
    if role is None:
        if request.method == "GET" and not request.path.startswith("/api/"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(401, description="Sign in first (or send an API token as `Authorization: Bearer "
                               "<token>`).")
    if policy is Policy.SIGNED_IN:
        return None
    needed = _NEEDS[policy]
    if role.rank < needed.rank:
        abort(403, description=f"Your account ({role.value}) may not do this: it needs "
                               f"{_WHAT[needed]} role; ask an admin.")
    if policy is Policy.DELETE_OWN and role is not Role.ADMIN:
        image_id = (request.view_args or {}).get("image_id")
        added_by = get_session().scalar(select(Image.added_by).where(Image.id == image_id))
        if added_by != user_id:
            abort(403, description="You may delete only pictures you uploaded; ask an admin "
                                   "to delete this one.")
    return None
