"""Who may call each route: every endpoint declares a policy, and requests are checked against it."""

from __future__ import annotations

from enum import StrEnum

from flask import abort, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek.library.captions import caption_owners
from clipseek.store.tables import Album, Image, Role
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
    # Contributors make albums and manage the ones they made; admins every album.
    ALBUM_OWN = "album own"
    ADMIN = "admin"  # users, collections, deleting in bulk (duplicates too), removing from the trash for good


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
    "api.embed": Policy.VIEW,
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
    # Near-duplicates are a cleanup of the whole library: whoever may delete in bulk.
    "duplicates.page": Policy.ADMIN,
    "duplicates.trash": Policy.ADMIN,
    "duplicates_api.groups": Policy.ADMIN,
    "duplicates_api.trash_api": Policy.ADMIN,
    "albums.page": Policy.VIEW,
    "albums.show": Policy.VIEW,
    "albums.create": Policy.CONTRIBUTE,
    "albums.rename": Policy.ALBUM_OWN,
    "albums.delete": Policy.ALBUM_OWN,
    # The album is in the form: one's own, or a new one to make.
    "albums.add": Policy.ALBUM_OWN,
    "albums.remove": Policy.ALBUM_OWN,
    "albums_api.list_all": Policy.VIEW,
    "albums_api.one": Policy.VIEW,
    "albums_api.create_api": Policy.CONTRIBUTE,
    "albums_api.rename_api": Policy.ALBUM_OWN,
    "albums_api.delete_api": Policy.ALBUM_OWN,
    "albums_api.add_api": Policy.ALBUM_OWN,
    "albums_api.remove_api": Policy.ALBUM_OWN,
    # People: everyone who looks sees them; naming and correcting them is a contributor's,
    # like making albums (a person is the library's, not one account's).
    "people.people_page": Policy.VIEW,
    "people.show": Policy.VIEW,
    "people.face": Policy.VIEW,
    "people.rename": Policy.CONTRIBUTE,
    "people.merge": Policy.CONTRIBUTE,
    "people.remove": Policy.CONTRIBUTE,
    # A selection's actions: the pictures to move to the trash must be one's own uploads
    # (checked by the route, picture by picture, as DELETE_OWN does for one); a zip only
    # reads, and is a POST for the selection it carries.
    "selection.trash_form": Policy.CONTRIBUTE,
    "selection.retry_form": Policy.CONTRIBUTE,
    "selection.zip_form": Policy.VIEW,
    "selection_api.trash_api": Policy.CONTRIBUTE,
    "selection_api.retry_api": Policy.CONTRIBUTE,
    "selection_api.zip_api": Policy.VIEW,
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
          Policy.ALBUM_OWN: Role.CONTRIBUTOR, Policy.ADMIN: Role.ADMIN}
_WHAT = {Role.VIEWER: "a viewer's", Role.CONTRIBUTOR: "a contributor's", Role.ADMIN: "an admin's"}
NOT_YOUR_CAPTION = ("You may add captions only on pictures you uploaded, and change only captions on "
                    "pictures you uploaded or that you wrote; ask an admin to change this one.")

NOT_YOUR_ALBUM = ("You may change only albums you made; ask an admin to change this one, or make an "
                  "album of your own.")
NOT_YOUR_PICTURES = ("You may move to the trash only pictures you uploaded, and {theirs} of the {count} "
                     "selected are not yours; select only your own, or ask an admin.")


def may_manage_album(role: Role, user_id: int, *, made_by: int | None) -> bool:
    """Whether an account may rename, delete, add to or take from an album made by `made_by`."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank and made_by == user_id)


def may_trash(role: Role, user_id: int, *, uploaded_by: list[int | None]) -> bool:
    """Whether an account may move to the trash pictures uploaded by these users (one per picture)."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank
                                  and all(who == user_id for who in uploaded_by))


def may_caption(role: Role, user_id: int, *, picture_by: int | None) -> bool:
    """Whether an account may add a caption to a picture uploaded by user `picture_by`."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank and picture_by == user_id)


def may_change_caption(role: Role, user_id: int, *, written_by: int | None, picture_by: int | None) -> bool:
    """Whether an account may edit or delete a caption written by `written_by` on `picture_by`'s picture."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank and user_id in (written_by, picture_by))


def may_delete(role: Role, user_id: int, *, picture_by: int | None) -> bool:
    """Whether an account may delete a picture uploaded by user `picture_by`."""
    return role is Role.ADMIN or (role.rank >= Role.CONTRIBUTOR.rank and picture_by == user_id)


def allows(endpoint: str, role: Role | None, user_id: int | None, *, picture_by: int | None = None,
           caption_by: int | None = None, on_caption: bool = False) -> bool:
    """Whether `enforce` would let the account call `endpoint` on a picture uploaded by `picture_by`.

    `on_caption` asks about changing a caption written by `caption_by` rather than adding one;
    the pages ask this so that they offer only what the role can do.
    """
    policy = POLICIES[endpoint]
    if policy is Policy.PUBLIC:
        return True
    if role is None or user_id is None:
        return False
    if policy is Policy.SIGNED_IN:
        return True
    if role.rank < _NEEDS[policy].rank:
        return False
    if policy is Policy.DELETE_OWN:
        return may_delete(role, user_id, picture_by=picture_by)
    if policy is Policy.CAPTION_OWN:
        return (may_change_caption(role, user_id, written_by=caption_by, picture_by=picture_by)
                if on_caption else may_caption(role, user_id, picture_by=picture_by))
    return True


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


def _album_allowed(role: Role, user_id: int) -> bool:
    # The album is in the URL, or (a selection's "Add to album") in the form; an album that
    # does not exist, or a new one to make, passes, so that the route answers.
    raw = (request.view_args or {}).get("album_id", request.form.get("album_id", ""))
    if not isinstance(raw, int) and not (isinstance(raw, str) and raw.isdigit() and len(raw) < 19):
        return True
    made_by = get_session().execute(select(Album.created_by).where(Album.id == int(raw))).first()
    return made_by is None or may_manage_album(role, user_id, made_by=made_by[0])


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
        if user_id is None or not may_delete(role, user_id, picture_by=added_by):
            abort(403, description="You may delete or restore only pictures you uploaded; ask an "
                                   "admin to do it for this one.")
    if policy is Policy.CAPTION_OWN and user_id is not None and not _captioning_allowed(role, user_id):
        abort(403, description=NOT_YOUR_CAPTION)
    if policy is Policy.ALBUM_OWN and user_id is not None and not _album_allowed(role, user_id):
        abort(403, description=NOT_YOUR_ALBUM)
    return None
