"""Fill handlers: create, submit, read, and the pharmacist's claim, heartbeat, release and decision."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.api.paging import paging
from server.api.params import MINIMAL_APPLIED, Query, accepts, path_param, prefers_minimal, query_param
from server.api.responses import json_response
from server.api.shapes import data_entry_row, detail_view, fill_summary, queue_view, site_fill_view
from server.api.table import json_body, principal_of
from server.data_entry.rules import RETURN_REASONS
from server.data_entry.service import DATA_ENTRY_ORDER
from server.fills.flags import VIDEO_SEEN_FRACTION
from server.fills.lifecycle import Claimed
from server.fills.queries import QUEUE_ORDER, SITE_FILLS_ORDER
from server.fills.records import FillRecord
from server.fills.requests import DECISION, NEW_FILL, DecisionInput, NewFill
from server.fills.rules import ACKNOWLEDGEMENT_REASONS, FLAG_LABELS, PRIORITIES, REJECTION_REASONS, FillState
from server.inputs import ID, OneOf
from server.security import step_up
from server.services import services_of

STATE_FILTER = Query(
    "state", OneOf(tuple(s.value for s in FillState), "Unknown state filter."), "Only fills in this state"
)
SITE_FILTER = Query("site_id", ID, "Only this site's fills")
PRIORITY_FILTER = Query("priority", OneOf(PRIORITIES, "Unknown priority filter."), "Only this priority")
SITE_FILLS_PAGE = paging(SITE_FILLS_ORDER, 100)
QUEUE_PAGE = paging(QUEUE_ORDER, 200)
DATA_ENTRY_PAGE = paging(DATA_ENTRY_ORDER, 200)


def _fill_id(request: web.Request) -> str:
    fill_id: str = path_param(request, "fill_id")
    return fill_id


@accepts(body=NEW_FILL, status=201, idempotent=True)
async def create_fill(request: web.Request) -> web.Response:
    svc = services_of(request)
    new = NewFill.parse(await json_body(request))
    record, created = await svc.fills.create(principal_of(request), new)
    return json_response(detail_view(record), status=201 if created else 200)


@accepts(query=(STATE_FILTER, *SITE_FILLS_PAGE.queries))
async def list_fills(request: web.Request) -> web.Response:
    state = query_param(request, STATE_FILTER, None)
    after, limit = SITE_FILLS_PAGE.read(request)
    page = await services_of(request).queries.site_fills(
        principal_of(request), state=state, after=after, limit=limit
    )
    return json_response({"fills": [site_fill_view(f) for f in page.rows], "next": page.next})


async def _detail(request: web.Request, fill_id: str) -> web.Response:
    """A fill in full for the caller, noted in the access log."""
    svc, actor = services_of(request), principal_of(request)
    record = await svc.queries.detail(actor, fill_id)
    svc.access_log.read(actor, "fill", [record.fill.id])
    return json_response(detail_view(record))


@accepts()
async def get_fill(request: web.Request) -> web.Response:
    return await _detail(request, _fill_id(request))


@accepts()
async def submit_fill(request: web.Request) -> web.Response:
    svc = services_of(request)
    return json_response(detail_view(await svc.fills.submit(principal_of(request), _fill_id(request))))


@accepts(query=(SITE_FILTER, PRIORITY_FILTER, *QUEUE_PAGE.queries))
async def queue(request: web.Request) -> web.Response:
    """A page of the queue's fills; the first page also carries the first page of prescriptions waiting
    for data-entry verification (PV1), whose next pages come from the data-entry queue."""
    site_id = query_param(request, SITE_FILTER, None)
    priority = query_param(request, PRIORITY_FILTER, None)
    after, limit = QUEUE_PAGE.read(request)
    svc, actor = services_of(request), principal_of(request)
    fills = await svc.queries.queue(actor, site_id=site_id, priority=priority, after=after, limit=limit)
    data = queue_view(fills)
    if after is None:
        # The same queue's other kind of work.
        waiting = await svc.data_entry.queue(actor, site_id=site_id, limit=DATA_ENTRY_PAGE.default)
        data["data_entry"] = [data_entry_row(row) for row in waiting.rows]
        data["data_entry_next"] = waiting.next
    data["now"] = dt.datetime.now(dt.UTC).isoformat()
    return json_response(data)


@accepts(query=(SITE_FILTER, *DATA_ENTRY_PAGE.queries))
async def data_entry_queue(request: web.Request) -> web.Response:
    """Prescriptions waiting for data-entry verification (PV1) or in review, oldest first, by pages."""
    site_id = query_param(request, SITE_FILTER, None)
    after, limit = DATA_ENTRY_PAGE.read(request)
    waiting = await services_of(request).data_entry.queue(
        principal_of(request), site_id=site_id, after=after, limit=limit
    )
    return json_response({"data_entry": [data_entry_row(row) for row in waiting.rows], "next": waiting.next})


@accepts(minimal=True)
async def claim_next(request: web.Request) -> web.Response:
    fills = services_of(request).fills
    taken = await fills.claim_next(principal_of(request), whole=not prefers_minimal(request))
    return json_response({"fill": None}) if taken is None else _claimed(request, taken)


@accepts(minimal=True)
async def claim(request: web.Request) -> web.Response:
    fills = services_of(request).fills
    taken = await fills.claim(principal_of(request), _fill_id(request), whole=not prefers_minimal(request))
    return _claimed(request, taken)


def _claimed(request: web.Request, taken: FillRecord | Claimed) -> web.Response:
    if isinstance(taken, Claimed):
        # The fill as a queue row: nothing about the patient was read, so no read is logged.
        return json_response({"fill": fill_summary(taken.fill, taken.site)}, headers=MINIMAL_APPLIED)
    services_of(request).access_log.read(principal_of(request), "fill", [taken.fill.id])
    return json_response({"fill": detail_view(taken)})


@accepts()
async def heartbeat(request: web.Request) -> web.Response:
    svc = services_of(request)
    fill = await svc.fills.heartbeat(principal_of(request), _fill_id(request))
    return json_response(
        {
            "lease_expires_at": fill.lease_expires_at.isoformat() if fill.lease_expires_at else None,
            "version": fill.version,
        }
    )


@accepts()
async def release(request: web.Request) -> web.Response:
    svc = services_of(request)
    fill = await svc.fills.release(principal_of(request), _fill_id(request))
    return json_response({"state": fill.state, "version": fill.version})


@accepts(body=DECISION)
async def decide(request: web.Request) -> web.Response:
    svc = services_of(request)
    decision = DecisionInput.parse(await json_body(request, max_bytes=16384))
    fill, _ = await svc.fills.decide(principal_of(request), _fill_id(request), decision)
    return await _detail(request, fill.id)


@accepts()
async def reasons(request: web.Request) -> web.Response:
    """The decision's vocabularies, how long the console holds a decision for Undo, and how much of a
    video counts as seen."""
    return json_response(
        {
            "reasons": [{"code": k, "label": v} for k, v in REJECTION_REASONS.items()],
            "acknowledgement_reasons": [{"code": k, "label": v} for k, v in ACKNOWLEDGEMENT_REASONS.items()],
            "flag_labels": FLAG_LABELS,
            "return_reasons": [{"code": k, "label": v} for k, v in RETURN_REASONS.items()],
            # Why a decision asks the pharmacist to prove who they are (a fill's record says which apply).
            "step_up_reasons": step_up.REASONS,
            "undo_seconds": services_of(request).config.decision_undo_seconds,
            "video_seen_fraction": VIDEO_SEEN_FRACTION,
        }
    )
