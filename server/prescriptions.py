"""Prescriptions entered or received at a site; the expected product every fill is checked against."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import Prescription, Site
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.barcodes import normalize_ndc
from server.fills.rules import FILL_TYPES
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


def parse_prescription(body: dict[str, Any]) -> dict[str, Any]:
    """Validates a prescription body; raises InvalidInput naming the first bad field."""
    out: dict[str, Any] = {}
    for name, limit in TEXT_FIELDS.items():
        value = body.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidInput(f"'{name}' is required (text, at most {limit} characters).")
        out[name] = value.strip()
    try:
        out["patient_dob"] = dt.date.fromisoformat(str(body.get("patient_dob")))
    except ValueError as exc:
        raise InvalidInput("'patient_dob' must be a date like 1950-04-30.") from exc
    try:
        out["expected_ndc"] = normalize_ndc(str(body.get("ndc", body.get("expected_ndc", ""))))
    except ValueError as exc:
        raise InvalidInput(f"'ndc': {exc}") from exc
    try:
        out["quantity"] = Decimal(str(body.get("quantity")))
        out["days_supply"] = int(body.get("days_supply", 0))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise InvalidInput("'quantity' and 'days_supply' must be numbers.") from exc
    if not (0 < out["quantity"] <= 100000) or not (0 <= out["days_supply"] <= 400):
        raise InvalidInput("'quantity' or 'days_supply' is out of range.")
    dea = body.get("dea_schedule")
    if dea not in (None, "", *DEA_SCHEDULES):
        raise InvalidInput(f"'dea_schedule' is one of {', '.join(DEA_SCHEDULES)} or empty.")
    out["dea_schedule"] = dea or None
    fill_type = body.get("fill_type", "new")
    if fill_type not in FILL_TYPES:
        raise InvalidInput("'fill_type' is 'new' or 'refill'.")
    out["fill_type"] = fill_type
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
