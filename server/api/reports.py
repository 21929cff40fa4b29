"""Reports for administrators and inspectors: the audit chain and its export."""

from __future__ import annotations

import datetime as dt
import io

from aiohttp import web

from server.audit import chain as audit
from server.errors import InvalidInput
from server.services import services_of


async def audit_verify(request: web.Request) -> web.Response:
    report = await audit.verify(services_of(request).db)
    return web.json_response(
        {
            "ok": report.ok,
            "rows": report.rows,
            "first_broken_id": report.first_broken_id,
            "problem": report.problem,
        }
    )


async def audit_export(request: web.Request) -> web.Response:
    try:
        start = dt.date.fromisoformat(request.query["from"])
        end = dt.date.fromisoformat(request.query["to"])
    except (KeyError, ValueError) as exc:
        raise InvalidInput("Give ?from=YYYY-MM-DD&to=YYYY-MM-DD.") from exc
    buf = io.StringIO()
    await audit.export_csv(services_of(request).db, start, end, buf)
    return web.Response(
        text=buf.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="audit-{start}-{end}.csv"'},
    )
