"""Checking rankings computed from fp16 (halfvec) vectors, where near-ties may come in either order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

# PostgreSQL scores halfvecs (fp16; the query is rounded to one too) by summing 512 products
# in float32, so a score may differ from the exact cosine by up to about 2 x 512 x 2**-24
# (6e-5): two images scored closer than twice that may come back in either order.
SCORE_TOLERANCE = 2.5e-4


def assert_scores_descend(scores: Sequence[float], tolerance: float = SCORE_TOLERANCE) -> None:
    """Fail unless each score is at most the one before it, give or take `tolerance`."""
    rises = [(rank, before, after) for rank, (before, after) in enumerate(pairwise(scores), 2)
             if after > before + tolerance]
    assert not rises, f"scores rise (rank, score before, score at rank): {rises}"


def assert_ranking_agrees(ranked_ids: Sequence[int], expected: Mapping[int, float],
                          tolerance: float = SCORE_TOLERANCE) -> None:
    """Fail if an image ranks below, or is left out for, one that scores clearly lower.

    `ranked_ids` may be the top k of the images in `expected`: an image left out of it
    counts as ranked after all of them, so the top k must be the expected top k except
    for images tied within `tolerance` at the boundary.
    """
    assert len(set(ranked_ids)) == len(ranked_ids) and set(ranked_ids) <= set(expected), ranked_ids
    position = {image_id: n for n, image_id in enumerate(ranked_ids)}
    left_out = len(ranked_ids)
    wrong = [(better, worse) for worse in ranked_ids for better in expected
             if expected[better] > expected[worse] + tolerance
             and position.get(better, left_out) > position[worse]]
    assert not wrong, f"ranked after an image that scores lower by more than {tolerance}: {wrong}"
