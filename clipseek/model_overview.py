"""What each known model has on this machine: its weights, and how much of the collection it embedded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clipseek.model_catalog import MODELS, CatalogModel
from clipseek.models import EmbeddingCount, Image, ImageStatus


@dataclass(frozen=True)
class ModelRow:
    """One catalogue model as `clipseek models` shows it."""

    model: CatalogModel
    weights_present: bool
    embedded: int
    indexed: int

    def to_dict(self) -> dict[str, object]:
        """The row as JSON-ready values."""
        return {"name": self.model.name, "dim": self.model.dim, "size_mb": self.model.size_mb,
                "coco_t2i_r1": self.model.coco_t2i_r1, "sha256_pinned": self.model.sha256 is not None,
                "weights_present": self.weights_present, "embedded": self.embedded,
                "indexed": self.indexed}


def model_rows(session: Session, *, cache_dir: Path, weights: Path | None = None,
               active: str | None = None) -> list[ModelRow]:
    """Every catalogue model with its weights' presence and its share of the indexed images.

    `weights` (CLIPSEEK_WEIGHTS) counts as present for the `active` model.
    """
    counts = dict(session.execute(select(EmbeddingCount.model, EmbeddingCount.images)).all())
    # Images that count as the collection: those a search can show.
    indexed = session.scalar(select(func.count()).select_from(Image)
                             .where(Image.status == ImageStatus.INDEXED)) or 0
    rows = []
    for model in MODELS.values():
        present = (cache_dir / model.weights_file).is_file() or (
            weights is not None and model.name == active and weights.is_file())
        rows.append(ModelRow(model, present, int(counts.get(model.name, 0)), int(indexed)))
    return rows
