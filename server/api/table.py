"""The route table type and the guard every route goes through: deny by default."""

from __future__ import annotations

import hmac
import json
import logging
import math
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.errors import DomainError, Forbidden, InvalidInput, NotAuthenticated, OutOfStorage
from server.security.origin import origin_allowed
from server.security.principal import Principal, Role
from server.services import services_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = "public"
ANY_USER = frozenset(Role)
PRINCIPAL = web.RequestKey("principal", Principal)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A site's request that failed this way is kept in its outbox and sent again by itself.
OUT_OF_STORAGE_AT_SITE = "The server is out of storage; your fill is safe at the site and will be sent later."
OUT_OF_STORAGE = "The server is out of storage; nothing was changed. Try again in a while."


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
    return web.json_response(body, status=exc.status, headers=headers)


def refuse_foreign_pages(request: web.Request) -> None:
    """A browser names the page that sent a request (Origin): another site's page changes nothing here.

    Site devices send no Origin; a signed-in browser's requests from the console carry its own."""
    if request.method in SAFE_METHODS or "Origin" not in request.headers:
        return
    if not origin_allowed(request, services_of(request).config.allowed_origins):
        raise Forbidden("Requests from another site's page are refused.", code="bad_origin")


def guard(route: Route, authenticate: Authenticator) -> Handler:
    """Wraps a handler: authenticates, checks the route's roles and CSRF, maps domain errors."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            refuse_foreign_pages(request)
            if not route.is_public:
                principal = await authenticate(request)
                if principal is None:
                    raise NotAuthenticated("Sign in first.")
                assert isinstance(route.allow, frozenset)
                if principal.role not in route.allow:
                    raise Forbidden("Your role may not do this.")
                if principal.via == "session" and request.method not in SAFE_METHODS:
                    sent = request.headers.get("X-CSRF-Token", "")
                    # Constant time: how long a comparison takes must not tell how much of a guess was right.
                    if not principal.csrf_token or not hmac.compare_digest(
                        sent.encode(), principal.csrf_token.encode()
                    ):
                        raise Forbidden("Missing or wrong CSRF token.", code="csrf")
                request[PRINCIPAL] = principal
            return await route.handler(request)
        except DomainError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except Exception as exc:
            failure = services_of(request).storage.failure_in(exc)
            if failure is not None:
                log.error(
                    "%s %s: the %s path failed to write: %s (errno %d)",
                    route.method, route.path, failure.role, failure.reason, failure.errno,
                )  # fmt: skip
                at_site = PRINCIPAL in request and request[PRINCIPAL].role is Role.TECHNICIAN
                return error_response(OutOfStorage(OUT_OF_STORAGE_AT_SITE if at_site else OUT_OF_STORAGE))
            # The message may carry bound SQL parameters (patient data): log the type and frames only.
            frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
            log.error("unhandled %s in %s %s\n%s", type(exc).__name__, route.method, route.path, frames)
            return web.json_response(
                {"error": "internal", "message": "Something went wrong on the server."}, status=500
            )

    guarded.__name__ = getattr(route.handler, "__name__", "handler")
    return guarded


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def json_body(request: web.Request, *, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """The request's JSON object, or a clear 400/413."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(raw))
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidInput("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body
