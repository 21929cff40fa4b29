"""Serves the console's static files. No build step: plain ES modules."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self' ws: wss:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.FileResponse:
    rel = request.match_info["path"]
    target = (STATIC / rel).resolve()
    if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(target, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})
