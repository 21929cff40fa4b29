"""PV1 handlers: a prescription's data-entry view, the pharmacist's claim, heartbeat, release and
verification, and the site's correction."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.api.params import accepts, path_param
from server.api.responses import json_response
from server.api.shapes import data_entry_view, prescription_view
from server.api.table import json_body, principal_of
from server.data_entry.rules import OUTCOMES, RETURN_REASONS
from server.data_entry.service import VerificationInput
from server.data_entry.source import message_fields
from server.errors import InvalidInput
from server.inputs import INT32_MAX, Body, Field, Int, ListOf, Nullable, OneOf, Text
from server.prescriptions import CORRECTION
from server.services import services_of

MAX_NOTE = 2000


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
    },
    check=_rules,
    description="A return needs reason codes (and 'other' a note); a verification has none.",
)


def _rx_id(request: web.Request) -> int:
    rx_id: int = path_param(request, "prescription_id")
    return rx_id


async def _view(request: web.Request, rx_id: int) -> web.Response:
    """The PV1 view of a prescription for the caller, noted in the access log."""
    svc, actor = services_of(request), principal_of(request)
    record = await svc.data_entry.detail(actor, rx_id)
    rx = record.prescription
    said = None
    if rx.source_body is not None and rx.source_kind in ("fhir", "ncpdp"):
        said = await asyncio.get_running_loop().run_in_executor(
            svc.media_executor, message_fields, rx.source_kind, rx.source_body, rx.source_id
        )
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
    decision = VerificationInput(
        d["version"], d["outcome"], tuple(dict.fromkeys(d.get("reason_codes") or [])), note
    )
    rx, _ = await services_of(request).data_entry.decide(principal_of(request), _rx_id(request), decision)
    return await _view(request, rx.id)
