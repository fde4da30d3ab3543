"""Files whose pictures were deleted for good: `sync`, `watch` and `ingest` leave them out until asked.

A picture indexed where it lies keeps its file when it is deleted, so without a record the
next sync of its folder would register it again as new. Each such file is remembered by its
path, which a sync compares without reading the file, and by its content's hash, which
recognises a copy that was moved or renamed (that new path is then remembered too, so it
is not read again at every sync).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.store.tables import ForgottenFile

# Values per statement: a statement holds at most 65,535 parameters, and an import or a
# restore may name 100,000 files.
CHUNK = 10_000


def _chunks(values: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start:start + CHUNK])


def _under(root: Path) -> str:
    return str(root).rstrip(os.sep) + os.sep


def forget_files(session: Session, files: Iterable[tuple[str, str | None]]) -> int:
    """Remember (path, sha256) pairs as deleted (a known path takes the new hash); the caller commits."""
    rows = dict(files)
    paths = list(rows)
    for chunk in _chunks(paths):
        statement = pg_insert(ForgottenFile).values([{"path": p, "sha256": rows[p]} for p in chunk])
        session.execute(statement.on_conflict_do_update(
            index_elements=["path"], set_={"sha256": statement.excluded.sha256,
                                           "forgotten_at": statement.excluded.forgotten_at}))
    return len(paths)


def forgotten_under(session: Session, root: Path) -> set[str]:
    """The forgotten paths in folder `root` and below it."""
    return set(session.scalars(select(ForgottenFile.path).where(
        ForgottenFile.path.startswith(_under(root), autoescape=True))))


def forgotten_among(session: Session, paths: Sequence[str]) -> set[str]:
    """Which of these paths are forgotten."""
    found: set[str] = set()
    for chunk in _chunks(paths):
        found |= set(session.scalars(select(ForgottenFile.path).where(ForgottenFile.path.in_(chunk))))
    return found


def forgotten_hashes(session: Session, hashes: Iterable[str]) -> set[str]:
    """Which of these content hashes belong to forgotten files."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(hashes))):
        found |= {sha for sha in session.scalars(
            select(ForgottenFile.sha256).where(ForgottenFile.sha256.in_(chunk))) if sha}
    return found


def remember_again(session: Session, *, paths: Iterable[str] = (), hashes: Iterable[str] = (),
                   under: Path | None = None) -> int:
    """Stop leaving out the files of these paths, of these hashes, or in `under`; the caller commits."""
    conditions: list[ColumnElement[bool]] = []
    conditions += [ForgottenFile.path.in_(chunk) for chunk in _chunks(sorted(set(paths)))]
    conditions += [ForgottenFile.sha256.in_(chunk) for chunk in _chunks(sorted(set(hashes)))]
    if under is not None:
        conditions.append(ForgottenFile.path.startswith(_under(under), autoescape=True))
    removed = 0
    for condition in conditions:
        result = session.execute(delete(ForgottenFile).where(condition))
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed


def any_forgotten(session: Session) -> bool:
    """Whether any file is remembered as deleted (a library that was used, even if empty now)."""
    return bool(session.scalar(select(exists().where(ForgottenFile.path.is_not(None)))))
