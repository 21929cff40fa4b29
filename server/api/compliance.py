"""The compliance view: thin handlers over server.compliance."""

from __future__ import annotations

from aiohttp import web

from server.api.params import accepts, path_param
from server.api.table import principal_of
from server.reports.compliance import site_compliance
from server.services import services_of


@accepts()
async def get_site_compliance(request: web.Request) -> web.Response:
    svc = services_of(request)
    site_id: int = path_param(request, "site_id")
    view = await site_compliance(svc.db, svc.compliance, principal_of(request), site_id, svc.fills.clock())
    return web.json_response(view)
