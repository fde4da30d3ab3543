"""Which model searches use, and moving to another one without a moment of downtime.

The active model lives in `search_models`. `use_model` makes another one incoming: it gets
its own index and the workers embed the whole collection with it while searches go on with
the active one; when the incoming model covers every image, one transaction makes it active
(the former one is kept, vectors and index, until `drop_model`). A search reads the active
model once and uses that model's vectors throughout, so a switch never empties a search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from clipseek.clip.catalog import dimension_of
from clipseek.errors import ConfigError
from clipseek.indexing.queueing import Enqueue, lacks_embedding, queue_for_indexing
from clipseek.store.active_views import replace_active_views, views_are_current
from clipseek.store.tables import (
    Embedding,
    EmbeddingCount,
    Image,
    ImageStatus,
    ModelState,
    QueryEmbedding,
    QueryExample,
    ScoreCutoff,
    SearchModel,
    in_library,
)
from clipseek.store.vector_indexes import create_index, drop_index, index_state

# Images a model must embed before it can serve: every one with a file, whatever its stage
# (one still waiting for the active model is embedded by both).
NEEDING = (ImageStatus.REGISTERED, ImageStatus.QUEUED, ImageStatus.INDEXED)
# The window over which the incoming model's embedding rate is measured for the time left.
RATE_WINDOW_S = 300
# A switch whose incoming model embedded nothing for this long, with its images sent this
# long ago, has lost its tasks (a broker restarted without its queue): they are sent again.
STALL_S = 600
# Rows deleted per statement when a model is dropped, so no lock is held for long.
DROP_CHUNK = 5_000


class SwitchError(ConfigError):
    """A model change that cannot be done as asked; nothing was changed."""


def ensure_active_model(engine: Engine, default: str) -> str:
    """The active model's name; on a database without one, `default` (CLIPSEEK_MODEL) becomes it.

    Also builds the active model's index where it is missing (a new database, or one made
    before each model had its own).
    """
    with Session(engine) as session:
        row = session.scalar(select(SearchModel).where(SearchModel.state == ModelState.ACTIVE))
        if row is None:
            # Two processes starting at once both try: the upsert and the one-active index
            # leave exactly one winner, and the loser reads it below.
            session.execute(
                pg_insert(SearchModel)
                .values(name=default, dim=dimension_of(default), state=ModelState.ACTIVE,
                        activated_at=func.now())
                .on_conflict_do_update(index_elements=["name"],
                                       set_={"state": ModelState.ACTIVE, "activated_at": func.now()},
                                       where=SearchModel.state == ModelState.KEPT))
            session.commit()
            row = session.scalar(select(SearchModel).where(SearchModel.state == ModelState.ACTIVE))
        if row is None:
            raise SwitchError(f"No model is active and {default} could not be made active: "
                              "another model is incoming; run `clipseek model use NAME --force`.")
        name, dim = row.name, row.dim
        if name != default and _replaceable(session, name):
            # Nothing is embedded yet (a first start that stopped for want of weights, say):
            # CLIPSEEK_MODEL still decides, as it would have on a new database.
            dim = dimension_of(default)
            session.execute(delete(SearchModel).where(SearchModel.name == name))
            session.execute(pg_insert(SearchModel)
                            .values(name=default, dim=dim, state=ModelState.ACTIVE, activated_at=func.now())
                            .on_conflict_do_update(index_elements=["name"],
                                                   set_={"state": ModelState.ACTIVE,
                                                         "activated_at": func.now()}))
            session.commit()
            drop_index(engine, name)
            name = default
    if index_state(engine, name) != "valid":
        create_index(engine, name, dim)
    _ensure_active_views(engine)
    return name


def _ensure_active_views(engine: Engine) -> None:
    """Point the active-model views at the active model where they do not yet (a new database)."""
    with Session(engine) as session:
        row = session.scalar(select(SearchModel).where(SearchModel.state == ModelState.ACTIVE))
        if row is None or views_are_current(session, row.name, row.dim):
            return
        # Under the row locks a switch takes, so that two starting processes or a switch
        # never recreate the views at once.
        session.execute(select(SearchModel.name).order_by(SearchModel.name).with_for_update())
        row = session.scalar(select(SearchModel).where(SearchModel.state == ModelState.ACTIVE))
        if row is not None and not views_are_current(session, row.name, row.dim):
            replace_active_views(session, row.name, row.dim)
        session.commit()


def _replaceable(session: Session, active: str) -> bool:
    """Whether the active model may give way to CLIPSEEK_MODEL: no vectors, no switch under way."""
    if session.scalar(select(SearchModel.name).where(SearchModel.state == ModelState.INCOMING)):
        return False
    return not session.scalar(select(exists().where(Embedding.model == active)))


def active_model(session: Session) -> str:
    """The model searches use now."""
    name = session.scalar(select(SearchModel.name).where(SearchModel.state == ModelState.ACTIVE))
    if name is None:
        raise SwitchError("No model is active in this database; start ClipSeek once "
                          "(`clipseek up` or any command) to make CLIPSEEK_MODEL the active one.")
    return name


def incoming_model(session: Session) -> str | None:
    """The model being moved to, if a switch is under way."""
    return session.scalar(select(SearchModel.name).where(SearchModel.state == ModelState.INCOMING))


def serving_models(session: Session) -> list[str]:
    """The models every image needs: the active one and, during a switch, the incoming one."""
    return list(session.scalars(select(SearchModel.name)
                                .where(SearchModel.state.in_((ModelState.ACTIVE, ModelState.INCOMING)))
                                .order_by(SearchModel.state)))


def is_known(session: Session, model: str) -> bool:
    """Whether `model` has a row here (embeddings are written only for such models)."""
    return session.get(SearchModel, model) is not None


def register_model(engine: Engine, model: str) -> int:
    """Give `model` a row (kept, unless it has one) and a valid index; return its dimension.

    Any command that embeds with a model other than the active one (`reindex --model`,
    `model use`) calls this first, so no model's vectors are ever without their own index.
    """
    dim = dimension_of(model)
    with Session(engine) as session:
        session.execute(pg_insert(SearchModel).values(name=model, dim=dim, state=ModelState.KEPT)
                        .on_conflict_do_nothing(index_elements=["name"]))
        session.commit()
    if index_state(engine, model) != "valid":
        create_index(engine, model, dim)
    return dim


def _uncovered(model: str) -> Select[Any]:
    # Pictures in the trash wait: one restored later is embedded then.
    return select(Image.id).where(Image.status.in_(NEEDING), in_library(), lacks_embedding(model))


def activate(session: Session, model: str) -> None:
    """Make `model` the active one in one transaction; the former active model is kept.

    The active-model views move with it, in the same transaction, so SQL written against
    them ranks by the new model from the moment searches do.
    """
    # The rows are locked in name order so that two switching processes cannot deadlock.
    session.execute(select(SearchModel.name).order_by(SearchModel.name).with_for_update())
    session.execute(update(SearchModel).where(SearchModel.state == ModelState.ACTIVE)
                    .values(state=ModelState.KEPT))
    dim = session.scalar(update(SearchModel).where(SearchModel.name == model)
                         .values(state=ModelState.ACTIVE, activated_at=func.now())
                         .returning(SearchModel.dim))
    if dim is not None:
        replace_active_views(session, model, dim)
    session.commit()


def finish_if_covered(session: Session) -> str | None:
    """Switch to the incoming model if it has embedded every image; return it if so.

    Workers call this after each task of the incoming model; the row lock makes one of them
    do it, once.
    """
    incoming = session.scalar(select(SearchModel.name).where(SearchModel.state == ModelState.INCOMING)
                              .with_for_update(skip_locked=True))
    if incoming is None:
        session.rollback()
        return None
    if session.scalar(select(exists(_uncovered(incoming)))):
        session.rollback()
        return None
    activate(session, incoming)
    return incoming


@dataclass(frozen=True)
class SwitchStarted:
    """What `use_model` did."""

    model: str
    dim: int
    queued_images: int
    tasks: int
    # True when searches use the new model already (forced, or nothing was left to embed).
    switched: bool


def use_model(engine: Engine, model: str, *, force: bool, batch_size: int,
              enqueue: Enqueue) -> SwitchStarted:
    """Start moving searches to `model`: index, mark incoming, queue the whole collection.

    The caller has checked that the model's weights can be loaded. Running it again resumes
    (images already embedded are not queued twice); `force` switches at once, and searches
    then find only the images the new model has embedded so far.
    """
    with Session(engine) as session:
        active = active_model(session)
        incoming = incoming_model(session)
    if model == active:
        raise SwitchError(f"{model} is already the active model.")
    if incoming not in (None, model):
        raise SwitchError(f"A switch to {incoming} is under way: wait until it is done, or cancel "
                          f"it with `clipseek model drop {incoming}`.")
    dim = register_model(engine, model)
    with Session(engine) as session:
        session.execute(update(SearchModel).where(SearchModel.name == model)
                        .values(state=ModelState.INCOMING, switch_started_at=func.now(),
                                queued_at=func.now()))
        session.commit()
        # After the commit above: a worker that embeds a new image from now on queues it for
        # the incoming model too, and every image before that is in this list.
        ids = list(session.scalars(_uncovered(model).order_by(Image.id)))
        tasks = queue_for_indexing(session, ids, model=model, batch_size=batch_size,
                                   enqueue=enqueue, mark=False)
        if force:
            activate(session, model)
            switched = True
        else:
            switched = finish_if_covered(session) == model
    return SwitchStarted(model=model, dim=dim, queued_images=len(ids), tasks=tasks, switched=switched)


def queue_for_serving_models(session: Session, image_ids: Sequence[int], *, done_model: str,
                             batch_size: int, enqueue: Enqueue) -> int:
    """After a task of `done_model`: queue its images for the other serving model, if any lack it.

    This is how images that arrive during a switch reach the incoming model (and how a switch
    that completed during a task sends its images to the new active model). Returns the
    number of images queued.
    """
    queued = 0
    for model in serving_models(session):
        if model == done_model:
            continue
        lacking = list(session.scalars(
            select(Image.id).where(Image.id.in_(image_ids), Image.status.in_(NEEDING), in_library(),
                                   lacks_embedding(model)).order_by(Image.id)))
        if lacking:
            queue_for_indexing(session, lacking, model=model, batch_size=batch_size,
                               enqueue=enqueue, mark=False)
            queued += len(lacking)
    session.commit()
    return queued


@dataclass(frozen=True)
class SwitchProgress:
    """How far the incoming model has come, for status displays."""

    model: str
    active: str
    embedded: int
    total: int
    started_at: datetime | None
    # Images per second over the last few minutes; None before any was embedded.
    rate: float | None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the recent rate (None when unknown)."""
        if not self.rate:
            return None
        return max(0, self.total - self.embedded) / self.rate

    def to_dict(self) -> dict[str, object]:
        """The progress as JSON-ready values."""
        return {"model": self.model, "active": self.active, "embedded": self.embedded,
                "total": self.total,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "rate": self.rate, "eta_s": self.eta_s}


