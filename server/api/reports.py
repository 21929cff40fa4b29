"""Reports for administrators and inspectors: the audit chain and its export."""

from __future__ import annotations

import datetime as dt
import io

from aiohttp import web

from server.api.params import Query, accepts, query_param
from server.api.responses import json_response
from server.audit import chain as audit
from server.audit.anchors import AnchorFile
from server.audit.verification import verify_trail
from server.inputs import Date, OneOf, Text, day_range
from server.security import access_log
from server.services import services_of

# Whole UTC days, both inclusive: the export reads up to the day after `to`, so that day must exist.
EXPORT_FROM = Query("from", Date(), "The first day (UTC), YYYY-MM-DD", required=True)
EXPORT_TO = Query("to", Date(), "The last day (UTC), YYYY-MM-DD", required=True)
PATIENT_NAME = Query(
    "patient_name", Text(200, 1), "The patient's name as on the prescriptions", required=True
)
FULL = Query(
    "full",
    OneOf(("true", "false"), "'full' is true or false."),
    "true walks every row from the start instead of from the last checkpoint",
)
PATIENT_DOB = Query("patient_dob", Date(), "The patient's date of birth, YYYY-MM-DD", required=True)


@accepts(query=(FULL,))
async def audit_verify(request: web.Request) -> web.Response:
    """The chain walked after the last checkpoint (every row with full=true), and the anchors."""
    services = services_of(request)
    full = query_param(request, FULL, "false") == "true"
    report = await verify_trail(services.db, AnchorFile(services.config.data_dir), full=full)
    walked, anchored, checkpoint = report.chain, report.anchors, report.checkpoint
    latest = anchored.latest
    return json_response(
        {
            "ok": report.ok,
            "rows": walked.rows,
            "first_broken_id": walked.first_broken_id,
            "problem": report.problem,
            "verified": {"from_id": walked.first_id, "to_id": walked.last_id},
            "checkpoint": (
                {"id": checkpoint.id, "at": checkpoint.at.isoformat()} if checkpoint is not None else None
            ),
            "anchors": {
                "ok": anchored.ok,
                "count": anchored.anchors,
                "latest": {"id": latest.id, "at": latest.at.isoformat()} if latest else None,
            },
        }
    )


@accepts(query=(PATIENT_NAME, PATIENT_DOB, EXPORT_FROM, EXPORT_TO), json=False)
async def access_report(request: web.Request) -> web.Response:
    """Who read the patient's records (fills, prescriptions, photos, recordings), as CSV."""
    name: str = query_param(request, PATIENT_NAME)
    dob: dt.date = query_param(request, PATIENT_DOB)
    start: dt.date = query_param(request, EXPORT_FROM)
    end: dt.date = query_param(request, EXPORT_TO)
    rows = await access_log.access_report(services_of(request).db, name, dob, *day_range(start, end))
    buf = io.StringIO()
    access_log.write_report_csv(rows, buf)
    return web.Response(
        text=buf.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="access-{start}-{end}.csv"'},
    )


@accepts(query=(EXPORT_FROM, EXPORT_TO), json=False)
async def audit_export(request: web.Request) -> web.Response:
    start: dt.date = query_param(request, EXPORT_FROM)
    end: dt.date = query_param(request, EXPORT_TO)
    buf = io.StringIO()
    await audit.export_csv(services_of(request).db, *day_range(start, end), buf)
    return web.Response(
        text=buf.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="audit-{start}-{end}.csv"'},
    )
