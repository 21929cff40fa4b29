"""The compliance view and the controlled-substance log: thin handlers over server.compliance."""

from __future__ import annotations

import datetime as dt
import io

from aiohttp import web

from server.api.params import accepts, path_param, query_param
from server.api.reports import EXPORT_FROM, EXPORT_TO
from server.api.responses import json_response
from server.api.table import principal_of
from server.compliance.controlled import controlled_log, write_log_csv
from server.inputs import day_range
from server.reports.compliance import site_compliance
from server.services import services_of


@accepts()
async def get_site_compliance(request: web.Request) -> web.Response:
    svc = services_of(request)
    site_id: int = path_param(request, "site_id")
    view = await site_compliance(svc.db, svc.compliance, principal_of(request), site_id, svc.fills.clock())
    return json_response(view)


@accepts(query=(EXPORT_FROM, EXPORT_TO), json=False)
async def get_controlled_log(request: web.Request) -> web.Response:
    """The site's controlled-substance fills decided in a range of days, as CSV; each fill listed is
    noted in the access log as read by the caller."""
    svc, actor = services_of(request), principal_of(request)
    site_id: int = path_param(request, "site_id")
    start: dt.date = query_param(request, EXPORT_FROM)
    end: dt.date = query_param(request, EXPORT_TO)
    rows = await controlled_log(svc.db, actor, site_id, *day_range(start, end))
    svc.access_log.read(actor, "fill", [r.fill_id for r in rows])
    buf = io.StringIO()
    write_log_csv(rows, buf)
    return web.Response(
        text=buf.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="controlled-{site_id}-{start}-{end}.csv"'},
    )