def switch_progress(session: Session) -> SwitchProgress | None:
    """The switch under way, with its progress and time left; None when there is none."""
    row = session.scalar(select(SearchModel).where(SearchModel.state == ModelState.INCOMING))
    if row is None:
        return None
    total = session.scalar(select(func.count()).select_from(Image)
                           .where(Image.status.in_(NEEDING), in_library())) or 0
    embedded = session.scalar(
        select(func.count()).select_from(Image)
        .where(Image.status.in_(NEEDING), in_library(), ~lacks_embedding(row.name))) or 0
    recent = session.scalar(
        select(func.count()).select_from(Embedding)
        .where(Embedding.model == row.name,
               Embedding.created_at > func.now() - text(f"interval '{RATE_WINDOW_S} seconds'"))) or 0
    window = float(RATE_WINDOW_S)
    if row.switch_started_at is not None:
        since = session.scalar(select(func.extract("epoch", func.now() - row.switch_started_at)))
        window = max(1.0, min(float(RATE_WINDOW_S), float(since or RATE_WINDOW_S)))
    return SwitchProgress(model=row.name, active=active_model(session), embedded=int(embedded),
                          total=int(total), started_at=row.switch_started_at,
                          rate=(recent / window) if recent else None)


@dataclass(frozen=True)
class Dropped:
    """What `drop_model` removed."""

    model: str
    embeddings: int
    cancelled_switch: bool


