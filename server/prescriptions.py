"""Prescriptions entered or received at a site; the expected product every fill is checked against."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import Prescription, Site
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.barcodes import normalize_ndc
from server.fills.rules import FILL_TYPES
from server.inputs import Body, Date, Field, Int, Nullable, OneOf, Quantity, Text
from server.pharmacy_systems.received import Issue, MessageRejected, Received
from server.security.principal import Principal, Role

TEXT_FIELDS = {
    "rx_number": 32,
    "patient_name": 200,
    "prescriber": 200,
    "drug": 200,
    "strength": 64,
    "dosage_form": 64,
    "directions": 2000,
}
DEA_SCHEDULES = ("CII", "CIII", "CIV", "CV")
MAX_SOURCE_LINE = 16384
# What normalize_ndc reads: the 11-digit billing form, or an NDC10 hyphenated 4-4-2, 5-3-2 or 5-4-1 (or
# 5-4-2 with hyphens).
NDC_TEXT = Text(
    32,
    1,
    pattern=(
        r"\s*(?:[0-9]{11}|[0-9]{4}-[0-9]{4}-[0-9]{2}|[0-9]{5}-[0-9]{3}-[0-9]{2}"
        r"|[0-9]{5}-[0-9]{4}-[0-9]{1,2})\s*"
    ),
    message="An NDC is the 11-digit billing form or the form on the bottle (4-4-2, 5-3-2 or 5-4-1).",
)


def _one_ndc(fields: dict[str, Any]) -> None:
    if "ndc" not in fields and "expected_ndc" not in fields:
        raise InvalidInput("'ndc' is required.")


PRESCRIPTION = Body(
    {
        **{
            name: Field(
                Text(
                    limit, 1, strip=True, message=f"'{name}' is required (text, at most {limit} characters)."
                ),
                required=True,
            )
            for name, limit in TEXT_FIELDS.items()
        },
        "patient_dob": Field(Date(example="1950-04-30"), required=True),
        "ndc": Field(NDC_TEXT, description="The expected product's NDC (10 or 11 digits, dashes allowed)"),
        "expected_ndc": Field(NDC_TEXT, description="The same as 'ndc' (one of the two is required)"),
        "quantity": Field(Quantity(Decimal(0), Decimal(100000), exclusive_minimum=True), required=True),
        "days_supply": Field(Int(0, 400)),
        "dea_schedule": Field(Nullable(OneOf(("", *DEA_SCHEDULES)))),
        "fill_type": Field(OneOf(FILL_TYPES, "'fill_type' is 'new' or 'refill'.")),
        "source": Field(
            Nullable(Text(MAX_SOURCE_LINE, 1)),
            description="The header and line of the pharmacy system's CSV export the prescription was read "
            "from, kept verbatim; the same line sent again is the same prescription.",
        ),
    },
    check=_one_ndc,
)


def parse_prescription(body: dict[str, Any]) -> dict[str, Any]:
    """Validates a prescription body; raises InvalidInput naming the first bad field."""
    fields = PRESCRIPTION.parse(body)
    out = {name: fields[name] for name in TEXT_FIELDS}
    out["patient_dob"] = fields["patient_dob"]
    try:
        out["expected_ndc"] = normalize_ndc(fields.get("ndc", fields.get("expected_ndc", "")))
    except ValueError as exc:
        raise InvalidInput(f"'ndc': {exc}", field="ndc") from exc
    out["quantity"] = fields["quantity"]
    out["days_supply"] = fields.get("days_supply", 0)
    out["dea_schedule"] = fields.get("dea_schedule") or None
    out["fill_type"] = fields.get("fill_type", "new")
    if fields.get("source"):
        out["source_kind"], out["source_body"] = "csv", fields["source"]
    return out


@dataclass(frozen=True)
class Stored:
    prescription: Prescription
    created: bool


class Prescriptions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, actor: Principal, body: dict[str, Any], *, site_id: int | None = None
    ) -> Prescription:
        """A technician enters a prescription for their own site; an admin names the site."""
        return (await self.enter(actor, body, site_id=site_id)).prescription

    async def enter(self, actor: Principal, body: dict[str, Any], *, site_id: int | None = None) -> Stored:
        """create(), saying whether the prescription is new: a line of an export imported again is the
        prescription it made the first time."""
        fields = parse_prescription(body)
        target = actor.site_id if actor.role is Role.TECHNICIAN else site_id
        if actor.role is Role.PHARMACIST:
            raise Forbidden("Prescriptions are entered at the site.")
        try:
            async with self.db.write() as s:
                if target is None or await s.get(Site, target) is None:
                    raise NotFound("No such site.")
                again = await self._same_line(s, target, fields)
                if again is not None:
                    return Stored(again, created=False)
                rx = Prescription(site_id=target, **fields)
                s.add(rx)
                await s.flush()
                await audit.append(
                    self.db,
                    s,
                    actor,
                    "prescription.created",
                    "prescription",
                    rx.id,
                    {"site_id": target, "rx_number": rx.rx_number, "source": rx.source_kind},
                )
                return Stored(rx, created=True)
        except IntegrityError as exc:
            raise Conflict(f"Rx {fields['rx_number']} exists at this site already.") from exc

    @staticmethod
    async def _same_line(s: AsyncSession, site_id: int, fields: dict[str, Any]) -> Prescription | None:
        """The prescription an export's line made before, if this is that line again."""
        if fields.get("source_kind") != "csv":
            return None
        found: Prescription | None = (
            await s.execute(
                select(Prescription).where(
                    Prescription.site_id == site_id,
                    Prescription.rx_number == fields["rx_number"],
                    Prescription.source_kind == "csv",
                    Prescription.source_body == fields["source_body"],
                )
            )
        ).scalar_one_or_none()
        return found

    async def receive(
        self, actor: Principal, kind: str, items: list[Received], original: str
    ) -> list[Stored]:
        """Prescriptions in a message from the site's pharmacy system, kept with the message verbatim:
        all of them or, when any is wrong, none (MessageRejected names every problem). The same
        prescription received again under its identifier is the one stored; a different one under the
        same identifier is refused (409)."""
        if actor.role is not Role.INTEGRATION or actor.site_id is None:
            raise Forbidden("Only a site's pharmacy system sends prescriptions this way.")
        issues: list[Issue] = []
        parsed: list[tuple[Received, dict[str, Any]]] = []
        for item in items:
            issues += item.issues
            try:
                parsed.append((item, parse_prescription(item.body)))
            except InvalidInput as exc:
                field = exc.detail.get("field")
                where = item.elements.get(field or "", "MedicationRequest")
                issues.append(Issue("required" if field not in item.body else "invalid", exc.message, where))
        if issues:
            raise MessageRejected(issues)
        async with self.db.write() as s:
            return [await self._store(s, actor, kind, item, fields, original) for item, fields in parsed]

    async def _store(
        self,
        s: AsyncSession,
        actor: Principal,
        kind: str,
        item: Received,
        fields: dict[str, Any],
        original: str,
    ) -> Stored:
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
        existing = (
            await s.execute(
                select(Prescription).where(
                    Prescription.site_id == actor.site_id,
                    Prescription.source_kind == kind,
                    Prescription.source_id == item.source_id,
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            if existing.source_digest != digest:
                raise MessageRejected(
                    [
                        Issue(
                            "conflict",
                            "A different prescription was received under this identifier before.",
                            item.elements["rx_number"],
                        )
                    ],
                    status=409,
                )
            return Stored(existing, created=False)
        taken = (
            await s.execute(
                select(Prescription.id).where(
                    Prescription.site_id == actor.site_id, Prescription.rx_number == fields["rx_number"]
                )
            )
        ).first()
        if taken is not None:
            raise MessageRejected(
                [
                    Issue(
                        "duplicate",
                        f"Rx {fields['rx_number']} exists at this site already (entered at the counter or "
                        "sent under another identifier).",
                        item.elements["rx_number"],
                    )
                ],
                status=409,
            )
        rx = Prescription(
            site_id=actor.site_id,
            **fields,
            source_kind=kind,
            source_id=item.source_id,
            source_body=original,
            source_digest=digest,
        )
        s.add(rx)
        await s.flush()
        await audit.append(
            self.db,
            s,
            actor,
            "prescription.received",
            "prescription",
            rx.id,
            {"site_id": actor.site_id, "rx_number": rx.rx_number, "source": kind},
        )
        return Stored(rx, created=True)

    async def list_for(self, actor: Principal, *, limit: int = 200) -> list[Prescription]:
        async with self.db.read() as s:
            q = select(Prescription).order_by(Prescription.id.desc()).limit(limit)
            if actor.role is Role.TECHNICIAN:
                q = q.where(Prescription.site_id == actor.site_id)
            return list((await s.execute(q)).scalars())
