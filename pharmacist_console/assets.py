"""Serves the console's static files. No build step: plain ES modules."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self'; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Named here rather than guessed from the host's mime.types: a module script served with the wrong
# type is refused by the browser (nosniff), and hosts differ.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
}


async def index(request: web.Request) -> web.FileResponse:
    """The console's single page."""
    return web.FileResponse(
        STATIC / "index.html",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", "Content-Type": CONTENT_TYPES[".html"]},
    )


async def static(request: web.Request) -> web.FileResponse:
    """One asset under static/, by a path that cannot leave it."""
    rel = request.match_info["path"]
    try:
        target = (STATIC / rel).resolve()
        found = target.is_relative_to(STATIC.resolve()) and target.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL, for the file system to look up
        found = False
    if not found:
        raise web.HTTPNotFound()
    content_type = CONTENT_TYPES.get(target.suffix.lower())
    if content_type is None:
        raise web.HTTPNotFound()
    # no-cache still lets the browser keep the file: it revalidates (304) instead of downloading again.
    return web.FileResponse(
        target, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", "Content-Type": content_type}
    )
