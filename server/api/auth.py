"""Sign-in, sign-out and who am I."""

from __future__ import annotations

from aiohttp import web

from server.api.params import accepts, body_of
from server.api.responses import json_response
from server.api.table import principal_of
from server.errors import UnsupportedMediaType
from server.inputs import Body, Field, Text
from server.security import origin
from server.security.auth import SESSION_COOKIE, USERNAME_MAX
from server.security.passwords import MAX_LENGTH
from server.security.principal import Principal
from server.services import services_of

# The longest username and password there can be: anything longer is refused before it is hashed. The
# largest such body (every character a JSON escape pair) still fits the sign-in's 4 KiB.
SIGN_IN = Body(
    {"username": Field(Text(USERNAME_MAX), required=True), "password": Field(Text(MAX_LENGTH), required=True)}
)


@accepts(body=SIGN_IN)
async def login(request: web.Request) -> web.Response:
    svc = services_of(request)
    # A form or text/plain post is what a foreign page can send without asking (login CSRF).
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Sign in with a JSON body (Content-Type: application/json).")
    body = await body_of(request, SIGN_IN, max_bytes=4096)
    proxies = svc.config.trusted_proxies
    result = await svc.auth.login(body["username"], body["password"], origin.client_address(request, proxies))
    p = result.principal
    resp = json_response(await _session_view(request, p))
    secure = svc.config.secure_cookies
    resp.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        httponly=True,
        samesite="Strict",
        secure=origin.is_https(request, proxies) if secure is None else secure,
        path="/",
        max_age=svc.config.session_hours * 3600,
    )
    return resp


@accepts()
async def logout(request: web.Request) -> web.Response:
    await services_of(request).auth.logout(request.cookies.get(SESSION_COOKIE))
    resp = json_response({"signed_out": True})
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


async def _session_view(request: web.Request, p: Principal) -> dict[str, object]:
    """Who is signed in, how far the session got, and what the console needs to know of its rules."""
    svc = services_of(request)
    return {
        "user": _me(p),
        "csrf_token": p.csrf_token,
        # "ready", or the step the console must take first: "second_factor", "enrol" or "locked".
        "stage": p.stage,
        "second_factors": await svc.auth.methods(p.user_id),
        "second_factor_required": svc.config.second_factor_required,
        "idle_lock_seconds": svc.config.idle_lock_seconds,
    }


@accepts()
async def me(request: web.Request) -> web.Response:
    return json_response(await _session_view(request, principal_of(request)))