def drop_model(engine: Engine, model: str,
               on_progress: Callable[[int], None] | None = None) -> Dropped:
    """Delete `model`'s vectors and index (a switch to it is cancelled); never the active one."""
    with Session(engine) as session:
        row = session.get(SearchModel, model)
        stored = session.scalar(select(EmbeddingCount.images).where(EmbeddingCount.model == model)) or 0
        if row is None and not stored:
            known = ", ".join(session.scalars(select(SearchModel.name).order_by(SearchModel.name)))
            raise SwitchError(f"No vectors of {model} are stored here (models here: {known or 'none'}).")
        if row is not None and row.state == ModelState.ACTIVE:
            raise SwitchError(f"{model} is the active model, which every search uses: switch to another "
                              "first (`clipseek model use NAME`), then drop it.")
        cancelled = row is not None and row.state == ModelState.INCOMING
        # The row goes first: workers skip tasks of a model without one, so nothing re-adds
        # vectors while they are deleted below.
        session.execute(delete(SearchModel).where(SearchModel.name == model))
        session.execute(delete(ScoreCutoff).where(ScoreCutoff.model == model))
        session.execute(delete(QueryExample).where(QueryExample.model == model))
        session.execute(delete(QueryEmbedding).where(QueryEmbedding.model == model))
        session.commit()
        removed = 0
        while True:
            chunk = select(Embedding.image_id).where(Embedding.model == model).limit(DROP_CHUNK)
            done = session.execute(delete(Embedding).where(Embedding.model == model,
                                                           Embedding.image_id.in_(chunk)))
            session.commit()
            count = int(done.rowcount or 0)  # type: ignore[attr-defined]
            removed += count
            if on_progress:
                on_progress(removed)
            if count == 0:
                break
    drop_index(engine, model)
    return Dropped(model=model, embeddings=removed, cancelled_switch=cancelled)


