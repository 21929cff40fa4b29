"""The OpenAPI 3.1 document, generated from the route table so the two cannot drift.

The application factory builds it from the table it mounts and keeps it under OPENAPI_DOCUMENT, so the
handler that serves it needs nothing of the table (which names that handler).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from server.api.table import Route

PARAM = re.compile(r"\{(\w+)(?::[^}]+)?\}")
OPENAPI_DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document")


def openapi_path(path: str) -> str:
    return PARAM.sub(r"{\1}", path)


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": f"{route.method.lower()}_{getattr(route.handler, '__name__', 'handler')}",
        "responses": {"200": {"description": "OK"}},
        "x-roles": "public" if isinstance(route.allow, str) else sorted(r.value for r in route.allow),
    }
    params = PARAM.findall(route.path)
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
        ]
    if not route.is_public:
        op["security"] = [{"session": []}, {"deviceToken": []}]
        op["responses"].update(
            {"401": {"description": "Not signed in"}, "403": {"description": "Role not allowed"}}
        )
    op.update(route.doc)
    return op


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document describing these routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Telepharmacy remote verification", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "tp_session"},
                "deviceToken": {"type": "http", "scheme": "bearer"},
            }
        },
    }
