"""PV1 handlers: a prescription's data-entry view, the pharmacist's claim, heartbeat, release and
verification, and the site's correction."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from server.api.params import accepts, path_param
from server.api.responses import json_response
from server.api.shapes import data_entry_view, prescription_view
from server.api.table import json_body, principal_of
from server.data_entry.rules import OUTCOMES, RETURN_REASONS
from server.data_entry.service import VerificationInput
from server.data_entry.source import COMPARED, message_fields
from server.db.models import Prescription
from server.errors import InvalidInput
from server.inputs import INT32_MAX, Body, Field, Int, ListOf, Nullable, OneOf, Text
from server.prescriptions import CORRECTION
from server.services import services_of

MAX_NOTE = 2000
# More pages than any prescription's original has: the list of those seen is bounded by it.
MAX_ORIGINAL_PAGES = 100


def _rules(d: dict[str, object]) -> None:
    reasons = d.get("reason_codes") or []
    note = str(d.get("note") or "").strip()
    if d["outcome"] == "return" and not reasons:
        raise InvalidInput("A return needs at least one reason code.", code="reason_required")
    if d["outcome"] == "verify" and reasons:
        raise InvalidInput("A verification carries no reason codes.")
    if "other" in reasons and not note:  # type: ignore[operator]
        raise InvalidInput("The reason 'other' needs a note saying what is wrong.", code="note_required")


VERIFICATION = Body(
    {
        "version": Field(Int(0, INT32_MAX), required=True, description="The prescription's version checked"),
        "outcome": Field(OneOf(OUTCOMES, "The outcome must be 'verify' or 'return'."), required=True),
        "reason_codes": Field(
            Nullable(
                ListOf(
                    OneOf(tuple(RETURN_REASONS)),
                    2 * len(RETURN_REASONS),
                    f"Reason codes must come from: {', '.join(RETURN_REASONS)}.",
                )
            )
        ),
        "note": Field(Nullable(Text(MAX_NOTE))),
        "differences_confirmed": Field(
            Nullable(
                ListOf(
                    OneOf(COMPARED),
                    len(COMPARED),
                    f"Confirmed differences must be fields from: {', '.join(COMPARED)}.",
                )
            ),
            description="A verification: each field that differs from the e-prescription, checked",
        ),
        "original_seen": Field(
            Nullable(ListOf(Int(1, INT32_MAX), MAX_ORIGINAL_PAGES, "The original's pages seen: media ids.")),
            description="A verification: the paper original's pages (media ids) that were on screen",
        ),
    },
    check=_rules,
    description="A return needs reason codes (and 'other' a note); a verification has none.",
)


def _rx_id(request: web.Request) -> int:
    rx_id: int = path_param(request, "prescription_id")
    return rx_id


async def _message(request: web.Request, rx: Prescription) -> dict[str, Any] | None:
    """The e-prescription's fields as its message says them (read in a worker); None without one."""
    if rx.source_body is None or rx.source_kind not in ("fhir", "ncpdp"):
        return None
    said: dict[str, Any] | None = await asyncio.get_running_loop().run_in_executor(
        services_of(request).media_executor, message_fields, rx.source_kind, rx.source_body, rx.source_id
    )
    return said


async def _view(request: web.Request, rx_id: int) -> web.Response:
    """The PV1 view of a prescription for the caller, noted in the access log."""
    svc, actor = services_of(request), principal_of(request)
    record = await svc.data_entry.detail(actor, rx_id)
    rx = record.prescription
    said = await _message(request, rx)
    svc.access_log.read(actor, "prescription", [rx.id])
    return json_response(data_entry_view(record, said))


@accepts()
async def get_prescription(request: web.Request) -> web.Response:
    return await _view(request, _rx_id(request))


@accepts(body=CORRECTION)
async def correct_prescription(request: web.Request) -> web.Response:
    svc = services_of(request)
    rx = await svc.prescriptions.correct(principal_of(request), _rx_id(request), await json_body(request))
    used = await svc.prescriptions.fills_used([rx.id])
    return json_response(prescription_view(rx, fills_used=used.get(rx.id, 0)))


@accepts()
async def claim(request: web.Request) -> web.Response:
    rx = await services_of(request).data_entry.claim(principal_of(request), _rx_id(request))
    return await _view(request, rx.id)


@accepts()
async def heartbeat(request: web.Request) -> web.Response:
    rx = await services_of(request).data_entry.heartbeat(principal_of(request), _rx_id(request))
    return json_response(
        {
            "lease_expires_at": rx.lease_expires_at.isoformat() if rx.lease_expires_at else None,
            "version": rx.version,
        }
    )


@accepts()
async def release(request: web.Request) -> web.Response:
    rx = await services_of(request).data_entry.release(principal_of(request), _rx_id(request))
    return json_response({"verification_state": rx.verification_state, "version": rx.version})


@accepts(body=VERIFICATION)
async def verify(request: web.Request) -> web.Response:
    d = VERIFICATION.parse(await json_body(request, max_bytes=16384))
    note = (d.get("note") or "").strip() or None
    svc, actor = services_of(request), principal_of(request)
    # A verification is checked against the message; a return needs neither it nor the worker's reading.
    message = None
    if d["outcome"] == "verify":
        message = await _message(request, await svc.data_entry.source(actor, _rx_id(request)))
    decision = VerificationInput(
        d["version"],
        d["outcome"],
        tuple(dict.fromkeys(d.get("reason_codes") or [])),
        note,
        differences_confirmed=tuple(d.get("differences_confirmed") or ()),
        original_seen=tuple(d.get("original_seen") or ()),
        message=message,
    )
    rx, _ = await svc.data_entry.decide(actor, _rx_id(request), decision)
    return await _view(request, rx.id)
