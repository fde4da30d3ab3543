"""The things a ClipSeek process builds once: settings, database and encoder."""

from __future__ import annotations

from dataclasses import dataclass, field

from clipseek.db import Database
from clipseek.encoder import ClipEncoder, shared_encoder
from clipseek.settings import Settings


@dataclass
class Context:
    """Settings plus the database and encoder, each created on first use."""

    settings: Settings
    _db: Database | None = field(default=None, repr=False)

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

    def close(self) -> None:
        """Release the database connections."""
        if self._db is not None:
            self._db.close()
            self._db = None
