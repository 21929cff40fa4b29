"""Sign-in, sign-out and who am I."""

from __future__ import annotations

from aiohttp import web

from server.api.params import accepts, body_of
from server.api.table import principal_of
from server.inputs import Body, Field, Text
from server.security.auth import SESSION_COOKIE
from server.security.principal import Principal
from server.services import services_of

# Bounded only by the body's size: the password rules are the sign-in's to apply.
SIGN_IN = Body({"username": Field(Text(256), required=True), "password": Field(Text(1024), required=True)})


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


@accepts(body=SIGN_IN)
async def login(request: web.Request) -> web.Response:
    svc = services_of(request)
    body = await body_of(request, SIGN_IN, max_bytes=4096)
    result = await svc.auth.login(body["username"], body["password"], client_address(request))
    p = result.principal
    resp = web.json_response({"user": _me(p), "csrf_token": p.csrf_token})
    resp.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        httponly=True,
        samesite="Strict",
        secure=svc.config.cookies_secure,
        path="/",
        max_age=svc.config.session_hours * 3600,
    )
    return resp


@accepts()
async def logout(request: web.Request) -> web.Response:
    await services_of(request).auth.logout(request.cookies.get(SESSION_COOKIE))
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


def _me(p: Principal) -> dict[str, object]:
    return {
        "id": p.user_id,
        "username": p.username,
        "display_name": p.display_name,
        "role": p.role.value,
        "site_id": p.site_id,
        "licensed_states": sorted(p.licensed_states),
    }


@accepts()
async def me(request: web.Request) -> web.Response:
    p = principal_of(request)
    return web.json_response({"user": _me(p), "csrf_token": p.csrf_token})
