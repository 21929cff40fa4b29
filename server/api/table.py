"""The route table type and the guard every route goes through: deny by default."""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.api.responses import json_response
from server.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    Locked,
    NotAuthenticated,
    OutOfStorage,
    StorageUnavailable,
)
from server.operations.storage import object_storage_failure
from server.security.origin import origin_allowed
from server.security.principal import PEOPLE, Principal, Role
from server.services import services_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = "public"
# How far a console session must have got for a route: "ready" for nearly all of them. The others are
# the steps on the way: "second_factor" (after the password), "enrol" (policy wants a second factor
# first), "locked" (idle).
READY = frozenset({"ready"})
ANY_STAGE = frozenset({"ready", "second_factor", "enrol", "locked"})
# Any signed-in person; a site's integration is named on its own routes.
ANY_USER = PEOPLE
PRINCIPAL = web.RequestKey("principal", Principal)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A site's request that failed this way is kept in its outbox and sent again by itself.
OUT_OF_STORAGE_AT_SITE = "The server is out of storage; your fill is safe at the site and will be sent later."
OUT_OF_STORAGE = "The server is out of storage; nothing was changed. Try again in a while."
MEDIA_STORAGE_UNAVAILABLE = (
    "The media storage cannot be reached just now; nothing was lost. Try again shortly."
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    allow: frozenset[Role] | str
    summary: str
    tag: str
    # Extra OpenAPI fields for the operation (request body, parameters, responses).
    doc: dict[str, Any] = field(default_factory=dict)
    # The console session stages the route serves (device tokens have no stages).
    stages: frozenset[str] = READY
    # Sent by the console on its own (lease renewals): not the pharmacist's action, so the idle lock
    # does not count it.
    background: bool = False

    @property
    def is_public(self) -> bool:
        return self.allow == PUBLIC


Authenticator = Callable[[web.Request], Awaitable[Principal | None]]


def error_response(exc: DomainError) -> web.Response:
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.detail:
        body["detail"] = exc.detail
    headers = {}
    if exc.status == 429 and "retry_after" in exc.detail:
        headers["Retry-After"] = str(math.ceil(exc.detail["retry_after"]))
    return json_response(body, status=exc.status, headers=headers)


def refuse_foreign_pages(request: web.Request) -> None:
    """A browser names the page that sent a request (Origin): another site's page changes nothing here.

    Site devices send no Origin; a signed-in browser's requests from the console carry its own."""
    if request.method in SAFE_METHODS or "Origin" not in request.headers:
        return
    if not origin_allowed(request, services_of(request).config.allowed_origins):
        raise Forbidden("Requests from another site's page are refused.", code="bad_origin")


def stage_refusal(stage: str) -> DomainError:
    """What a session that has not got as far as a route needs is told (the console answers each)."""
    if stage == "second_factor":
        return NotAuthenticated("Finish signing in with your second factor.", code="second_factor_required")
    if stage == "enrol":
        return Forbidden(
            "Enrol an authenticator app or a security key before you continue.", code="enrol_second_factor"
        )
    if stage == "ready":
        return Conflict("You are signed in already: this step is done.", code="stage_done")
    return Locked(
        "The console locked after a while without use: unlock it with your password or second factor."
    )


async def admit(route: Route, principal: Principal, request: web.Request) -> None:
    """Lets an authenticated caller through to a route: its role, its session's stage, the CSRF token.
    A person's change counts as their action for the idle lock."""
    assert isinstance(route.allow, frozenset)
    if principal.role not in route.allow:
        raise Forbidden("Your role may not do this.")
    if principal.via == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token", "")
        # Constant time: how long a comparison takes must not tell how much of a guess was right.
        if not principal.csrf_token or not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
            raise Forbidden("Missing or wrong CSRF token.", code="csrf")
    if principal.stage not in route.stages:
        raise stage_refusal(principal.stage)
    request[PRINCIPAL] = principal
    if principal.via == "session" and request.method not in SAFE_METHODS and not route.background:
        await services_of(request).auth.touch(principal)


def guard(route: Route, authenticate: Authenticator) -> Handler:
    """Wraps a handler: authenticates, checks the route's roles and CSRF, maps domain errors."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            refuse_foreign_pages(request)
            if not route.is_public:
                principal = await authenticate(request)
                if principal is None:
                    raise NotAuthenticated("Sign in first.")
                await admit(route, principal, request)
            return await route.handler(request)
        except DomainError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except Exception as exc:
            unreachable = object_storage_failure(exc)
            if unreachable is not None:
                # The operation and the bucket's answer; never a request's data.
                log.error("%s %s: %s", route.method, route.path, unreachable)
                return error_response(StorageUnavailable(MEDIA_STORAGE_UNAVAILABLE))
            failure = services_of(request).storage.failure_in(exc)
            if failure is not None:
                log.error("%s %s: %s", route.method, route.path, failure)
                at_site = PRINCIPAL in request and request[PRINCIPAL].role is Role.TECHNICIAN
                return error_response(OutOfStorage(OUT_OF_STORAGE_AT_SITE if at_site else OUT_OF_STORAGE))
            # The message may carry bound SQL parameters (patient data): log the type and frames only.
            frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
            log.error("unhandled %s in %s %s\n%s", type(exc).__name__, route.method, route.path, frames)
            return json_response(
                {"error": "internal", "message": "Something went wrong on the server."}, status=500
            )

    guarded.__name__ = getattr(route.handler, "__name__", "handler")
    return guarded


# No request body of this API nests deeper; json.loads itself would recurse until Python's limit.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPENERS = frozenset(b"[{")


def nesting_depth(raw: bytes) -> int:
    """How deep the brackets of a JSON text nest (outside strings); cheap when there are few."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS):
        depth += 1 if byte in _OPENERS else -1
        deepest = max(deepest, depth)
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_large(max_bytes: int, size: int) -> web.HTTPRequestEntityTooLarge:
    text = json.dumps(
        {"error": "too_large", "message": f"The request body may be at most {max_bytes} bytes."}
    )
    return web.HTTPRequestEntityTooLarge(
        max_size=max_bytes, actual_size=size, text=text, content_type="application/json"
    )


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"Numbers must be finite: {name} is not a number this API takes.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"The number {text[:40]} is too large.")
    return value


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def json_body(request: web.Request, *, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """The request's JSON object, or a clear 400/413."""
    return (await json_body_as_sent(request, max_bytes=max_bytes))[1]


async def body_as_sent(request: web.Request, *, max_bytes: int) -> bytes:
    """The request's bytes, or a clear 413 past max_bytes (read no further than that)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes, request.content_length)
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise _too_large(max_bytes, len(raw))
    return raw


async def json_body_as_sent(
    request: web.Request, *, max_bytes: int = 256 * 1024
) -> tuple[bytes, dict[str, Any]]:
    """The request's bytes as sent and the JSON object they hold, or a clear 400/413."""
    raw = await body_as_sent(request, max_bytes=max_bytes)
    if nesting_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidInput(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        body = json.loads(raw or b"{}", parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return raw, body
