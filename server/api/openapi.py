"""The OpenAPI 3.1 document, generated from the route table so the two cannot drift.

Parameters and request bodies come from the declarations the handlers read their input with
(server.api.params), so the schema a client is given is the one its requests are checked against.
The application factory builds it from the table it mounts and keeps it under OPENAPI_DOCUMENT, so the
handler that serves it needs nothing of the table (which names that handler).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from server.api.params import DECLARED, PATH_PARAMS, RETURN_MINIMAL, Inputs
from server.api.table import Route

PARAM = re.compile(r"\{(\w+)(?::[^}]+)?\}")
OPENAPI_DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document")


def openapi_path(path: str) -> str:
    return PARAM.sub(r"{\1}", path)


ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A code a program can act on"},
        "message": {"type": "string", "description": "A sentence a person can act on"},
        "detail": {"type": "object", "description": "More, such as the refused field (detail.field)"},
    },
}
# Refusals answer JSON; a path no route matches gets the HTTP library's plain text.
ERRORS = {
    "description": "Refused: the code and a message say why",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
        "text/plain": {"schema": {"type": "string"}},
    },
}

PAGING = (
    "Lists come in pages. A list takes `limit` (rows per page) and `after` (a cursor) and answers with "
    "`next`, the cursor of the following page, or null on the last. Pass `next` back as `after`, with the "
    "same other parameters, for the next page. Pages follow the list's order by key, so no row is listed "
    "twice or skipped while rows are added meanwhile. A cursor is opaque and belongs to its list; any "
    "other value is refused with 400 `bad_cursor`. The websocket `/api/v1/ws?cursor=` replays the events "
    "after the cursor, or, when they are no longer kept or too many, sends "
    '`{"type": "reload", "reason": "behind_window" | "too_far_behind", "cursor": N}`: read the lists '
    "afresh and go on from N."
)


def _parameters(route: Route, inputs: Inputs) -> list[dict[str, Any]]:
    out = [
        {"name": p, "in": "path", "required": True, "schema": PATH_PARAMS[p].schema()}
        for p in PARAM.findall(route.path)
    ]
    for q in inputs.query:
        param = {"name": q.name, "in": "query", "required": q.required, "schema": q.spec.schema()}
        if q.description:
            param["description"] = q.description
        out.append(param)
    if inputs.minimal:
        out.append(
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "examples": [RETURN_MINIMAL]},
                "description": f"`{RETURN_MINIMAL}`: the answer holds the fill as a queue row (its id, "
                "version and lease, no patient data), for a client that reads the record itself; "
                f"such an answer says `Preference-Applied: {RETURN_MINIMAL}`",
            }
        )
    return out


def _operation(route: Route) -> dict[str, Any]:
    inputs = DECLARED.get(route.handler, Inputs(json=False))
    success: dict[str, Any] = {"description": "Created" if inputs.status == 201 else "OK"}
    # What is not JSON (media, tus, CSV, the console, metrics) is described by its route's summary; its
    # success may be 200, 201, 204 or 206.
    status = str(inputs.status) if inputs.json else "2XX"
    if inputs.json:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": f"{route.method.lower()}_{getattr(route.handler, '__name__', 'handler')}",
        "responses": {
            status: success,
            **(
                {"200": {**success, "description": "Made before by the same request"}}
                if inputs.idempotent
                else {}
            ),
            "default": ERRORS,
        },
        "x-roles": "public" if isinstance(route.allow, str) else sorted(r.value for r in route.allow),
    }
    params = _parameters(route, inputs)
    if params:
        op["parameters"] = params
    if inputs.body is not None:
        schema = inputs.body.schema()
        # No body reads as {}: one is needed only when a field is.
        op["requestBody"] = {
            "required": bool(schema.get("required")),
            "content": {"application/json": {"schema": schema}},
        }
    if not route.is_public:
        op["security"] = [{"session": []}, {"deviceToken": []}]
    op.update(route.doc)
    return op


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document describing these routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Telepharmacy remote verification", "version": "1", "description": PAGING},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "tp_session"},
                "deviceToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
