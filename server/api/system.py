"""Health, metrics, the OpenAPI document, and the websocket endpoint."""

from __future__ import annotations

import asyncio
import functools

from aiohttp import web
from sqlalchemy import text

from server.api.openapi import OPENAPI_DOCUMENT
from server.api.params import Query, accepts, query_param
from server.api.responses import json_response
from server.errors import Forbidden, NotAuthenticated
from server.inputs import INT64_MAX, Int
from server.reference.store import status as reference_status
from server.security.origin import origin_allowed
from server.services import services_of

# An event id of the journal (BIGINT).
CURSOR = Query(
    "cursor",
    Int(0, INT64_MAX),
    "The last event id received: the events after it are replayed, or, when they are no longer kept or "
    "too many, the client is told to reload ({type: reload, reason, cursor})",
)


@accepts()
async def healthz(request: web.Request) -> web.Response:
    """Alive and the database reachable (200); `degraded` when a data path has less free room than
    `min_free_bytes`: reads work, writes may soon fail. `drug_reference` is the loaded NDC Directory's
    summary, or null when none is loaded (product checks then name no products)."""
    svc = services_of(request)
    async with svc.db.read() as s:
        await s.execute(text("SELECT 1"))
    free = await asyncio.to_thread(svc.storage.free_bytes)
    short = sorted(role for role, n in free.items() if n < svc.config.min_free_bytes)
    body = {
        "status": "degraded" if short else "ok",
        "database": "sqlite" if svc.db.is_sqlite else "postgresql",
        "free_bytes": free,
        "drug_reference": await reference_status(svc.db),
        **({"low_on_space": short} if short else {}),
    }
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    svc = services_of(request)
    return await svc.metrics.render(svc.db, svc.storage)


@accepts()
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_DOCUMENT])


@accepts()
async def ice_servers(request: web.Request) -> web.Response:
    servers = [
        {"urls": list(s.urls), **({"username": s.username, "credential": s.credential} if s.username else {})}
        for s in services_of(request).config.ice_servers
    ]
    return json_response({"ice_servers": servers})


@accepts(query=(CURSOR,), json=False)
async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Live events for consoles and sites; ?cursor=N replays what a reconnecting client missed."""
    from server.api.table import principal_of

    svc = services_of(request)
    principal = principal_of(request)
    # Browsers always send Origin; a site device (bearer token, no cookie) is not a browser.
    if principal.via == "session" and not origin_allowed(request, svc.config.allowed_origins):
        raise Forbidden("This origin may not open the live connection.", code="bad_origin")
    cursor = query_param(request, CURSOR, None)
    credential = svc.auth.credential(request)
    # Read afresh rather than from the few seconds' cache of identities, and again while it is open (hub).
    fresh = await svc.auth.reload(credential) if credential is not None else None
    if credential is None or fresh is None:
        raise NotAuthenticated(
            "Your sign-in is no longer valid (signed out, token revoked or account deactivated), "
            "or your site is suspended.",
            code="access_withdrawn",
        )
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=256 * 1024)
    await ws.prepare(request)
    await svc.hub.serve(fresh, ws, cursor, revalidate=functools.partial(svc.auth.reload, credential))
    return ws
