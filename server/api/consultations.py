"""Consultation endpoints: thin handlers over server.consultations."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from pathlib import Path

from aiohttp import web

from server.api.table import json_body, principal_of
from server.consultations.service import public_view
from server.errors import InvalidInput
from server.services import services_of


def _id(request: web.Request) -> int:
    return int(request.match_info["consultation_id"])


async def request_consultation(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.request(principal_of(request), await json_body(request))
    return web.json_response(public_view(c, site), status=201)


async def invite(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.invite(principal_of(request), await json_body(request))
    return web.json_response(public_view(c, site), status=201)


async def answer(request: web.Request) -> web.Response:
    c, site = await services_of(request).consultations.answer(principal_of(request), _id(request))
    return web.json_response(public_view(c, site))


MAX_RECORDING_BYTES = 2 * 1024**3
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _recording_path(request: web.Request, consultation_id: int) -> Path:
    return Path(services_of(request).config.data_dir) / "consultations" / f"{consultation_id}.mp4"


async def consent(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.consent_to_recording(principal_of(request), _id(request))
    return web.json_response(public_view(c))


async def put_recording(request: web.Request) -> web.Response:
    """The site's outbox delivers the recording: an mp4 whose SHA-256 it names in X-Content-SHA256."""
    svc = services_of(request)
    actor, cid = principal_of(request), _id(request)
    expected = request.headers.get("X-Content-SHA256", "").lower()
    if not SHA256.match(expected):
        raise InvalidInput("X-Content-SHA256 (hex) is required.")
    if request.content_length is not None and request.content_length > MAX_RECORDING_BYTES:
        raise InvalidInput("The recording is too large.")
    await svc.consultations.get(actor, cid)  # 404 before reading a body for a consultation one cannot see
    final = _recording_path(request, cid)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".incoming-{cid}-{uuid.uuid4().hex}")
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with tmp.open("wb") as out:
            async for chunk in request.content.iter_chunked(1024 * 1024):
                size += len(chunk)
                if size > MAX_RECORDING_BYTES:
                    raise InvalidInput("The recording is too large.")
                if len(head) < 12:
                    head += chunk[: 12 - len(head)]
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise InvalidInput("The recording's SHA-256 does not match X-Content-SHA256.")
        if head[4:8] != b"ftyp":
            raise InvalidInput("A recording is an mp4 file.")
        c = await svc.consultations.store_recording(actor, cid, expected, size)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return web.json_response(public_view(c))


async def get_recording(request: web.Request) -> web.StreamResponse:
    await services_of(request).consultations.recording_of(principal_of(request), _id(request))
    return web.FileResponse(
        _recording_path(request, _id(request)),
        headers={"Content-Type": "video/mp4", "Cache-Control": "private, no-store"},
    )


async def list_consultations(request: web.Request) -> web.Response:
    rows = await services_of(request).consultations.list_open(principal_of(request))
    return web.json_response({"consultations": [public_view(c, site) for c, site in rows]})


async def get_consultation(request: web.Request) -> web.Response:
    c, site = await services_of(request).consultations.get(principal_of(request), _id(request))
    return web.json_response(public_view(c, site))


async def accept(request: web.Request) -> web.Response:
    svc = services_of(request)
    c, site = await svc.consultations.accept(principal_of(request), _id(request))
    await svc.signalling.accepted(c)
    return web.json_response(public_view(c, site))


async def connected(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.mark_connected(principal_of(request), _id(request))
    return web.json_response(public_view(c))


async def reconnected(request: web.Request) -> web.Response:
    c = await services_of(request).consultations.mark_reconnected(principal_of(request), _id(request))
    return web.json_response(public_view(c))


async def end(request: web.Request) -> web.Response:
    body = await json_body(request)
    reason = body.get("reason", "hangup")
    note = body.get("note")
    c = await services_of(request).consultations.end(
        principal_of(request), _id(request), str(reason), note if isinstance(note, str) else None
    )
    return web.json_response(public_view(c))
