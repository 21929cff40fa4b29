"""The dashboard's figures over HTTP: a thin handler over server.reports."""

from __future__ import annotations

from aiohttp import web

from server.api.params import Query, accepts, query_param
from server.api.responses import json_response
from server.api.table import principal_of
from server.inputs import Int
from server.reports.dashboard import MAX_DAYS, Dashboard
from server.services import services_of

DAYS = Query("days", Int(1, MAX_DAYS), "How many days back (default 7)")


@accepts(query=(DAYS,))
async def figures(request: web.Request) -> web.Response:
    """Turnaround, rejections by reason and queue depth for ?days= (default 7)."""
    days = query_param(request, DAYS, 7)
    data = await Dashboard(services_of(request).db).figures(principal_of(request), days=days)
    return json_response(data)
