"""Showing search results as a matplotlib grid, as the original script did."""

from __future__ import annotations

import os
import re
from pathlib import Path

from clipseek.photo.imaging import ImageDecodeError, load_rgb
from clipseek.search.run import SearchPage


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def render_grid(page: SearchPage, *, save_to: Path | None = None, columns: int = 5) -> Path | None:
    """Draw the hits with their scores; show a window, or save a PNG when there is no display.

    Returns the PNG's path when one was written.
    """
    import matplotlib

    show = save_to is None and _has_display()
    if not show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(1, len(page.hits))
    cols = min(columns, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
    title = f"“{page.query}”"
    if page.meaningless:
        title += "  (random test model: these results are meaningless)"
    fig.suptitle(title)
    for ax in axes.flat:
        ax.axis("off")
    for ax, hit in zip(axes.flat, page.hits, strict=False):
        try:
            ax.imshow(load_rgb(Path(hit.path), max_pixels=10**9, min_side=256))
        except ImageDecodeError:
            ax.text(0.5, 0.5, "unreadable", ha="center")
        ax.set_title(f"#{hit.image_id}  score {hit.score:.3f}", fontsize=9)
    fig.tight_layout()
    if show:
        plt.show()
        plt.close(fig)
        return None
    slug = re.sub(r"[^a-z0-9]+", "-", page.query.lower()).strip("-")[:40] or "results"
    target = save_to or Path(f"clipseek-{slug}.png")
    fig.savefig(target, dpi=80)
    plt.close(fig)
    return target
