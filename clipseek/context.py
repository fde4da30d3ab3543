"""The things a ClipSeek process builds once: settings, database, encoder and text reader."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.broker import create_celery, send_faces_task, send_index_task, send_read_task
from clipseek.indexing.face_finder import FaceFinder
from clipseek.indexing.text_reader import TextReader
from clipseek.settings import Settings
from clipseek.store.db import Database

if TYPE_CHECKING:
    from celery import Celery

T = TypeVar("T")

# The one process-wide cache: whatever is costly to build (a loaded model, a connection pool)
# is built once per process and key, whoever asks for it.
_shared: dict[tuple[type, Hashable], object] = {}
_shared_lock = threading.Lock()


def _shared_instance(kind: type[T], key: Hashable, build: Callable[[], T]) -> T:
    with _shared_lock:
        found = _shared.get((kind, key))
        if isinstance(found, kind):
            return found
        built = _shared[(kind, key)] = build()
        return built


# Loaded encoders, least recently used first: a process keeps at most
# settings.models_in_memory of them (a worker serves the active and the incoming model).
_encoders: OrderedDict[Hashable, ClipEncoder] = OrderedDict()


def shared_encoder(settings: Settings) -> ClipEncoder:
    """The process-wide encoder for these settings, so each model loads once per process.

    Beyond `models_in_memory` models the least recently used encoder is let go (a task that
    still holds it finishes with it; its memory goes with the last reference).
    """
    key = (settings.model, settings.weights, settings.weights_sha256, settings.model_cache,
           settings.device, settings.precision, settings.offline)
    with _shared_lock:
        found = _encoders.get(key)
        if found is None:
            found = _encoders[key] = ClipEncoder.from_settings(settings)
        _encoders.move_to_end(key)
        while len(_encoders) > settings.models_in_memory:
            _encoders.popitem(last=False)
        return found


def loaded_models() -> list[str]:
    """The models this process holds encoders for, least recently used first."""
    with _shared_lock:
        return [encoder.model_id for encoder in _encoders.values()]


def open_database(settings: Settings) -> Database:
    """The database, migrated, with an active model: on a new database, the configured one
    (its vector index is built then)."""
    from clipseek.switching.switch import ensure_active_model

    database = Database.connect(settings)
    # The composition root decides which model serves; opening a database does not.
    ensure_active_model(database.engine, settings.model)
    return database


def shared_text_reader() -> TextReader:
    """The process-wide text reader, so its models load once per process (on its first read)."""
    return _shared_instance(TextReader, "default", TextReader)


def shared_face_finder() -> FaceFinder:
    """The process-wide face finder, so its models load once per process (on its first picture)."""
    return _shared_instance(FaceFinder, "default", FaceFinder)


def shared_context(settings: Settings) -> Context:
    """The process-wide context for these settings (the worker's tasks and the Python API use it)."""
    return _shared_instance(Context, settings, lambda: Context(settings))


@dataclass
class Context:
    """Settings plus the database and encoder, each created on first use."""

    settings: Settings
    _db: Database | None = field(default=None, repr=False)
    _celery: Celery | None = field(default=None, repr=False)
    _decode_pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> Context:
        """A context for the settings in the environment."""
        return cls(Settings.from_env())

    @property
    def db(self) -> Database:
        """The database, started and migrated on first use."""
        if self._db is None:
            self._db = open_database(self.settings)
        return self._db

    @property
    def model(self) -> str:
        """The model searches use now (it lives in the database, and a switch changes it)."""
        from clipseek.switching.switch import active_model

        with self.db.session() as session:
            return active_model(session)

    @property
    def encoder(self) -> ClipEncoder:
        """The process-wide encoder of the active model (loads on first encode)."""
        return self.encoder_for(self.model)

    def encoder_for(self, model: str) -> ClipEncoder:
        """The process-wide encoder of `model`; CLIPSEEK_WEIGHTS applies to CLIPSEEK_MODEL only."""
        if model == self.settings.model:
            return shared_encoder(self.settings)
        return shared_encoder(self.settings.with_changes(model=model, weights=None, weights_sha256=None))

    @property
    def decode_pool(self) -> ThreadPoolExecutor:
        """Threads that decode images for the model (Pillow releases the GIL), kept until `close`."""
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(max_workers=self.settings.decode_workers,
                                                   thread_name_prefix="decode")
        return self._decode_pool

    @property
    def text_reader(self) -> TextReader | None:
        """The process-wide reader of words in pictures, or None when reading is off (CLIPSEEK_OCR=0)."""
        return shared_text_reader() if self.settings.ocr else None

    @property
    def celery(self) -> Celery:
        """The Celery app (its broker is started if embedded); used to send work to workers."""
        if self._celery is None:
            self._celery = create_celery(self.settings)
        return self._celery

    def enqueue(self, image_ids: list[int], model: str) -> None:
        """Send one batch of image ids to the workers."""
        send_index_task(self.celery, image_ids, model)

    def enqueue_reading(self, image_ids: list[int]) -> None:
        """Send one batch of indexed image ids to be read for words, at the workers' lower priority."""
        send_read_task(self.celery, image_ids)

    def enqueue_faces(self, image_ids: list[int]) -> None:
        """Send one batch of indexed image ids to have their faces found, at the workers' lower priority."""
        send_faces_task(self.celery, image_ids)

    def close(self) -> None:
        """Release the database connections and the decoding threads."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._celery is not None:
            self._celery.close()
            self._celery = None
        if self._decode_pool is not None:
            self._decode_pool.shutdown()
            self._decode_pool = None
