"""Counselling handlers: record a telephone counselling or a declined one, hand a fill out, the report."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from aiohttp import web

from server.api.paging import paging
from server.api.params import Query, accepts, body_of, path_param, query_param
from server.api.responses import json_response
from server.api.shapes import counselling_options_view, detail_view, fill_summary, initials
from server.api.table import principal_of
from server.counselling.service import DUE_ORDER, MAX_NOTE, DueFill, NewRecord, Report, ReportRow
from server.fills.rules import DECLINED_BY, CounsellingKind
from server.inputs import ID, Body, Date, Field, Int, Nullable, OneOf, Text, day_range
from server.services import services_of

NEW_RECORD = Body(
    {
        "kind": Field(
            OneOf((CounsellingKind.PHONE, CounsellingKind.DECLINED)),
            required=True,
            description="phone (a pharmacist's telephone call) or declined (recorded at the site)",
        ),
        "declined_by": Field(Nullable(OneOf(DECLINED_BY)), description="Who declined: patient or agent"),
        "note": Field(Nullable(Text(MAX_NOTE)), description="What was said, or why it was declined"),
        "duration_seconds": Field(
            Nullable(Int(0, 86_399)), description="How long the telephone call took, in seconds"
        ),
    }
)
SITE = Query("site_id", ID, "Only this site")
FROM = Query("from", Date(), "The first day (UTC), YYYY-MM-DD", required=True)
TO = Query("to", Date(), "The last day (UTC), YYYY-MM-DD", required=True)
DUE_PAGE = paging(DUE_ORDER, 100)


def _fill_id(request: web.Request) -> str:
    fill_id: str = path_param(request, "fill_id")
    return fill_id


async def _detail(request: web.Request, fill_id: str, status: int = 200) -> web.Response:
    """The fill in full as it is now, noted in the access log."""
    svc, actor = services_of(request), principal_of(request)
    found = await svc.queries.detail(actor, fill_id)
    svc.access_log.read(actor, "fill", [fill_id])
    return json_response(detail_view(found), status=status)


@accepts(body=NEW_RECORD, status=201)
async def record(request: web.Request) -> web.Response:
    svc = services_of(request)
    new = NewRecord.parse(await body_of(request, NEW_RECORD))
    fill, _ = await svc.counselling.record(principal_of(request), _fill_id(request), new)
    return await _detail(request, fill.id, 201)


def _due_row(d: DueFill) -> dict[str, Any]:
    """A fill due counselling as the pharmacist's list shows it: what it is, the patient's initials (the
    name is read from the fill itself, where the access is logged), and what may be recorded."""
    item = fill_summary(d.fill, d.site)
    item.update(
        rx_number=d.rx_number, drug=d.drug, strength=d.strength, patient_initials=initials(d.patient_name)
    )
    item["counselling_options"] = counselling_options_view(d.options)
    return item


@accepts(query=DUE_PAGE.queries)
async def due(request: web.Request) -> web.Response:
    """Approved fills waiting for counselling at the pharmacist's sites, the longest waiting first."""
    after, limit = DUE_PAGE.read(request)
    page = await services_of(request).counselling.due(principal_of(request), after=after, limit=limit)
    return json_response({"fills": [_due_row(d) for d in page.rows], "next": page.next})


@accepts()
async def hand_out(request: web.Request) -> web.Response:
    fill = await services_of(request).fills.hand_out(principal_of(request), _fill_id(request))
    return await _detail(request, fill.id)


async def _report(request: web.Request) -> tuple[Report, dt.date, dt.date]:
    site_id: int | None = query_param(request, SITE, None)
    start: dt.date = query_param(request, FROM)
    end: dt.date = query_param(request, TO)
    svc = services_of(request)
    report = await svc.counselling.report(principal_of(request), site_id, *day_range(start, end))
    return report, start, end


def _row(r: ReportRow) -> dict[str, Any]:
    return {
        "fill_id": r.fill_id,
        "site": r.site_code,
        "rx_number": r.rx_number,
        "at": r.at.isoformat() if r.at else None,
        "declined_by": r.declined_by,
        "technician": r.technician,
    }


@accepts(query=(SITE, FROM, TO))
async def report(request: web.Request) -> web.Response:
    """Fills handed out without a required counselling record (none), and every declined counselling."""
    r, start, end = await _report(request)
    return json_response(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "handed_out": r.handed_out,
            "handed_out_counselling_required": r.handed_out_required,
            "handed_out_without_record": [_row(x) for x in r.without_record],
            "declined": [_row(x) for x in r.declined],
        }
    )


@accepts(query=(SITE, FROM, TO), json=False)
async def report_csv(request: web.Request) -> web.Response:
    """The same report as CSV, one row per fill: what it shows and why it is listed."""
    r, start, end = await _report(request)
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["listed_as", "fill_id", "site", "rx_number", "at", "declined_by", "technician"])
    for listed, rows in (("handed_out_without_record", r.without_record), ("declined", r.declined)):
        for x in rows:
            v = _row(x)
            out.writerow(
                [
                    listed,
                    v["fill_id"],
                    v["site"],
                    v["rx_number"],
                    v["at"],
                    v["declined_by"] or "",
                    v["technician"] or "",
                ]
            )
    out.writerow(
        [
            "summary",
            "",
            "",
            "",
            "",
            "",
            f"handed out {r.handed_out}, "
            f"counselling required {r.handed_out_required}, without record {len(r.without_record)}",
        ]
    )
    return web.Response(
        text=buf.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="counselling-{start}-{end}.csv"'},
    )
