"""Errors a user can cause or fix: each carries one sentence that says what to do."""


class ClipSeekError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class ConfigError(ClipSeekError):
    """A setting has a value ClipSeek cannot use."""


class WeightsError(ClipSeekError):
    """The model weights are missing, unreadable or not the expected file."""


class DatabaseUnavailable(ClipSeekError):
    """The database cannot be reached or started."""


class BadQuery(ClipSeekError):
    """A search query that cannot be answered as given."""


class InTrash(ClipSeekError):
    """A change to a picture that waits in the trash: it must be restored first."""


class DownloadError(ClipSeekError):
    """A download failed in a way that retrying now will not fix."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message
