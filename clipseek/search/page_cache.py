"""Result pages kept for the state of the library they were ranked in.

A page is a function of the request, the model and its query precision, ef_search, and
the database's contents. The contents are named by the server's write-ahead log position:
every committed change (an upload, a deletion, the trash, a caption, an album, a new
embedding, a model switch) writes WAL and moves it, so a page kept under the position read
before its search is only ever served while nothing has changed since. Nothing needs to
be told to forget: after a change the position differs and the old pages age out of the
LRU. On a replica the position is how far it has replayed, in the same WAL's coordinates.

The position can also move without a change the search would see (autovacuum, a
checkpoint, hint bits on a checksummed server): that costs a miss, never a wrong page.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable
from typing import Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from clipseek.util.lru import BoundedLRU

# Pages kept per process: a page of results is a few kilobytes.
CAPACITY = 256

Page = TypeVar("Page")

# The insert position, not the write position: a commit is visible to others once its
# record is inserted, before it is written out when synchronous_commit is off.
_POSITION = text("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                 "ELSE pg_current_wal_insert_lsn() END::text")


def library_position(session: Session) -> str | None:
    """Where the database's write-ahead log stands: any committed change moves it."""
    position = session.scalar(_POSITION)
    return None if position is None else str(position)


class PageCache(Generic[Page]):
    """A bounded LRU of pages; each is copied in and out, so callers may change theirs.

    A page is kept pickled: pickling in and out is several times faster than copy.deepcopy
    (1.3 ms of a search request, for 24 results).
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.hits = 0
        self.misses = 0
        self._pages: BoundedLRU[Hashable, bytes] = BoundedLRU(capacity)

    def get(self, key: Hashable) -> Page | None:
        """A copy of the page kept under `key`, or None."""
        page = self._pages.get(key)
        # Counts for the tests and for profiling; a lost increment between threads is harmless.
        if page is None:
            self.misses += 1
            return None
        self.hits += 1
        kept: Page = pickle.loads(page)
        return kept

    def put(self, key: Hashable, page: Page) -> None:
        """Keep a copy of `page` under `key`."""
        self._pages.put(key, pickle.dumps(page, protocol=pickle.HIGHEST_PROTOCOL))

    def clear(self) -> None:
        """Forget every page."""
        self._pages.clear()
