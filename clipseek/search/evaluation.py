"""Measured quality: text->image and image->text recall over captioned images, exact and through HNSW."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder
from clipseek.errors import ClipSeekError
from clipseek.library.coco import read_captions
from clipseek.store.tables import Caption, Embedding, EmbeddingCount, Image, ImageStatus, in_library
from clipseek.store.vector_indexes import distance_to, of_model

KS = (1, 5, 10)
# The curves run to this rank; the HNSW walk returns this many neighbours per caption.
CURVE_DEPTH = 10
TEXT_BATCH = 256
# Rows of the similarity matrix computed at once: 1,024 x 5,000 fp32 is 20 MB.
CHUNK = 1024
# Wider than search's default, so the ANN loss measured is the index's, not a tight beam's.
EVAL_EF_SEARCH = 200

# Progress: captions encoded so far, and how many there are.
OnEncoded = Callable[[int, int], None]


class EvalError(ClipSeekError):
    """An evaluation that cannot run as asked (no captions, no embeddings)."""


@dataclass(frozen=True)
class Pair:
    """One caption and the stored image it describes."""

    image_id: int
    text: str


@dataclass(frozen=True)
class Recall:
    """Recall@K for K = 1..CURVE_DEPTH (fractions), and the mean rank where it is known."""

    curve: tuple[float, ...]
    mean_rank: float | None

    def at(self, k: int) -> float:
        """Recall@k as a fraction."""
        return self.curve[k - 1]


@dataclass(frozen=True)
class EvalResult:
    """One model's recall over one set of captioned images."""

    model: str
    images: int
    captions: int
    text_to_image: Recall
    image_to_text: Recall
    text_to_image_index: Recall
    skipped_captions: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The result as JSON-ready values, recall in percent as published tables give it."""
        out = asdict(self)
        for key in ("text_to_image", "image_to_text", "text_to_image_index"):
            recall: Recall = getattr(self, key)
            out[key] = {**{f"R@{k}": round(100 * recall.at(k), 2) for k in KS},
                        "mean_rank": None if recall.mean_rank is None else round(recall.mean_rank, 2),
                        "curve": [round(100 * r, 2) for r in recall.curve]}
        return out


def chance_recall(k: int, images: int, captions_per_image: int = 1) -> tuple[float, float]:
    """Expected text->image and image->text Recall@k of a ranking that ignores the content."""
    total = images * captions_per_image
    # Image->text: one of the image's own captions among the first k of all captions.
    miss = math.comb(total - captions_per_image, k) / math.comb(total, k) if k <= total else 0.0
    return min(1.0, k / images), 1.0 - miss


def stored_pairs(session: Session, *, source: str = "coco") -> list[Pair]:
    """The captions of indexed images that arrived with them from `source` (ingest-coco: coco)."""
    rows = session.execute(select(Caption.image_id, Caption.text).join(Image)
                           .where(Caption.source == source, Image.status == ImageStatus.INDEXED,
                                  in_library())
                           .order_by(Caption.image_id, Caption.id))
    return [Pair(image_id, caption) for image_id, caption in rows]


def pairs_from_file(session: Session, annotations: Path) -> tuple[list[Pair], int]:
    """Pairs from a COCO-format captions JSON matched to stored images by name; and names unmatched."""
    captions = read_captions(annotations)
    ids: dict[str, int] = {}
    rows = session.execute(select(Image.original_name, Image.id)
                           .where(Image.original_name.in_(list(captions)),
                                  Image.status == ImageStatus.INDEXED, in_library())
                           .order_by(Image.id))
    for name, image_id in rows:
        ids.setdefault(name, image_id)  # the first stored copy of a file that came twice
    pairs = [Pair(ids[name], caption) for name in sorted(ids) for caption in captions[name]]
    return pairs, len(captions) - len(ids)


def _image_vectors(session: Session, model: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
    rows = session.execute(select(Embedding.image_id, Embedding.embedding)
                           .where(Embedding.model == model, Embedding.image_id.in_(list(ids))))
    return {image_id: np.asarray(vector, dtype=np.float32) for image_id, vector in rows}


def _recall(ranks: np.ndarray, *, with_mean: bool = True) -> Recall:
    curve = tuple(float((ranks <= k).mean()) for k in range(1, CURVE_DEPTH + 1))
    return Recall(curve, float(ranks.mean()) if with_mean else None)


def _exact_ranks(texts: np.ndarray, images: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based rank of each caption's image among all images, and of each image's best caption."""
    t2i = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), CHUNK):
        sims = texts[start:start + CHUNK] @ images.T
        own = sims[np.arange(len(sims)), owner[start:start + CHUNK]]
        t2i[start:start + CHUNK] = (sims > own[:, None]).sum(axis=1) + 1
    i2t = np.empty(len(images), dtype=np.int64)
    for start in range(0, len(images), CHUNK):
        sims = images[start:start + CHUNK] @ texts.T
        rows = np.arange(start, start + len(sims))
        mine = owner[None, :] == rows[:, None]
        best = np.where(mine, sims, -np.inf).max(axis=1)
        i2t[start:start + CHUNK] = (np.where(mine, -np.inf, sims) > best[:, None]).sum(axis=1) + 1
    return t2i, i2t


