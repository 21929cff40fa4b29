"""Where a request comes from: the page that sent it (Origin)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web


def origin_allowed(request: web.Request, allowed_origins: tuple[str, ...]) -> bool:
    """The request's Origin is the server's own or one the operator allowed; False without an Origin.

    The one rule against cross-site requests: a websocket opened with a session cookie, and every
    request that changes something and carries an Origin (login CSRF, cross-site websocket hijacking).
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin in allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in ("http", "https")
