"""Path and query parameters, and request bodies, read through the specs of server.inputs.

Path parameters are typed by name, once, for every route; query parameters and bodies are declared on
the handler that reads them (`accepts`). The OpenAPI document is built from the same declarations, so
what a route is said to take is what it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from server.api.table import Handler, json_body
from server.errors import InvalidInput
from server.inputs import ID, AnyText, Body, Spec, Text, parse_field

T = TypeVar("T")
H = TypeVar("H", bound=Handler)

# Every path parameter of the route table, by name.
PATH_PARAMS: Mapping[str, Spec[Any]] = {
    "consultation_id": ID,
    "media_id": ID,
    "site_id": ID,
    "prescription_id": ID,
    "token_id": ID,
    "factor_id": ID,
    # A fill's id is the UUID its site made; letters, digits and dashes are all an id can hold.
    "fill_id": Text(64, 1, pattern="[0-9A-Za-z-]+", message="'fill_id' must be a fill's id (a UUID)."),
    "username": Text(64, 1),
    "ndc": Text(13, 1, pattern="[0-9-]+", message="'ndc' must be an NDC: 10 digits hyphenated, or 11."),
    # Read by the tus endpoint and the console's assets, which answer 404 to what they do not hold.
    "upload_id": AnyText(),
    "path": AnyText(),
}


@dataclass(frozen=True)
class Query:
    """One query parameter: its name, its spec (read from text) and what it means."""

    name: str
    spec: Spec[Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Inputs:
    """What a handler reads besides its path, and how it answers success."""

    body: Body | None = None
    query: tuple[Query, ...] = ()
    status: int = 200
    # The JSON a success carries, when the handler answers JSON.
    json: bool = True
    # Creating the same thing again answers 200 with what the first request made.
    idempotent: bool = False
    # Answers `Prefer: return=minimal` (RFC 7240) with less than the whole record (prefers_minimal).
    minimal: bool = False


# Handler -> what it declared; read by the OpenAPI document.
DECLARED: dict[Handler, Inputs] = {}


def accepts(
    *,
    body: Body | None = None,
    query: tuple[Query, ...] = (),
    status: int = 200,
    json: bool = True,
    idempotent: bool = False,
    minimal: bool = False,
) -> Callable[[H], H]:
    """Declares a handler's body and query parameters (which it reads with body_of and query_param)."""

    def declare(handler: H) -> H:
        DECLARED[handler] = Inputs(body, query, status, json, idempotent, minimal)
        return handler

    return declare


# The preference a client states for an answer without the record it would read again anyway, and the
# header saying the answer honoured it (RFC 7240).
RETURN_MINIMAL = "return=minimal"
MINIMAL_APPLIED = {"Preference-Applied": RETURN_MINIMAL}


def prefers_minimal(request: web.Request) -> bool:
    """Whether the request's Prefer headers ask for `return=minimal`: preferences are separated by
    commas, may carry parameters after a semicolon, and their names are not case-sensitive."""
    for header in request.headers.getall("Prefer", ()):
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() == "return" and value.strip().strip('"').lower() == "minimal":
                return True
    return False


def path_param(request: web.Request, name: str) -> Any:
    """The named path parameter, checked by its spec."""
    return from_text(PATH_PARAMS[name], request.match_info[name], name)


def query_param(request: web.Request, q: Query, default: Any = None) -> Any:
    """The query parameter, checked by its spec; `default` when it is absent (and not required)."""
    raw = request.query.get(q.name)
    if raw is None:
        if q.required:
            raise InvalidInput(f"'{q.name}' is required.", field=q.name)
        return default
    return from_text(q.spec, raw, q.name)


def from_text(spec: Spec[T], raw: str, name: str) -> T:
    """A parameter's value from its text: a number spec reads a numeral, others take the text itself."""
    parse_text: Callable[[str, str], T] | None = getattr(spec, "parse_text", None)
    if parse_text is None:
        return parse_field(spec, raw, name)
    try:
        return parse_text(raw, name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, code=exc.code, field=name) from exc


async def body_of(request: web.Request, body: Body, *, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """The request's JSON object, checked field by field against its declaration."""
    return body.parse(await json_body(request, max_bytes=max_bytes))