def _index_ranks(session: Session, model: str, texts: np.ndarray, owner_ids: Sequence[int],
                 only: Sequence[int] | None) -> np.ndarray:
    """Rank of each caption's image among the HNSW walk's first CURVE_DEPTH (beyond: depth + 1)."""
    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true), "
                         "set_config('hnsw.iterative_scan', 'strict_order', true)"),
                    {"ef": str(EVAL_EF_SEARCH)})
    ranks = np.full(len(texts), CURVE_DEPTH + 1, dtype=np.int64)
    for row, (vector, image_id) in enumerate(zip(texts, owner_ids, strict=True)):
        query = select(Embedding.image_id).where(of_model(model))
        if only is not None:
            query = query.where(Embedding.image_id.in_(list(only)))
        found = session.scalars(query.order_by(distance_to(vector))
                                .limit(CURVE_DEPTH)).all()
        if image_id in found:
            ranks[row] = found.index(image_id) + 1
    return ranks


def check_evaluable(session: Session, model: str, pairs: Sequence[Pair]) -> None:
    """Raise EvalError unless there are captions and `model` has embedded some of their images."""
    if not pairs:
        raise EvalError("There are no captions to evaluate with: import COCO with "
                        "`clipseek ingest-coco`, or give a COCO-format captions file with --captions.")
    ids = list({p.image_id for p in pairs})
    if session.scalar(select(Embedding.image_id).where(Embedding.model == model,
                                                       Embedding.image_id.in_(ids)).limit(1)) is None:
        raise EvalError(f"{model} has embedded none of the captioned images: index them with it "
                        f"first (CLIPSEEK_MODEL={model} clipseek reindex).")


def evaluate(session: Session, encoder: Encoder, pairs: Sequence[Pair], *,
             on_encoded: OnEncoded | None = None) -> EvalResult:
    """Recall@1..10 and mean rank of `encoder`'s stored embeddings against `pairs`' captions."""
    model = encoder.model_id
    check_evaluable(session, model, pairs)
    vectors = _image_vectors(session, model, sorted({p.image_id for p in pairs}))
    kept = [p for p in pairs if p.image_id in vectors]
    ids = sorted({p.image_id for p in kept})
    column = {image_id: i for i, image_id in enumerate(ids)}
    images = np.stack([vectors[i] for i in ids])
    images /= np.linalg.norm(images, axis=1, keepdims=True).clip(1e-12)
    texts = np.empty((len(kept), images.shape[1]), dtype=np.float32)
    for start in range(0, len(kept), TEXT_BATCH):
        batch = [p.text for p in kept[start:start + TEXT_BATCH]]
        texts[start:start + TEXT_BATCH] = encoder.encode_texts(batch)
        if on_encoded:
            on_encoded(min(start + TEXT_BATCH, len(kept)), len(kept))
    owner = np.array([column[p.image_id] for p in kept], dtype=np.int64)
    t2i, i2t = _exact_ranks(texts, images, owner)
    total = session.scalar(select(EmbeddingCount.images).where(EmbeddingCount.model == model))
    # Restrict the walk to the evaluated images only when the model embedded others too.
    only = ids if (total or 0) > len(ids) else None
    walked = _index_ranks(session, model, texts, [p.image_id for p in kept], only)
    notes = [] if len(pairs) == len(kept) else [
        f"{len(pairs) - len(kept)} captions skipped: their images have no {model} embedding."]
    return EvalResult(model, len(ids), len(kept), _recall(t2i), _recall(i2t),
                      _recall(walked, with_mean=False), len(pairs) - len(kept), notes)
