"""What the OpenAPI document says a route takes is what the route checks.

For every route with parameters or a request body, each parameter and each body field in turn gets
values from a pool of awkward candidates (wrong types, every bound and one past it, huge integers, NUL,
lone surrogates, long text, nested objects ...) and values made from its schema. A small JSON Schema
evaluator judges each candidate against the route's published schema; the request is sent with
everything else valid. A value the schema refuses must be refused naming its field (400 with
detail.field), and a value it allows must never be refused as that field.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from server.api.openapi import PARAM, document, openapi_path
from server.api.params import DECLARED
from server.api.routes import ROUTES
from server.api.table import Route
from server.security.principal import Role
from tests.api.world import User, World, build_world

DOC = document(ROUTES)
# What a path segment of the route table matches, when it says (e.g. \d+): other text finds no route.
SEGMENT = re.compile(r"\{(\w+):([^}]+)\}")


def valid(schema: dict[str, Any], value: Any) -> bool:
    """The JSON Schema rules the document uses (type, bounds, lengths, patterns, enum, formats,
    anyOf/allOf, arrays, objects)."""
    if "anyOf" in schema and not any(valid(s, value) for s in schema["anyOf"]):
        return False
    if "allOf" in schema and not all(valid(s, value) for s in schema["allOf"]):
        return False
    kind = schema.get("type")
    if kind is not None and not _is_type(kind, value):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_ok(schema, value)
    if isinstance(value, str):
        return _text_ok(schema, value)
    if isinstance(value, list):
        return len(value) <= schema.get("maxItems", len(value)) and all(
            valid(schema.get("items", {}), v) for v in value
        )
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return all(name in value for name in schema.get("required", ())) and all(
            valid(props[k], v) for k, v in value.items() if k in props
        )
    return True


def _number_ok(schema: dict[str, Any], value: float) -> bool:
    return (
        value >= schema.get("minimum", value)
        and value > schema.get("exclusiveMinimum", value - 1)
        and value <= schema.get("maximum", value)
    )


def _text_ok(schema: dict[str, Any], value: str) -> bool:
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return False
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return False
    return _format_ok(schema, value)


def _is_type(kind: str, value: Any) -> bool:
    if kind == "integer":
        return not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        )
    if kind == "number":
        return not isinstance(value, bool) and isinstance(value, int | float)
    python = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}[kind]
    return isinstance(value, python)


def _format_ok(schema: dict[str, Any], value: str) -> bool:
    fmt = schema.get("format")
    try:
        if fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "date":
            return _date_ok(schema, dt.date.fromisoformat(value))
    except ValueError:
        return False
    return True


def _date_ok(schema: dict[str, Any], day: dt.date) -> bool:
    """The document's extensions for a date bounded by today (a date of birth)."""
    today = dt.datetime.now(dt.UTC).date()
    if schema.get("x-latest") == "today" and day > today:
        return False
    years = schema.get("x-earliest-years-ago")
    return years is None or day >= dt.date(today.year - years, 1, 1)


def example(schema: dict[str, Any]) -> Any:
    """A valid value of the schema (the least one, where it has bounds)."""
    if "anyOf" in schema:
        return example(schema["anyOf"][0])
    if "enum" in schema:
        return schema["enum"][0]
    if "example" in schema:
        return schema["example"]
    kind = schema.get("type")
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "number":
        return schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example(props[name]) for name in schema.get("required", ())}
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date":
        return "2027-06-30"
    return "x" * max(schema.get("minLength", 1), 1)


