"""Who may call each route: every endpoint declares a policy, and requests are checked against it."""

from __future__ import annotations

from enum import StrEnum

from flask import abort, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek.library.captions import caption_owners
from clipseek.store.tables import Image, Role
from webapp.db_session import get_session


class Policy(StrEnum):
    """What a route needs from the signed-in account."""

    PUBLIC = "public"  # the sign-in page and the static files
    SIGNED_IN = "signed in"  # one's own account page
    VIEW = "view"  # search, browse, look: viewers and up
    CONTRIBUTE = "contribute"  # upload: contributors and admins
    DELETE_OWN = "delete own"  # contributors delete what they uploaded; admins anything
    # Contributors caption the pictures they uploaded, and change the captions on those and
    # the captions they wrote; admins any (as Immich lets only a picture's owner describe it).
    CAPTION_OWN = "caption own"
    ADMIN = "admin"  # users, collections, deleting in bulk, removing from the trash for good


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
    "captions.api_add": Policy.CAPTION_OWN,
    "captions.api_edit": Policy.CAPTION_OWN,
    "captions.api_delete": Policy.CAPTION_OWN,
    "captions.add": Policy.CAPTION_OWN,
    "captions.edit": Policy.CAPTION_OWN,
    "captions.delete": Policy.CAPTION_OWN,
    "collections.page": Policy.VIEW,
    "collections.browse": Policy.VIEW,
    "collections.rename": Policy.ADMIN,
    "collections.delete": Policy.ADMIN,
    "collections_api.delete_selected": Policy.ADMIN,
    "collections_api.rename_api": Policy.ADMIN,
    "collections_api.delete_api": Policy.ADMIN,
    # The trash: contributors see and restore the pictures they uploaded, as they delete them;
    # removing for good is for admins.
    "trash.page": Policy.CONTRIBUTE,
    "trash.restore": Policy.DELETE_OWN,
    "trash.delete_now": Policy.ADMIN,
    "trash.empty": Policy.ADMIN,
    "trash_api.list_api": Policy.CONTRIBUTE,
    "trash_api.restore_one_api": Policy.DELETE_OWN,
    "trash_api.restore_api": Policy.ADMIN,
    "trash_api.purge_api": Policy.ADMIN,
    "trash_api.empty_api": Policy.ADMIN,
}

_NEEDS = {Policy.VIEW: Role.VIEWER, Policy.CONTRIBUTE: Role.CONTRIBUTOR,
          Policy.DELETE_OWN: Role.CONTRIBUTOR, Policy.CAPTION_OWN: Role.CONTRIBUTOR,
          Policy.ADMIN: Role.ADMIN}
_WHAT = {Role.VIEWER: "a viewer's", Role.CONTRIBUTOR: "a contributor's", Role.ADMIN: "an admin's"}
NOT_YOUR_CAPTION = ("You may add captions only on pictures you uploaded, and change only captions on "
                    "pictures you uploaded or that you wrote; ask an admin to change this one.")


def may_caption(role: Role, user_id: int, *, picture_by: int | None) -> bool:
    """Whether an account may add a caption to a picture uploaded by user `picture_by`."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank and picture_by == user_id)


def may_change_caption(role: Role, user_id: int, *, written_by: int | None, picture_by: int | None) -> bool:
    """Whether an account may edit or delete a caption written by `written_by` on `picture_by`'s picture."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank and user_id in (written_by, picture_by))


def _captioning_allowed(role: Role, user_id: int) -> bool:
    # A caption or picture that does not exist passes, so that the route answers 404.
    args = request.view_args or {}
    session = get_session()
    if "caption_id" in args:
        owners = caption_owners(session, args["caption_id"])
        return owners is None or may_change_caption(role, user_id, written_by=owners[0],
                                                    picture_by=owners[1])
    row = session.execute(select(Image.added_by).where(Image.id == args.get("image_id"))).first()
    return row is None or may_caption(role, user_id, picture_by=row[0])


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
            abort(403, description="You may delete or restore only pictures you uploaded; ask an "
                                   "admin to do it for this one.")
    if policy is Policy.CAPTION_OWN and user_id is not None and not _captioning_allowed(role, user_id):
        abort(403, description=NOT_YOUR_CAPTION)
    return None
