"""Consultation endpoints: thin handlers over server.consultations."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.api.media import VARIANT, serve_media
from server.api.paging import paging
from server.api.params import accepts, body_of, path_param, query_param
from server.api.responses import json_response
from server.api.shapes import consultation_view
from server.api.table import principal_of
from server.consultations.service import (
    CONSULTATIONS_ORDER,
    END_REASONS,
    KINDS,
    MAX_NOTE,
    ConsultationService,
)
from server.db.models import Consultation, Site
from server.inputs import ID, Body, Field, Flag, Nullable, OneOf, Text
from server.services import services_of

KIND = Field(OneOf(KINDS), description="counsel (the default) or live_look")
FILL_ID = Text(64, 1)
NEW_REQUEST = Body(
    {
        "kind": KIND,
        "fill_id": Field(Nullable(FILL_ID), description="The fill it is about"),
        "prescription_id": Field(Nullable(ID), description="The prescription it is about"),
        "recording_consent": Field(Flag(), description="The patient agreed to a recording"),
    }
)
CONSULTATIONS_PAGE = paging(CONSULTATIONS_ORDER, 200)
NEW_INVITATION = Body({"kind": KIND, "fill_id": Field(FILL_ID, required=True)})
ENDING = Body(
    {
        "reason": Field(OneOf(END_REASONS), description="hangup (the default), cancelled, ..."),
        "note": Field(Nullable(Text(MAX_NOTE)), description="The pharmacist's outcome note"),
    }
)


def _id(request: web.Request) -> int:
    consultation_id: int = path_param(request, "consultation_id")
    return consultation_id


def _view(request: web.Request, c: Consultation, site: Site | None = None) -> dict[str, Any]:
    return consultation_view(c, site, with_note=ConsultationService.may_read_note(c, principal_of(request)))


@accepts(body=NEW_REQUEST, status=201)
async def request_consultation(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.request(principal_of(request), await body_of(request, NEW_REQUEST))
    return json_response(_view(request, c, site), status=201)


@accepts(body=NEW_INVITATION, status=201)
async def invite(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.invite(principal_of(request), await body_of(request, NEW_INVITATION))
    return json_response(_view(request, c, site), status=201)


@accepts()
async def answer(request: web.Request) -> web.Response:
    c, site = await services_of(request).consultations.answer(principal_of(request), _id(request))
    return json_response(_view(request, c, site))


@accepts()
async def consent(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.consent_to_recording(principal_of(request), _id(request))
    return json_response(_view(request, c))


@accepts(query=(VARIANT,), json=False)
async def get_recording(request: web.Request) -> web.StreamResponse:
    """The recording is media of the consultation: served like any media (?variant=poster, Range)."""
    variant = query_param(request, VARIANT)
    media = await services_of(request).consultations.recording_of(principal_of(request), _id(request))
    return await serve_media(request, media.id, variant)


@accepts(query=CONSULTATIONS_PAGE.queries)
async def list_consultations(request: web.Request) -> web.Response:
    after, limit = CONSULTATIONS_PAGE.read(request)
    page = await services_of(request).consultations.list_open(principal_of(request), after=after, limit=limit)
    return json_response(
        {"consultations": [_view(request, c, site) for c, site in page.rows], "next": page.next}
    )


@accepts()
async def get_consultation(request: web.Request) -> web.Response:
    c, site = await services_of(request).consultations.get(principal_of(request), _id(request))
    return json_response(_view(request, c, site))


@accepts()
async def accept(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.accept(principal_of(request), _id(request))
    await svc.signalling.accepted(c)
    return json_response(_view(request, c, site))


@accepts()
async def connected(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.mark_connected(principal_of(request), _id(request))
    return json_response(_view(request, c))


@accepts()
async def reconnected(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.mark_reconnected(principal_of(request), _id(request))
    return json_response(_view(request, c))


@accepts(body=ENDING)
async def end(request: web.Request) -> web.Response:
    body = await body_of(request, ENDING)
    c = await services_of(request).consultations.end(
        principal_of(request), _id(request), body.get("reason", "hangup"), body.get("note")
    )
    return json_response(_view(request, c))
