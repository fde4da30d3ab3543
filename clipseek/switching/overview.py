"""What each known model has on this machine: its weights, and how much of the collection it embedded."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clipseek.clip.catalog import MODELS, RANDOM_TAG, CatalogModel, lookup
from clipseek.store.tables import EmbeddingCount, Image, ImageStatus, SearchModel, in_library


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
                             .where(Image.status == ImageStatus.INDEXED, in_library())) or 0
    rows = []
    for model in MODELS.values():
        present = (cache_dir / model.weights_file).is_file() or (
            weights is not None and model.name == active and weights.is_file())
        rows.append(ModelRow(model, present, int(counts.get(model.name, 0)), int(indexed)))
    return rows


def random_model_rows(session: Session, *, listed: set[str]) -> list[ModelRow]:
    """The `ARCH/random` test models this database serves, keeps or has vectors of.

    They are in no catalogue, yet one may be active; their weights are built, never read.
    """
    names = set(session.scalars(select(SearchModel.name))) | set(
        session.scalars(select(EmbeddingCount.model).where(EmbeddingCount.images > 0)))
    counts = dict(session.execute(select(EmbeddingCount.model, EmbeddingCount.images)).all())
    indexed = session.scalar(select(func.count()).select_from(Image)
                             .where(Image.status == ImageStatus.INDEXED, in_library())) or 0
    rows = []
    for name in sorted(names - listed):
        if name.partition("/")[2] != RANDOM_TAG:
            continue
        model = replace(lookup(name), name=name, coco_t2i_r1=None, sha256=None)
        rows.append(ModelRow(model, True, int(counts.get(name, 0)), int(indexed)))
    return rows
