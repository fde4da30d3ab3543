"""Upload limits on a real HTTP server: a request that is too large is refused as soon as that
is known, and the server reads no further; the refusal names the limit that was passed."""

from __future__ import annotations

import io
import json
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clipseek.settings import Settings
from tests.httpserver import serve_app
from webapp import create_app

MB = 1 << 20


def _kernel_buffering() -> int:
    """Bytes the kernel may accept on a connection that nobody reads: its largest receive buffer.

    The bounds below must exceed it, or they would measure the kernel, not the server; they
    still tell a server that stops reading from one that reads everything.
    """
    try:
        receive_max = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        receive_max = 32 * MB
    return receive_max + 8 * MB  # and what the client's own buffers hold


SLACK = _kernel_buffering()
# After the answer the server may still read what the kernel queued for it before the answer
# (up to a receive buffer), and what arrives while it reads that (up to another): werkzeug's
# development server reads the queue out once before it closes. A server that kept reading
# would take all of `then` below.
AFTER_SLACK = 2 * SLACK
ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "clipseekboundary"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["werkzeug", "gunicorn"])
def server_port(request: pytest.FixtureRequest, settings: Settings, redis_url: str,
                cli_env: dict[str, str]) -> Iterator[int]:
    """The web app on a loopback port: as `clipseek up` serves it, or as the container does."""
    if request.param == "werkzeug":
        with serve_app(settings.with_changes(redis_url=redis_url)) as port:
            yield port
        return
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "4", "webapp:create_app()"],
        env=cli_env | {"REDIS_URL": redis_url}, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/upload", timeout=10):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Exchange:
    """What happened to a request sent piece by piece."""

    sent_before_answer: int
    status: int
    body: dict[str, object]
    taken_after_answer: int


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), json.loads(body[:length])


def _exchange(port: int, head: bytes, body: Iterator[bytes], *,
              then: int = AFTER_SLACK + 64 * MB) -> Exchange:
    """Send `head`, then `body` a piece at a time until an answer arrives; then try `then` more bytes."""
    sock = socket.create_connection(("127.0.0.1", port))
    # A small send buffer, so that what was sent is close to what the server has read.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    with sock:
        sock.sendall(head)
        sent = 0
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(piece)
            except OSError:  # the server closed: its answer is waiting to be read
                break
            sent += len(piece)
        status, answer = _read_answer(sock)
        taken, filler = 0, b"\0" * MB
        sock.settimeout(2)
        try:
            while taken < then:
                sock.sendall(filler)
                taken += len(filler)
        except OSError:
            pass
    return Exchange(sent, status, answer, taken)


def _head(port: int, *, length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /api/images HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Requested-With: test\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n").encode()


def _part(name: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()


END = f"\r\n--{BOUNDARY}--\r\n".encode()


def _file_body(sizes: dict[str, int]) -> Iterator[bytes]:
    for n, (name, size) in enumerate(sizes.items()):
        yield (b"\r\n" if n else b"") + _part(name)
        for _ in range(size // MB):
            yield b"\xff" * MB
    yield END


def _chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def test_a_declared_length_over_the_limit_is_refused_unread(server_port: int) -> None:
    result = _exchange(server_port, _head(server_port, length=300 * MB), iter([b"\xff" * MB] * 300))
    assert result.status == 413 and result.sent_before_answer < SLACK
    assert result.body["error"] == "The upload is too large: send at most 200 MB at once."
    assert result.taken_after_answer < AFTER_SLACK


def test_a_file_over_50_mb_is_refused_once_50_mb_of_it_have_arrived(server_port: int) -> None:
    sizes = {"small.jpg": 2 * MB, "huge.tif": 150 * MB, "after.jpg": 2 * MB}
    length = sum(len(piece) for piece in _file_body(sizes))
    result = _exchange(server_port, _head(server_port, length=length), _file_body(sizes))
    assert result.status == 413
    assert result.body["error"] == ("huge.tif is larger than the 50 MB limit per file; nothing from "
                                    "this upload was stored.")
    assert 50 * MB < result.sent_before_answer < 50 * MB + SLACK
    assert result.taken_after_answer < AFTER_SLACK


def test_a_chunked_upload_is_refused_once_past_the_request_limit(server_port: int) -> None:
    sizes = {f"part{n}.jpg": 48 * MB for n in range(5)}  # 240 MB, each file within its limit
    result = _exchange(server_port, _head(server_port), _chunked(_file_body(sizes)))
    assert result.status == 413
    assert result.body["error"] == "The upload is too large: send at most 200 MB at once."
    assert 200 * MB < result.sent_before_answer < 200 * MB + SLACK
    assert result.taken_after_answer < AFTER_SLACK


def test_more_than_100_files_are_refused_for_their_number(settings: Settings, redis_url: str) -> None:
    app = create_app({"TESTING": True}, settings=settings.with_changes(redis_url=redis_url))
    files = [(io.BytesIO(b"x"), f"{n}.jpg") for n in range(1001)]
    response = app.test_client().post("/api/images", data={"files": files}, headers={"X-Requested-With": "t"},
                                      content_type="multipart/form-data")
    app.extensions["clipseek"].close()
    assert response.status_code == 413
    assert response.get_json()["error"] == "Upload at most 100 files at once; this upload has more."
