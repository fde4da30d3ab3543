"""The things a ClipSeek process builds once: settings, database and encoder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from clipseek.broker import create_celery, send_index_task
from clipseek.db import Database
from clipseek.encoder import ClipEncoder
from clipseek.settings import Settings

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


def shared_encoder(settings: Settings) -> ClipEncoder:
    """The process-wide encoder for these settings, so the model loads once per process."""
    key = (settings.model, settings.weights, settings.weights_sha256, settings.model_cache,
           settings.device, settings.precision, settings.offline)
    return _shared_instance(ClipEncoder, key, lambda: ClipEncoder.from_settings(settings))


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
            self._db = Database.connect(self.settings)
        return self._db

    @property
    def encoder(self) -> ClipEncoder:
        """The process-wide encoder of the configured model (loads on first encode)."""
        return shared_encoder(self.settings)

    @property
    def decode_pool(self) -> ThreadPoolExecutor:
        """Threads that decode images for the model (Pillow releases the GIL), kept until `close`."""
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(max_workers=self.settings.decode_workers,
                                                   thread_name_prefix="decode")
        return self._decode_pool

    @property
    def celery(self) -> Celery:
        """The Celery app (its broker is started if embedded); used to send work to workers."""
        if self._celery is None:
            self._celery = create_celery(self.settings)
        return self._celery

    def enqueue(self, image_ids: list[int], model: str) -> None:
        """Send one batch of image ids to the workers."""
        send_index_task(self.celery, image_ids, model)

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
