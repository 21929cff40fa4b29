"""Prescriptions from a site's pharmacy system: FHIR R4 (a Bundle at the base, or a MedicationRequest)
and NCPDP SCRIPT NewRx.

Each is answered in its own language: FHIR with resources (a refusal is an OperationOutcome naming each
bad element), SCRIPT with a Status or an Error message. A refused message stores nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar
from xml.sax.saxutils import escape

from aiohttp import web

from server.api.params import accepts
from server.api.responses import json_response
from server.api.table import body_as_sent, json_body_as_sent, principal_of
from server.errors import InvalidInput
from server.pharmacy_systems import ncpdp
from server.pharmacy_systems.fhir import read_message
from server.pharmacy_systems.received import Issue, MessageRejected
from server.prescriptions import Stored
from server.services import services_of

T = TypeVar("T")
FHIR_JSON = "application/fhir+json"
# A bundle of a pharmacy's day is far below this; a message above it is refused unread.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def outcome(issues: list[Issue], severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": i.code, "diagnostics": i.diagnostics, "expression": [i.expression]}
            for i in issues
        ],
    }


def _fhir(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(body, status=status, content_type=FHIR_JSON, headers=headers)


async def _in_worker(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(services_of(request).media_executor, fn, *args)


def _location(stored: Stored) -> str:
    return f"MedicationRequest/{stored.prescription.id}"


async def _receive(request: web.Request, expected: str) -> web.Response:
    try:
        raw, body = await json_body_as_sent(request, max_bytes=MAX_MESSAGE_BYTES)
    except InvalidInput as exc:
        return _fhir(outcome([Issue("structure", exc.message, "")]), 400)
    try:
        # Validating a message is CPU work (a few milliseconds for a bundle): done in a media worker,
        # so the event loop goes on serving uploads and decisions meanwhile.
        kind, items = await _in_worker(request, read_message, body, expected)
        stored = await services_of(request).prescriptions.receive(
            principal_of(request), "fhir", items, raw.decode("utf-8")
        )
    except MessageRejected as exc:
        return _fhir(outcome(exc.issues), exc.status)
    created = any(s.created for s in stored)
    if kind == "MedicationRequest":
        resource = {**body, "id": str(stored[0].prescription.id)}
        return _fhir(resource, 201 if created else 200, {"Location": _location(stored[0])})
    # A batch is answered as a batch; a transaction, collection or message as the transaction it was.
    answer = "batch-response" if body.get("type") == "batch" else "transaction-response"
    return _fhir(
        {
            "resourceType": "Bundle",
            "type": answer,
            "entry": [
                {"response": {"status": "201 Created" if s.created else "200 OK", "location": _location(s)}}
                for s in stored
            ],
        },
        201 if created else 200,
    )


@accepts(json=False, status=201)
async def fhir_base(request: web.Request) -> web.Response:
    return await _receive(request, "any")


@accepts(json=False, status=201)
async def fhir_medication_request(request: web.Request) -> web.Response:
    return await _receive(request, "MedicationRequest")


SCRIPT_XML = "application/xml"
SCRIPT_NS = "http://www.ncpdp.org/schema/SCRIPT"


def _script(code: str, description: str, status: int) -> web.Response:
    """A SCRIPT answer: Status 000 (received) or Error 900 (rejected) with what is wrong."""
    element = "Status" if code == "000" else "Error"
    text = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Message xmlns="{SCRIPT_NS}"><Body><{element}>'
        f"<Code>{code}</Code><Description>{escape(description)}</Description></{element}></Body></Message>"
    )
    return web.Response(text=text, status=status, content_type=SCRIPT_XML)


@accepts(json=False, status=201)
async def ncpdp_new_rx(request: web.Request) -> web.Response:
    try:
        raw = await body_as_sent(request, max_bytes=MAX_MESSAGE_BYTES)
        received = await _in_worker(request, ncpdp.read_new_rx, raw)
        (stored,) = await services_of(request).prescriptions.receive(
            principal_of(request), "ncpdp", [received], raw.decode("utf-8", errors="replace")
        )
    except MessageRejected as exc:
        problems = "; ".join(f"{i.expression}: {i.diagnostics}" for i in exc.issues)
        return _script("900", problems, exc.status)
    return _script(
        "000",
        f"Received as prescription {stored.prescription.id}.",
        201 if stored.created else 200,
    )
