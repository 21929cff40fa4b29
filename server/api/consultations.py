"""Consultation endpoints: thin handlers over server.consultations."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.api.media import serve_media
from server.api.shapes import consultation_view
from server.api.table import json_body, principal_of
from server.consultations.service import ConsultationService
from server.db.models import Consultation, Site
from server.services import services_of


def _id(request: web.Request) -> int:
    return int(request.match_info["consultation_id"])


def _view(request: web.Request, c: Consultation, site: Site | None = None) -> dict[str, Any]:
    return consultation_view(c, site, with_note=ConsultationService.may_read_note(c, principal_of(request)))


async def request_consultation(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.request(principal_of(request), await json_body(request))
    return web.json_response(_view(request, c, site), status=201)


async def invite(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.invite(principal_of(request), await json_body(request))
    return web.json_response(_view(request, c, site), status=201)


async def answer(request: web.Request) -> web.Response:
    c, site = await services_of(request).consultations.answer(principal_of(request), _id(request))
    return web.json_response(_view(request, c, site))


async def consent(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.consent_to_recording(principal_of(request), _id(request))
    return web.json_response(_view(request, c))


async def get_recording(request: web.Request) -> web.StreamResponse:
    """The recording is media of the consultation: served like any media (?variant=poster, Range)."""
    media = await services_of(request).consultations.recording_of(principal_of(request), _id(request))
    return await serve_media(request, media.id, request.query.get("variant"))


async def list_consultations(request: web.Request) -> web.Response:
    rows = await services_of(request).consultations.list_open(principal_of(request))
    return web.json_response({"consultations": [_view(request, c, site) for c, site in rows]})


async def get_consultation(request: web.Request) -> web.Response:
    c, site = await services_of(request).consultations.get(principal_of(request), _id(request))
    return web.json_response(_view(request, c, site))


async def accept(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.accept(principal_of(request), _id(request))
    await svc.signalling.accepted(c)
    return web.json_response(_view(request, c, site))


async def connected(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.mark_connected(principal_of(request), _id(request))
    return web.json_response(_view(request, c))


async def reconnected(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.mark_reconnected(principal_of(request), _id(request))
    return web.json_response(_view(request, c))


async def end(request: web.Request) -> web.Response:
    body = await json_body(request)
    reason = body.get("reason", "hangup")
    note = body.get("note")
    c = await services_of(request).consultations.end(
        principal_of(request), _id(request), str(reason), note if isinstance(note, str) else None
    )
    return web.json_response(_view(request, c))
