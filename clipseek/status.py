"""Where the collection stands: counts per status and model, and recent failures."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clipseek.models import STATUSES, EmbeddingCount, Image


def collection_status(session: Session, *, model: str, recent_failures: int = 10) -> dict[str, Any]:
    """Counts of images per status, embeddings per model, and the latest failures with reasons."""
    by_status = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(select(Image.status, func.count()).group_by(Image.status)):
        by_status[status] = count
    per_model = {row.model: row.images for row in session.execute(
        select(EmbeddingCount.model, EmbeddingCount.images).where(EmbeddingCount.images > 0)
        .order_by(EmbeddingCount.model))}
    failures = session.execute(
        select(Image.id, Image.path, Image.error, Image.updated_at).where(Image.status == "failed")
        .order_by(Image.updated_at.desc(), Image.id.desc()).limit(recent_failures)).all()
    return {
        "model": model,
        "images": sum(by_status.values()),
        "by_status": by_status,
        "embeddings_by_model": per_model,
        "searchable": per_model.get(model, 0),
        "recent_failures": [{"image_id": f.id, "path": f.path, "error": f.error,
                             "at": f.updated_at.isoformat()} for f in failures],
    }


def count_pending(session: Session) -> int:
    """How many images are registered or queued: stored, but not yet indexed or failed."""
    return int(session.scalar(select(func.count()).select_from(Image)
                              .where(Image.status.in_(("registered", "queued")))) or 0)