def after_index_task(session: Session, image_ids: Sequence[int], *, model: str, batch_size: int,
                     enqueue: Enqueue) -> str | None:
    """What a worker does after embedding a task's images with `model`.

    Queues them for the other serving model where they lack its vectors, and completes a
    switch the incoming model has now covered; returns the newly active model, if any.
    """
    queue_for_serving_models(session, image_ids, done_model=model, batch_size=batch_size,
                             enqueue=enqueue)
    if incoming_model(session) != model:
        return None
    return finish_if_covered(session)


def resume_stalled_switch(session: Session, *, batch_size: int, enqueue: Enqueue,
                          stall_s: float = STALL_S) -> int:
    """Send the incoming model's missing images again if its switch stalled; return how many.

    A switch also completes here when nothing is left to embed (its last images were deleted
    rather than embedded). The scheduler calls this on every pass.
    """
    row = session.scalar(select(SearchModel).where(SearchModel.state == ModelState.INCOMING))
    if row is None:
        return 0
    if finish_if_covered(session) is not None:
        return 0
    last_vector = session.scalar(select(func.max(Embedding.created_at)).where(Embedding.model == row.name))
    quiet = session.scalar(select(func.now() - func.greatest(last_vector, row.queued_at,
                                                             row.switch_started_at)))
    if quiet is None or quiet.total_seconds() < stall_s:
        return 0
    ids = list(session.scalars(_uncovered(row.name).order_by(Image.id)))
    session.execute(update(SearchModel).where(SearchModel.name == row.name).values(queued_at=func.now()))
    queue_for_indexing(session, ids, model=row.name, batch_size=batch_size, enqueue=enqueue, mark=False)
    return len(ids)
