"""Local HTTP servers: one with range support that can break connections midway, and the web app."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wsgi import ClosingIterator

from clipseek.settings import Settings
from webapp import create_app

if TYPE_CHECKING:  # typeshed's WSGI types exist for type checkers only
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


@dataclass
class Files:
    """What the server serves, and how many responses it still cuts short."""

    content: dict[str, bytes]
    breaks_left: int = 0
    requests: list[str] = field(default_factory=list)


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = files.content.get(self.path)
            files.requests.append(f"{self.path} {self.headers.get('Range', '')}")
            if body is None:
                self.send_error(404)
                return
            start = 0
            if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            chunk = body[start:]
            if files.breaks_left > 0:
                files.breaks_left -= 1
                # Send part of the body, then drop the connection like a flaky network.
                self.wfile.write(chunk[: max(1, len(chunk) // 3)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return Handler


@contextmanager
def serve(files: Files) -> Iterator[str]:
    """Serve `files` on a free loopback port; yield the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Draining:
    """The app behind a count of the requests in flight; once draining, new requests get a 503.

    A browser keeps loading thumbnails over kept-alive connections after a test's last
    check, and werkzeug's server goes on answering those connections after `shutdown()`.
    A response cut off by the app's close (a send_file whose file is open) was then left
    for the garbage collector, which reported the open file in whichever test ran next.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.idle = threading.Condition()
        self.active = 0
        self.draining = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self.idle:
            if self.draining:
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return []
            self.active += 1
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._done()
            raise
        closing = _CloseOnce(ClosingIterator(body, self._done))  # the body (its file), then counted
        environ[_BODY] = closing  # for a connection the browser drops: _Handler closes it
        return closing

    def _done(self) -> None:
        with self.idle:
            self.active -= 1
            self.idle.notify_all()

    def drain(self, timeout: float) -> None:
        """Refuse new requests and wait until those in flight have finished and been closed."""
        with self.idle:
            self.draining = True
            self.idle.wait_for(lambda: self.active == 0, timeout)


_BODY = "tests.httpserver.body"


class _CloseOnce:
    """A response body that is closed once, whoever asks first: the server or `_Handler`."""

    def __init__(self, body: ClosingIterator) -> None:
        self.body = body
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.body.close()


class _Handler(WSGIRequestHandler):
    """werkzeug's handler, closing the response of a connection the browser dropped.

    When a browser resets a connection (a page left while its thumbnails load), werkzeug's
    server reads what is left of the request before it closes the response, the read raises,
    and the response (a send_file's open file) was left for the garbage collector and never
    counted done, so that the drain waited its whole timeout.
    """

    def connection_dropped(self, error: BaseException, environ: WSGIEnvironment | None = None) -> None:
        if environ is not None and (body := environ.get(_BODY)) is not None:
            body.close()
        super().connection_dropped(error, environ)


@contextmanager
def serve_app(settings: Settings,
              wrap: Callable[[WSGIApplication], WSGIApplication] | None = None) -> Iterator[int]:
    """The web app for `settings` on werkzeug's threaded server (as `clipseek up` runs it); yield its port.

    `wrap` puts a test's own WSGI layer around the app (to hold an answer back, say).
    """
    app = create_app(settings=settings)
    draining = _Draining(wrap(app) if wrap else app)
    server = make_server("127.0.0.1", 0, draining, threaded=True, request_handler=_Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        draining.drain(timeout=30)
        server.shutdown()
        server.server_close()
        thread.join()
        app.extensions["clipseek"].close()