def candidates(schema: dict[str, Any]) -> Iterator[Any]:
    """Awkward values for a field, and values at and past the schema's own bounds."""
    yield from (None, True, False, 0, -1, 1, 1.5, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**25, -(2**63))
    yield from ("", " ", "x", "NaN", "sNaN", "1e400", "Infinity", "12", "a\x00b", "\ud800", "x" * 5000)
    yield from ([], [{}], [1], ["x"], {}, {"a": 1}, [[[[[]]]]])
    yield from ("2027-06-30", "9999-12-31", "2027-02-30", str(uuid.uuid4()), "ND", "nd_rph")
    for s in [schema, *schema.get("anyOf", [])]:
        for bound in ("minimum", "maximum", "exclusiveMinimum"):
            if bound in s:
                yield from (s[bound], s[bound] - 1, s[bound] + 1)
        for length in ("minLength", "maxLength"):
            if length in s:
                yield from ("y" * s[length], "y" * (s[length] + 1), "y" * max(s[length] - 1, 0))
        if "enum" in s:
            yield from (*s["enum"], s["enum"][0].upper(), s["enum"][0] + " ")
        if "items" in s:
            item = example(s["items"])
            yield from ([item], [item] * s.get("maxItems", 3), [item] * (s.get("maxItems", 3) + 1))
        if s.get("type") in ("string", None):
            yield example(s)


def from_text(schema: dict[str, Any], text: str) -> Any:
    """A parameter's text as the value its schema describes (a numeral is a number)."""
    kinds = {s.get("type") for s in [schema, *schema.get("anyOf", [])]}
    if kinds & {"integer", "number"} and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def as_text(value: Any) -> str | None:
    """How a candidate is written in a URL (None: it cannot be)."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return None
    text = str(value)
    try:
        text.encode()
    except UnicodeEncodeError:
        return None  # a lone surrogate: no URL carries one
    return text


def caller(route: Route) -> str:
    if route.is_public:
        return "anonymous"
    assert isinstance(route.allow, frozenset)
    if "ready" not in route.stages:
        return "nd_rph"  # a step of a console sign-in
    for role, who in (
        (Role.TECHNICIAN, "tech_nd1"),
        (Role.PHARMACIST, "nd_rph"),
        (Role.ADMIN, "admin"),
        (Role.INTEGRATION, "integration"),
    ):
        if role in route.allow:
            return who
    raise AssertionError(route)


def checked_routes() -> list[Route]:
    out = []
    for route in ROUTES:
        op = DOC["paths"][openapi_path(route.path)][route.method.lower()]
        if "requestBody" in op or op.get("parameters"):
            out.append(route)
    return out


@pytest.fixture
async def sqlite_world(tmp_path: Path) -> AsyncIterator[World]:
    w = await build_world(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'agreement.sqlite3'}")
    try:
        yield w
    finally:
        await w.close()


class Probe:
    """Sends one route's request with one value changed; says whether it was refused as that field."""

    def __init__(self, world: World, route: Route) -> None:
        self.world, self.route = world, route
        self.op = DOC["paths"][openapi_path(route.path)][route.method.lower()]
        self.params = {p["name"]: p for p in self.op.get("parameters", [])}
        self.path_values = {
            name: as_text(example(p["schema"])) for name, p in self.params.items() if p["in"] == "path"
        }
        self.path_values.update({"username": "nd_rph", "fill_id": str(uuid.uuid4())})
        self.query = {n: as_text(example(p["schema"])) for n, p in self.params.items() if p["in"] == "query"}
        self.query = {n: v for n, v in self.query.items() if self.params[n]["required"]}
        body = self.op.get("requestBody", {}).get("content", {}).get("application/json", {})
        self.body_schema: dict[str, Any] | None = body.get("schema")
        self.segment = dict(SEGMENT.findall(route.path))

    async def user(self) -> User | None:
        who = caller(self.route)
        if who == "anonymous":
            return None
        if who == "integration":
            token = await self.world.services.auth.issue_integration_token(None, "ND-1", "agreement")
            return User(await self.world.anonymous(), who, token=token)
        if who.startswith("tech_"):
            # A token of its own each time: a probe of the revoke route may revoke the one before.
            token = await self.world.services.auth.issue_device_token(None, who, "agreement")
            return User(await self.world.anonymous(), who, token=token)
        user = await self.world.login(who)
        if "ready" not in self.route.stages:
            await self.world.set_stage(who, min(self.route.stages))
        return user

    async def refused_as(
        self, user: User | None, field: str, *, path: dict[str, str], query: dict[str, str], body: Any
    ) -> bool:
        url = openapi_path(self.route.path)
        for name, text in path.items():
            url = url.replace("{" + name + "}", quote(text, safe=""))
        if query:
            url += "?" + urlencode(query)
        kw: dict[str, Any] = {}
        if body is not None:
            kw = {"data": json.dumps(body), "headers": {"Content-Type": "application/json"}}
        if user is None:
            resp = await (await self.world.anonymous()).request(self.route.method, url, **kw)
        else:
            resp = await user.request(self.route.method, url, **kw)
        assert resp.status < 500, (self.route.method, url, body, resp.status, await resp.text())
        if resp.status == 413:
            return True  # the body is past the route's size: refused before any field is read
        if resp.status != 400 or resp.content_type != "application/json":
            return False
        answer = await resp.json()
        return bool(answer.get("detail", {}).get("field") == field)

    def disagreement(self, name: str, shown: str, schema_refuses: bool) -> str:
        said = (
            "the schema refuses it, the route took it"
            if schema_refuses
            else "the schema allows it, the route refused it"
        )
        return f"{self.route.method} {self.route.path} {name}={shown}: {said}"

    async def check(self) -> list[str]:
        """Every disagreement between the schema and the route, as text."""
        user = await self.user()
        wrong: list[str] = []
        base_body = example(self.body_schema) if self.body_schema is not None else None
        for name, p in self.params.items():
            for value in candidates(p["schema"]):
                text = as_text(value)
                if text is None:
                    continue
                if p["in"] == "path" and (
                    "/" in text or text == "" or not re.fullmatch(self.segment.get(name, "[^/]+"), text)
                ):
                    continue  # no route has such a path
                path = {**self.path_values, **({name: text} if p["in"] == "path" else {})}
                query = {**self.query, **({name: text} if p["in"] == "query" else {})}
                expected = not valid(p["schema"], from_text(p["schema"], text))
                got = await self.refused_as(user, name, path=path, query=query, body=base_body)
                if got != expected:
                    wrong.append(
                        f"{self.route.method} {self.route.path} {name}={text[:40]!r}: schema "
                        f"{'refuses' if expected else 'allows'}, route {'refused' if got else 'took'}"
                    )
        if self.body_schema is None:
            return wrong
        for name, schema in self.body_schema.get("properties", {}).items():
            for value in [*candidates(schema), ...]:
                body = dict(base_body)
                if value is ...:
                    body.pop(name, None)
                    expected = name in self.body_schema.get("required", ())
                else:
                    body[name] = value
                    expected = not valid(schema, value)
                got = await self.refused_as(user, name, path=self.path_values, query=self.query, body=body)
                if got != expected:
                    shown = "absent" if value is ... else repr(value)[:40]
                    wrong.append(
                        f"{self.route.method} {self.route.path} {name}={shown}: schema "
                        f"{'refuses' if expected else 'allows'}, route {'refused' if got else 'took'}"
                    )
        return wrong


