"""The things a ClipSeek process builds once: settings, database and encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clipseek.db import Database
from clipseek.encoder import ClipEncoder, shared_encoder
from clipseek.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


@dataclass
class Context:
    """Settings plus the database and encoder, each created on first use."""

    settings: Settings
    _db: Database | None = field(default=None, repr=False)
    _celery: Celery | None = field(default=None, repr=False)

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
    def celery(self) -> Celery:
        """The Celery app (its broker is started if embedded); used to send work to workers."""
        if self._celery is None:
            from clipseek.broker import create_celery

            self._celery = create_celery(self.settings)
        return self._celery

    def enqueue(self, image_ids: list[int], model: str) -> None:
        """Send one batch of image ids to the workers."""
        from clipseek.broker import send_index_task

        send_index_task(self.celery, image_ids, model)

    def close(self) -> None:
        """Release the database connections."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._celery is not None:
            self._celery.close()
            self._celery = None
