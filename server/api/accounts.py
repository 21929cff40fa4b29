"""The administrator's accounts: people (deactivate, reactivate, reset a password or second factors),
sites (suspend, require a second factor) and device and integration tokens (list, revoke)."""

from __future__ import annotations

from aiohttp import web

from server.api.paging import paging
from server.api.params import accepts, body_of, path_param
from server.api.responses import json_response
from server.api.shapes import site_view, user_view
from server.api.table import principal_of
from server.errors import InvalidInput
from server.inputs import Body, Field, Flag, OneOf, Text
from server.keyset import MAX_LIMIT
from server.security.auth import TOKENS_ORDER
from server.services import services_of

ACTIVE = Body({"active": Field(Flag(), required=True, description="false deactivates, true reactivates")})
NEW_PASSWORD = Body({"password": Field(Text(1024, 1), required=True)})
SITE_STATUS = Body(
    {
        "status": Field(OneOf(("active", "suspended"))),
        "require_second_factor": Field(
            Flag(), description="Its fills are decided only by pharmacists who proved a second factor"
        ),
    }
)


# The list was a whole list: a page holds as many as a page may by default.
TOKENS_PAGE = paging(TOKENS_ORDER, MAX_LIMIT)


@accepts(query=TOKENS_PAGE.queries)
async def list_tokens(request: web.Request) -> web.Response:
    after, limit = TOKENS_PAGE.read(request)
    page = await services_of(request).auth.tokens(after=after, limit=limit)
    return json_response({"tokens": page.rows, "next": page.next})


@accepts(body=ACTIVE)
async def set_user_active(request: web.Request) -> web.Response:
    body = await body_of(request, ACTIVE)
    user = await services_of(request).directory.set_user_active(
        principal_of(request), path_param(request, "username"), body["active"]
    )
    return json_response(user_view(user))


@accepts(body=NEW_PASSWORD)
async def reset_password(request: web.Request) -> web.Response:
    body = await body_of(request, NEW_PASSWORD)
    await services_of(request).directory.reset_password(
        principal_of(request), path_param(request, "username"), body["password"]
    )
    return json_response({"password_reset": True, "sessions_ended": True})


@accepts()
async def reset_second_factors(request: web.Request) -> web.Response:
    svc = services_of(request)
    removed = await svc.auth.factors.reset(principal_of(request), path_param(request, "username"))
    return json_response({"removed": removed})


@accepts(body=SITE_STATUS)
async def set_site_status(request: web.Request) -> web.Response:
    site_id = path_param(request, "site_id")
    body = await body_of(request, SITE_STATUS)
    if not body:
        raise InvalidInput("Give a status, require_second_factor or both.")
    site = await services_of(request).directory.set_site_status(
        principal_of(request),
        site_id,
        body.get("status"),
        require_second_factor=body.get("require_second_factor"),
    )
    return json_response(site_view(site))