def test_every_handler_that_reads_a_body_or_query_declares_it() -> None:
    """A handler that reads input it did not declare would be missing from the document."""
    for route in ROUTES:
        source = inspect.getsource(route.handler)
        declared = DECLARED.get(route.handler)
        if "json_body(" in source or "body_of(" in source:
            assert declared is not None and declared.body is not None, route.path
        if "query_param(" in source or "request.query" in source:
            assert declared is not None and declared.query, route.path


def test_every_route_with_input_is_checked() -> None:
    names = {f"{r.method} {r.path}" for r in checked_routes()}
    for must in (
        "POST /api/v1/fills",
        "POST /api/v1/fills/{fill_id}/decision",
        "POST /api/v1/session",
        "POST /api/v1/prescriptions",
        "GET /api/v1/queue",
        "GET /api/v1/audit/export",
    ):
        assert must in names


@pytest.mark.parametrize("route", checked_routes(), ids=lambda r: f"{r.method} {r.path}")
async def test_a_route_takes_what_its_schema_allows_and_refuses_the_rest(
    sqlite_world: World, route: Route
) -> None:
    assert PARAM.findall(route.path) == [
        p["name"]
        for p in DOC["paths"][openapi_path(route.path)][route.method.lower()].get("parameters", [])
        if p["in"] == "path"
    ]
    wrong = await Probe(sqlite_world, route).check()
    assert wrong == [], "\n".join(wrong)
