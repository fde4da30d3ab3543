"""Upload limits: a request that is too large is refused as soon as that is known, with its reason."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from typing import IO

from flask import Flask, Request, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response
from werkzeug.wsgi import LimitedStream

from clipseek.library.uploads import MAX_UPLOAD_BYTES, clean_upload_name
from webapp.errors import error_response

MB = 1024 * 1024
# Several files at once; each file is also held to MAX_UPLOAD_BYTES while it arrives.
MAX_REQUEST_BYTES = 200 * MB
MAX_FILES = 100
MAX_FORM_PARTS = 1000
MAX_FIELD_BYTES = MB
# A part stays in memory up to this size, as werkzeug's own default does.
SPOOL_BYTES = 512 * 1024


class _CappedFile(tempfile.SpooledTemporaryFile[bytes]):
    """One file of a multipart upload, which ends the request once it passes its limit."""

    def __init__(self, name: str) -> None:
        super().__init__(max_size=SPOOL_BYTES, mode="w+b")
        self._name = name
        self._size = 0

    def write(self, s: bytes) -> int:  # type: ignore[override]
        """Keep `s`, or refuse the whole request when the file grows past the limit."""
        self._size += len(s)
        if self._size > MAX_UPLOAD_BYTES:
            raise RequestEntityTooLarge(description=(
                f"{self._name} is larger than the {MAX_UPLOAD_BYTES // MB} MB limit per file; "
                "nothing from this upload was stored."))
        return super().write(s)


class UploadRequest(Request):
    """A request whose multipart parser stops at the first file too many or too large."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._parts: list[_CappedFile] = []

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        if len(self._parts) >= MAX_FILES:
            raise RequestEntityTooLarge(
                description=f"Upload at most {MAX_FILES} files at once; this upload has more.")
        part = _CappedFile(clean_upload_name(filename or ""))
        self._parts.append(part)
        return part

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            # The parts read so far go at once, not when the garbage collector finds them.
            for part in self._parts:
                part.close()
            raise


def _reason(exc: RequestEntityTooLarge) -> str:
    """Why werkzeug refused the request: the byte limit, or the form's shape."""
    if exc.description != RequestEntityTooLarge.description:
        return str(exc.description)
    limit = request.max_content_length or MAX_REQUEST_BYTES
    stream = request.__dict__.get("stream")  # only if it was opened: opening it raises again
    if (request.content_length or 0) > limit or (isinstance(stream, LimitedStream) and stream.is_exhausted):
        return f"The upload is too large: send at most {limit // MB} MB at once."
    return (f"The form is too large: it has more than {MAX_FORM_PARTS:,} parts or a field over "
            f"{MAX_FIELD_BYTES // MB} MB; upload at most {MAX_FILES} files at once.")


def _too_large(exc: RequestEntityTooLarge) -> tuple[Response | str, int]:
    return error_response(413, _reason(exc))


def _read_no_further(response: Response) -> Response:
    """After a 413, stop the development server from reading the rest of the body."""
    # werkzeug's development server (`clipseek up`) reads whatever the client still sends
    # after the answer, up to 10 GB, so that the client sees the 413; shutting the socket
    # for reading ends that at once (the answer still goes out). gunicorn reads at most
    # 64 KB more before it closes the connection, and offers no socket here.
    sock = request.environ.get("werkzeug.socket")
    if response.status_code == 413 and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
    return response


def init_app(app: Flask) -> None:
    """Use the limiting request class, and answer each 413 with the limit that was passed.

    The byte, field and part limits themselves are Flask settings, set by `create_app` from
    this module's numbers.
    """
    app.request_class = UploadRequest
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.after_request(_read_no_further)
