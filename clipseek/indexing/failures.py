"""Why an image failed to index, and whether another try can mend it."""

from __future__ import annotations

# Failures of the moment (clipseek.photo.imaging, clipseek.indexing.encoding): the file was
# away or could not be read, or memory ran short. A corrupt, empty or oversized picture
# fails the same way every time, so it is not tried again.
FILE_GONE = "the file "  # "... no longer exists": it may be back
RETRYABLE_PREFIXES = (
    FILE_GONE,
    "unreadable image file",
    "the image is too large to decode in the available memory",
)


def is_retryable(error: str | None) -> bool:
    """Whether a failure with this reason may succeed when tried again."""
    return error is None or error.startswith(RETRYABLE_PREFIXES)
