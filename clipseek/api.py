"""ClipSeek from Python: `search()` and `display_results()` on the configured collection."""

from __future__ import annotations

from pathlib import Path

from clipseek.context import Context, shared_context
from clipseek.search.display import render_grid
from clipseek.search.query import parse_request
from clipseek.search.run import SearchPage, run_search
from clipseek.settings import Settings


def search(text: str = "", top_k: int = 5, page: int = 1, *, context: Context | None = None,
           **filters: str | list[str]) -> SearchPage:
    """Rank the stored images against `text` (newest first without it); `top_k` results per page.

    Keyword arguments are the search parameters of /api/search: collection, album (an id or a
    name), source, folder, taken_from, taken_to, added_from, added_to, format, orientation,
    min_size, place, person (a name or an id), mode, sort, min_score, like, example and all;
    e.g. search("a beach", place="Portugal", album="Summer 2024", person="Anna").
    """
    params = {name: [value] if isinstance(value, str) else list(value) for name, value in filters.items()}
    request = parse_request(params | {"q": [text], "page": [str(page)], "per_page": [str(top_k)]})
    # The environment's context is built on the first call (importing clipseek starts nothing), then reused.
    ctx = context or shared_context(Settings.from_env())
    with ctx.db.session() as session:
        page_ = run_search(session, ctx.encoder, request, ef_search=ctx.settings.ef_search)
        session.commit()  # an example's last use
        return page_


def display_results(text: str, top_k: int = 5, *, save_to: str | Path | None = None,
                    context: Context | None = None) -> Path | None:
    """Search and show the matches in a matplotlib grid (saved to a PNG without a display)."""
    results = search(text, top_k=top_k, context=context)
    return render_grid(results, save_to=Path(save_to) if save_to else None)
