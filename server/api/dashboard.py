"""The dashboard's figures over HTTP: a thin handler over server.reports."""

from __future__ import annotations

from aiohttp import web

from server.api.table import principal_of
from server.errors import InvalidInput
from server.reports.dashboard import Dashboard
from server.services import services_of


async def figures(request: web.Request) -> web.Response:
    """Turnaround, rejections by reason and queue depth for ?days= (default 7)."""
    try:
        days = int(request.query.get("days", "7"))
    except ValueError as exc:
        raise InvalidInput("days must be a whole number.") from exc
    data = await Dashboard(services_of(request).db).figures(principal_of(request), days=days)
    return web.json_response(data)
