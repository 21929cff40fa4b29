"""Prescriptions entered or received at a site; the expected product every fill is checked against."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import Prescription, Site
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.barcodes import normalize_ndc
from server.fills.rules import FILL_TYPES
from server.inputs import Body, Date, Field, Int, Nullable, OneOf, Quantity, Text
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
        "ndc": Field(Text(32, 1), description="The expected product's NDC (10 or 11 digits, dashes allowed)"),
        "expected_ndc": Field(Text(32, 1), description="The same as 'ndc' (one of the two is required)"),
        "quantity": Field(Quantity(Decimal(0), Decimal(100000), exclusive_minimum=True), required=True),
        "days_supply": Field(Int(0, 400)),
        "dea_schedule": Field(Nullable(OneOf(("", *DEA_SCHEDULES)))),
        "fill_type": Field(OneOf(FILL_TYPES, "'fill_type' is 'new' or 'refill'.")),
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
        raise InvalidInput(f"'ndc': {exc}") from exc
    out["quantity"] = fields["quantity"]
    out["days_supply"] = fields.get("days_supply", 0)
    out["dea_schedule"] = fields.get("dea_schedule") or None
    out["fill_type"] = fields.get("fill_type", "new")
    return out


class Prescriptions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, actor: Principal, body: dict[str, Any], *, site_id: int | None = None
    ) -> Prescription:
        """A technician enters a prescription for their own site; an admin names the site."""
        fields = parse_prescription(body)
        target = actor.site_id if actor.role is Role.TECHNICIAN else site_id
        if actor.role is Role.PHARMACIST:
            raise Forbidden("Prescriptions are entered at the site.")
        try:
            async with self.db.write() as s:
                if target is None or await s.get(Site, target) is None:
                    raise NotFound("No such site.")
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
                    {"site_id": target, "rx_number": rx.rx_number},
                )
                return rx
        except IntegrityError as exc:
            raise Conflict(f"Rx {fields['rx_number']} exists at this site already.") from exc

    async def list_for(self, actor: Principal, *, limit: int = 200) -> list[Prescription]:
        async with self.db.read() as s:
            q = select(Prescription).order_by(Prescription.id.desc()).limit(limit)
            if actor.role is Role.TECHNICIAN:
                q = q.where(Prescription.site_id == actor.site_id)
            return list((await s.execute(q)).scalars())
