"""The JSON API, mirroring the pages."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from clipseek.accounts import record_deletions
from clipseek.errors import BadQuery
from clipseek.indexing.broker import queue_depth
from clipseek.library.collections import collection_counts
from clipseek.library.deletion import Selection, delete_images
from clipseek.search.query_vectors import parse_embedding, text_vectors
from clipseek.search.run import check_query, run_search, similar_images
from clipseek.store.tables import Image, in_library
from clipseek.upkeep.retrying import retry_failed_images
from clipseek.upkeep.status import collection_status
from webapp.auth import actor, may
from webapp.db_session import (
    active_model_name,
    clipseek,
    get_session,
    image_or_404,
    primary_session,
    reads_from_replica,
)
from webapp.params import paging, parse_ids, parse_sha256s, search_body, search_request
from webapp.presenters import image_dict, page_dict, server_timing
from webapp.uploads import save_uploads

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.route("/search", methods=["GET", "POST"])
@reads_from_replica(unless_arg="example")
def search() -> tuple[Response, int, dict[str, str]]:
    """GET /api/search?q=&example=&like=&<filters>&mode=&sort=&min_score=&all=&page=&per_page= ;
    POST /api/search with those as JSON, or "embedding" (a vector of the active model) for "q"."""
    encoder = clipseek().encoder_for(active_model_name())
    vector = None
    if request.method == "POST":
        args, embedding = search_body(request.get_json(silent=True))
        if embedding is not None:
            vector = parse_embedding(embedding, dim=encoder.dim, model=encoder.model_id)
    else:
        args = request.args
    results = run_search(get_session(), encoder, search_request(args),
                         ef_search=clipseek().settings.ef_search, vector=vector,
                         texts_session=primary_session())
    get_session().commit()  # an example's last use
    primary_session().commit()  # the texts kept for SQL
    return jsonify(page_dict(results)), 200, server_timing(results)


@bp.get("/embed")
def embed() -> Response:
    """GET /api/embed?q= : the active model's vector of a text (kept for SQL, as a search keeps it)."""
    encoder = clipseek().encoder_for(active_model_name())
    query = check_query(request.args.get("q", ""))
    vector = text_vectors(get_session(), encoder, [query])[0]
    get_session().commit()
    return jsonify({"model": encoder.model_id, "dim": int(vector.shape[0]), "text": query,
                    "embedding": vector.tolist()})


@bp.get("/images/<int:image_id>")
@reads_from_replica()
def image(image_id: int) -> Response:
    """GET /api/images/<id> : everything known about one image, and what the caller may do to it."""
    found = image_or_404(image_id)
    return jsonify(image_dict(found) | {"may": {"delete": may("api.delete", found),
                                                "add_caption": may("captions.api_add", found)}})


@bp.get("/images")
@reads_from_replica()
def images() -> Response:
    """GET /api/images?ids=1,2,3&sha256=… : several images at once, by id or by checksum.

    The upload page polls this, and after a reload asks by checksum whether the files it was
    sending when the page was left arrived.
    """
    ids = parse_ids(request.args.get("ids", ""))
    sums = parse_sha256s(request.args.get("sha256", ""))
    wanted = Image.id.in_(ids) | Image.sha256.in_(sums)
    found = get_session().scalars(select(Image).where(wanted, in_library())
                                  .options(selectinload(Image.captions)).order_by(Image.id)).all()
    return jsonify({"images": [image_dict(i) for i in found]})


@bp.get("/images/<int:image_id>/similar")
@reads_from_replica()
def similar(image_id: int) -> Response:
    """GET /api/images/<id>/similar?page=&per_page= : nearest neighbours of an image."""
    image_or_404(image_id)
    page, per_page = paging()
    results = similar_images(get_session(), image_id, model=active_model_name(), page=page,
                             per_page=per_page, ef_search=clipseek().settings.ef_search)
    if results is None:
        abort(409, description=f"Image {image_id} is not indexed yet.")
    return jsonify(page_dict(results))


@bp.delete("/images/<int:image_id>")
def delete(image_id: int) -> Response:
    """DELETE /api/images/<id> : move an image to the trash (/api/trash restores or removes it)."""
    name = image_or_404(image_id).original_name
    settings, who = clipseek().settings, actor()
    deletion = delete_images(get_session(), Selection(image_ids=(image_id,)), store=settings.image_store,
                             thumbnails=settings.thumbnails, by=who.user_id if who else None)
    record_deletions(get_session(), who, dict.fromkeys(deletion.image_ids, name))
    get_session().commit()
    if not deletion.image_ids:
        abort(404, description=f"There is no image {image_id}.")  # deleted by someone else meanwhile
    return jsonify(deletion.to_dict())


@bp.post("/images/retry")
def retry() -> Response:
    """POST /api/images/retry (form or JSON "ids": "1,2,3") : queue failed images again where it helps."""
    body = request.get_json(silent=True) if request.is_json else None
    raw = body.get("ids", "") if isinstance(body, dict) else request.form.get("ids", "")
    ids = parse_ids(",".join(map(str, raw)) if isinstance(raw, list) else str(raw))
    if not ids:
        raise BadQuery("Give the ids of the failed images to try again, e.g. ids=1,2,3.")
    settings = clipseek().settings
    done = retry_failed_images(get_session(), ids, model=active_model_name(), batch_size=settings.batch_size,
                               enqueue=clipseek().enqueue)
    return jsonify(done.to_dict())


@bp.get("/collections")
def collections() -> Response:
    """GET /api/collections : every collection with its images per status."""
    return jsonify({"collections": [c.to_dict() for c in collection_counts(get_session())]})


@bp.post("/images")
def upload() -> tuple[Response, int]:
    """POST /api/images (multipart, field "files", optional "collection") : store and queue pictures."""
    outcomes = save_uploads(request.files.getlist("files"))
    return jsonify({"uploads": [o.to_dict() for o in outcomes]}), 202


@bp.get("/status")
def status() -> Response:
    """GET /api/status : counts, the active model, a switch's progress, queue and recent failures."""
    # The broker first: no database connection is held while it is asked.
    depth = queue_depth(clipseek().settings)
    report = collection_status(get_session(), model=active_model_name(), queue_depth=depth,
                               replicas=clipseek().db.replica_states(), settings=clipseek().settings)
    precision = clipseek().encoder_for(report.model).precision_sentence()
    return jsonify({**report.to_dict(), "precision": precision})
