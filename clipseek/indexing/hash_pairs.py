"""Near-duplicate pairs, found once: when a picture's perceptual hash is stored, the HNSW index
on images.phash gives its nearest hashes, and those within PAIR_DISTANCE bits are kept in
near_duplicate_pairs. Listing duplicates then reads the pairs (clipseek.library.duplicates)
instead of walking the index once per picture of the library.

Every hashed picture takes part in the walk, in the trash or missing too: the listing leaves
those out, so a picture restored from the trash comes back with its pairs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    SmallInteger,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
    text,
    true,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased

from clipseek.settings import MAX_DUPLICATE_DISTANCE
from clipseek.store.tables import Image, NearDuplicatePair, table_of

# Kept up to the largest distance a setting or --threshold may ask for, so that another
# distance regroups from the same pairs without looking anything up again.
PAIR_DISTANCE = MAX_DUPLICATE_DISTANCE
# Nearest hashes asked of the index per picture (itself among them): a larger group still
# joins up, since each of its pictures links to some of the others.
NEIGHBOURS = 10
# Candidates the HNSW walk keeps: near-duplicates are a few bits apart, where others are ~32.
EF_SEARCH = 40
# Any 64-bit number unique to ClipSeek's pairing (see pair_hashed).
PAIRING_LOCK = 0x436C697050616972
# Pictures paired per transaction by the backfill: the lock is held for one batch at a time
# (under a second: a walk and an update per picture, bench/duplicates.py).
PAIR_BATCH = 200


def bit_distance(a: Any, b: Any) -> ColumnElement[float]:
    """Hamming distance between two bit columns (pgvector's `<~>`)."""
    distance: ColumnElement[float] = a.op("<~>", return_type=Float)(b)
    return distance


def walk_settings(session: Session) -> None:
    """Set the HNSW walk's candidate list for the rest of this transaction."""
    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(EF_SEARCH)})


def neighbour_pairs(image_ids: Collection[int] | None, *, distance: int = PAIR_DISTANCE) -> Select[Any]:
    """(lower id, higher id, bits) for each of these hashed pictures (every one for None) and
    its NEIGHBOURS nearest hashes through the index, at most `distance` bits apart."""
    other = aliased(Image)
    near = (select(other.id.label("id"), bit_distance(other.phash, Image.phash).label("bits"))
            .order_by(bit_distance(other.phash, Image.phash)).limit(NEIGHBOURS).lateral("near"))
    statement = (select(func.least(Image.id, near.c.id).label("image_id"),
                        func.greatest(Image.id, near.c.id).label("other_id"),
                        cast(near.c.bits, SmallInteger).label("distance"))
                 .join(near, true())
                 .where(Image.phash.is_not(None), near.c.id != Image.id, near.c.bits <= distance))
    return statement if image_ids is None else statement.where(Image.id.in_(list(image_ids)))


def take_turn(session: Session) -> None:
    """Wait for the transactions pairing before this one to end; held until this one ends."""
    # Taken again by the same transaction, it is granted at once.
    session.execute(select(func.pg_advisory_xact_lock(PAIRING_LOCK)))


def pair_hashed(session: Session, image_ids: Collection[int], *, stamp: bool = True) -> int:
    """Look up and keep the pairs of these hashed pictures, and (with `stamp`) mark them paired;
    return the new pairs.

    Transactions that pair take turns (take_turn), so of two pictures hashed at once the
    later one's walk sees the other's hash. The caller commits at once.
    """
    if not image_ids:
        return 0
    take_turn(session)
    walk_settings(session)
    added = session.execute(pg_insert(NearDuplicatePair)
                            .from_select(["image_id", "other_id", "distance"], neighbour_pairs(image_ids))
                            .on_conflict_do_nothing())
    if stamp:
        session.execute(sql_update(Image).where(Image.id.in_(list(image_ids)), Image.phash.is_not(None))
                        .values(phash_paired_at=func.now()))
    return int(getattr(added, "rowcount", 0) or 0)


def record_hashes(session: Session, hashes: dict[int, str]) -> None:
    """Store perceptual hashes by image id and pair the pictures whose hash is new or changed.

    A changed hash drops the picture's old pairs. The caller commits at once (see pair_hashed).
    """
    if not hashes:
        return
    stored = {row.id: (row.phash, row.phash_paired_at) for row in session.execute(
        select(Image.id, Image.phash, Image.phash_paired_at).where(Image.id.in_(list(hashes))))}
    changed = sorted(i for i, h in hashes.items() if i in stored and stored[i][0] != h)
    todo = sorted(set(changed) | {i for i in hashes if i in stored and stored[i][1] is None})
    if not todo:
        return
    # Before the old pairs go: a transaction that deleted some, then waited for its turn,
    # would hold up the one pairing beside those very rows.
    take_turn(session)
    if changed:
        session.execute(delete(NearDuplicatePair).where(or_(NearDuplicatePair.image_id.in_(changed),
                                                            NearDuplicatePair.other_id.in_(changed))))
    # The hash and the time it is paired in one statement: each update of a row also writes
    # it into the HNSW index again, which costs more than the walk.
    table = table_of(Image)
    session.execute(sql_update(table).where(table.c.id == bindparam("row_id"))
                    .values(phash=bindparam("row_phash"), phash_paired_at=func.now()),
                    [{"row_id": i, "row_phash": hashes[i]} for i in todo])
    pair_hashed(session, todo, stamp=False)


def waiting_to_be_paired() -> ColumnElement[bool]:
    """SQL condition: the picture has a hash whose pairs were never looked up."""
    condition: ColumnElement[bool] = Image.phash.is_not(None) & Image.phash_paired_at.is_(None)
    return condition


def count_waiting_pairs(session: Session) -> int:
    """Hashed pictures whose pairs were not looked up yet (hashed before pairs were kept)."""
    return int(session.scalar(select(func.count()).select_from(Image).where(waiting_to_be_paired())) or 0)


def pair_waiting(session: Session, *, limit: int = PAIR_BATCH) -> Sequence[int]:
    """Pair up to `limit` pictures waiting to be paired, oldest first; return them. The caller commits."""
    take_turn(session)
    # Those an indexing transaction holds are left to it (it pairs them itself): waiting for
    # its rows while holding the turn it waits for would deadlock.
    ids = list(session.scalars(select(Image.id).where(waiting_to_be_paired()).order_by(Image.id)
                               .limit(limit).with_for_update(key_share=True, skip_locked=True)))
    pair_hashed(session, ids)
    return ids
