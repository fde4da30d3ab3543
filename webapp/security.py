"""Headers every answer carries (CSP, nosniff, referrer, framing), the local-only Host check, and
which proxies' forwarding headers are believed."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from flask import Flask, abort, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from clipseek.settings import Settings


def host_name(host: str) -> str:
    """The name or address in a Host header, lower-cased, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") > 1:  # a bare IPv6 address, as CLIPSEEK_HOST may give it
        return host
    return host.partition(":")[0]


def is_loopback(name: str) -> bool:
    """Whether a host name or address always means this machine."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_check(settings: Settings) -> Callable[[], None] | None:
    allowed = frozenset(settings.allowed_hosts)
    # A server on a loopback address is reachable only from this machine, but a web page
    # can point a name of its own at 127.0.0.1 (DNS rebinding) and read the answers; such a
    # request still carries that foreign name in its Host header.
    if not allowed and not is_loopback(host_name(settings.web_host)):
        return None
    names = "localhost and the names in CLIPSEEK_ALLOWED_HOSTS" if allowed else "localhost"

    def check() -> None:
        name = host_name(request.host)
        if is_loopback(name) or name in allowed or "*" in allowed:
            return
        port = request.environ.get("SERVER_PORT", settings.web_port)
        abort(400, description=f"This ClipSeek answers only to {names}, not to {name[:100]!r}: open "
                               f"http://localhost:{port}/ on the machine it runs on, or add the name "
                               "to CLIPSEEK_ALLOWED_HOSTS.")

    return check


# Scripts and styles only from our own files (the templates have no inline ones), pictures
# also from blob: for the upload previews, and no page may frame ClipSeek (clickjacking).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data: blob:; object-src 'none'; base-uri 'self'; "
                           "form-action 'self'; frame-ancestors 'none'")


def _headers(response: Response) -> Response:
    # Browsers must take the declared type: an upload is never run as a script or a page.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def init_app(app: Flask, settings: Settings) -> None:
    """Trust the configured proxies, check the Host of every request first, and give every
    response the security headers."""
    if settings.trusted_proxies:
        # The client's address (which the sign-in limits count) and scheme (the Secure cookie)
        # as the last `trusted_proxies` hops saw them; any entry before those is the client's say.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    check = _host_check(settings)
    if check is not None:
        app.before_request(check)
    app.after_request(_headers)
