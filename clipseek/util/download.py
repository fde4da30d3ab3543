"""Resumable HTTP downloads that survive broken connections and verify what they fetched."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from clipseek.errors import DownloadError
from clipseek.util.hashing import sha256_of

CHUNK = 1 << 20
ProgressFn = Callable[[int, int | None], None]


def _total_size(response: urllib.response.addinfourl, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def download_file(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    retries: int = 8,
    timeout: float = 30.0,
    progress: ProgressFn | None = None,
    backoff: float = 1.0,
) -> Path:
    """Download `url` to `dest`, resuming a partial `dest.part` with HTTP range requests.

    A connection that breaks midway is retried (with backoff) from where it stopped; the
    finished file is checked against `expected_sha256` before it takes its final name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "clipseek"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:
                    offset = 0  # the server ignored the range: start over
                total = _total_size(response, offset)
                with open(part, "ab" if offset else "wb") as out:
                    received = offset
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        if progress:
                            progress(received, total)
                if total is not None and received < total:
                    raise ConnectionError(f"connection closed at {received} of {total} bytes")
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                break  # the partial file is already complete
            if exc.code < 500:
                raise DownloadError(f"Downloading {url} failed: HTTP {exc.code} {exc.reason}.",
                                    reason=f"HTTP {exc.code} {exc.reason}") from None
            error: Exception = exc
        except (OSError, http.client.HTTPException) as exc:
            error = exc
        # A connection that made progress before breaking starts a fresh series of retries.
        if part.exists() and part.stat().st_size > offset:
            failures = 0
        failures += 1
        if failures > retries:
            reason = str(getattr(error, "reason", None) or error)
            raise DownloadError(
                f"Downloading {url} failed after {retries} retries ({reason}); run the same "
                f"command again to resume from {part.stat().st_size if part.exists() else 0} bytes.",
                reason=reason,
            )
        time.sleep(backoff * min(2 ** (failures - 1), 30))
    if expected_sha256:
        actual = sha256_of(part)
        if actual != expected_sha256:
            part.unlink()
            raise DownloadError(
                f"The file downloaded from {url} is corrupt (SHA-256 {actual[:12]}…, expected "
                f"{expected_sha256[:12]}…); it was deleted, run the command again."
            )
    part.replace(dest)
    return dest
