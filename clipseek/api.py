"""ClipSeek from Python: `search()` and `display_results()` on the configured collection."""

from __future__ import annotations

from pathlib import Path

from clipseek.context import Context, shared_context
from clipseek.display import render_grid
from clipseek.search import SearchPage, search_images
from clipseek.settings import Settings


def search(text: str, top_k: int = 5, page: int = 1, *, context: Context | None = None) -> SearchPage:
    """Rank the stored images against `text`; `top_k` results per page."""
    # The environment's context is built on the first call (importing clipseek starts nothing), then reused.
    ctx = context or shared_context(Settings.from_env())
    with ctx.db.session() as session:
        return search_images(session, ctx.encoder, text, page=page, per_page=top_k,
                             ef_search=ctx.settings.ef_search)


def display_results(text: str, top_k: int = 5, *, save_to: str | Path | None = None,
                    context: Context | None = None) -> Path | None:
    """Search and show the matches in a matplotlib grid (saved to a PNG without a display)."""
    results = search(text, top_k=top_k, context=context)
    return render_grid(results, save_to=Path(save_to) if save_to else None)
