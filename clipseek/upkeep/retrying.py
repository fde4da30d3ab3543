"""Trying failed images again, when their failure is one that another try can mend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clipseek.indexing.failures import is_retryable
from clipseek.indexing.queueing import Enqueue
from clipseek.store.tables import Image, ImageStatus, in_library
from clipseek.upkeep.recovery import requeue


@dataclass(frozen=True)
class Retry:
    """Which of the asked images were queued again, and which were left as they were."""

    queued: list[int]
    not_retryable: list[int]
    not_failed: list[int]

    def to_dict(self) -> dict[str, list[int]]:
        """JSON form for the API."""
        return {"queued": self.queued, "not_retryable": self.not_retryable, "not_failed": self.not_failed}


def retry_failed_images(session: Session, image_ids: Sequence[int], *, model: str, batch_size: int,
                        enqueue: Enqueue) -> Retry:
    """Queue again those of these images that failed for a reason another try can mend; commits."""
    rows = session.execute(select(Image.id, Image.status, Image.error)
                           .where(Image.id.in_(image_ids), in_library())
                           .order_by(Image.id).with_for_update()).all()
    retry = [r.id for r in rows if r.status == ImageStatus.FAILED and is_retryable(r.error)]
    kept = [r.id for r in rows if r.status == ImageStatus.FAILED and not is_retryable(r.error)]
    others = sorted(set(image_ids) - set(retry) - set(kept))
    if retry:
        session.execute(update(Image).where(Image.id.in_(retry))
                        .values(status=ImageStatus.REGISTERED, error=None))
    requeue(session, retry, model=model, batch_size=batch_size, enqueue=enqueue)
    return Retry(queued=retry, not_retryable=kept, not_failed=others)
