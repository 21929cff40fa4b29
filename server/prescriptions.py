"""Prescriptions entered or received at a site; the expected product every fill is checked against.

When a drug reference is loaded and knows the prescription's NDC, intake fills in the drug, strength,
dosage form and DEA schedule left out, and checks those entered. A clear contradiction (another drug,
other strengths or units, another kind of form, another schedule) is refused, naming the field and
what the reference says: the technician is at the counter with the prescription in hand and fixes it
in seconds, where the same slip found at verification costs a return trip, and a wrong strength entered
is the error data-entry verification exists to catch. What may be only the reference's age or an
abbreviation (an NDC it does not know or lists as discontinued, a release form the entry does not
spell out) is accepted and flagged in `reference_check` for the pharmacist.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import DrugPackage, DrugProduct, Fill, Prescription, Site, utcnow
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.barcodes import format_ndc11, normalize_ndc
from server.fills.lifecycle import FILL_USING_STATES
from server.fills.rules import FILL_TYPES
from server.inputs import Body, Date, Field, Int, Nullable, OneOf, Quantity, Text
from server.reference.compare import compare_drug, compare_form, compare_strength, describe, strength_text
from server.reference.store import lookup
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
# Filled in from the drug reference when left out (and the NDC is in it).
FROM_REFERENCE = ("drug", "strength", "dosage_form")
# Federal limits on refills: none for Schedule II (21 CFR 1306.12), five for III and IV (1306.22).
MAX_REFILLS = {"CII": 0, "CIII": 5, "CIV": 5}
# NCPDP SCRIPT carries at most 99 refills.
REFILLS = Int(0, 99)


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
                required=name not in FROM_REFERENCE,
                description="Filled in from the drug reference when left out"
                if name in FROM_REFERENCE
                else "",
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
        "refills_authorized": Field(
            REFILLS, description="Refills authorised beyond the first fill (default 0)"
        ),
    },
    check=_one_ndc,
)


def parse_prescription(body: dict[str, Any]) -> dict[str, Any]:
    """Validates a prescription body; raises InvalidInput naming the first bad field."""
    fields = PRESCRIPTION.parse(body)
    out = {name: fields[name] for name in TEXT_FIELDS if name in fields}
    out["patient_dob"] = fields["patient_dob"]
    try:
        out["expected_ndc"] = normalize_ndc(fields.get("ndc", fields.get("expected_ndc", "")))
    except ValueError as exc:
        raise InvalidInput(f"'ndc': {exc}") from exc
    out["quantity"] = fields["quantity"]
    out["days_supply"] = fields.get("days_supply", 0)
    out["dea_schedule"] = fields.get("dea_schedule") or None
    out["fill_type"] = fields.get("fill_type", "new")
    out["refills_authorized"] = fields.get("refills_authorized", 0)
    return out


def check_against_reference(
    fields: dict[str, Any], package: DrugPackage, product: DrugProduct, today: dt.date
) -> dict[str, Any]:
    """Fills in what the entry left out from the reference's package, refuses what contradicts it
    (InvalidInput naming the field and the reference's value); returns the prescription's
    reference_check."""
    info = describe(package, product, today)
    filled: list[str] = []
    flags: list[dict[str, Any]] = []
    reference_values = {
        "drug": product.nonproprietary_name or product.proprietary_name,
        "strength": strength_text(product),
        "dosage_form": (product.dosage_form or "").lower() or None,
    }
    for name in FROM_REFERENCE:
        value = reference_values[name]
        if name not in fields and value:
            fields[name] = value[: TEXT_FIELDS[name]]
            filled.append(name)
    named = f"NDC {info['ndc11']}"
    entered = {name: fields[name] for name in FROM_REFERENCE if name in fields and name not in filled}
    if "drug" in entered and not compare_drug(entered["drug"], product):
        _disagree("drug", entered["drug"], reference_values["drug"] or "", named)
    if "strength" in entered and not compare_strength(entered["strength"], product):
        _disagree("strength", entered["strength"], reference_values["strength"] or "", named)
    if "dosage_form" in entered:
        same_kind, unsaid = compare_form(entered["dosage_form"], product)
        if not same_kind:
            _disagree("dosage_form", entered["dosage_form"], product.dosage_form or "", named)
        if unsaid:
            flags.append({"code": "release_form_not_entered", "reference": product.dosage_form})
    _check_schedule(fields, product.dea_schedule, named, filled, flags)
    if info["discontinued"]:
        flags.append({"code": "discontinued", "end_marketing_date": info["end_marketing_date"]})
    if info["exclude_flag"]:
        flags.append({"code": "excluded", "exclude_flag": info["exclude_flag"]})
    return {
        "status": "flagged" if flags else "agrees",
        "reference": info,
        "filled_in": filled,
        "flags": flags,
    }


def _check_schedule(
    fields: dict[str, Any], reference: str | None, named: str, filled: list[str], flags: list[dict[str, Any]]
) -> None:
    schedule = reference if reference in DEA_SCHEDULES else None
    entered = fields["dea_schedule"]
    if entered is None and schedule:
        fields["dea_schedule"] = schedule
        filled.append("dea_schedule")
    elif entered != schedule and entered is not None:
        # A state may schedule a drug more strictly than federal law (gabapentin is Schedule V in
        # several), never less: a stricter entry is flagged, a looser one refused.
        if _strictness(entered) > _strictness(schedule):
            _disagree("dea_schedule", entered, schedule or "none", named)
        flags.append({"code": "schedule_stricter_than_reference", "reference": schedule})


def _strictness(schedule: str | None) -> int:
    """0 for Schedule II (the strictest a prescription can be) up to 4 for none."""
    return DEA_SCHEDULES.index(schedule) if schedule in DEA_SCHEDULES else len(DEA_SCHEDULES)


def _disagree(name: str, entered: str, reference: str, named: str) -> None:
    raise InvalidInput(
        f"'{name}' disagrees with the drug reference: {named} is {reference!r}, not {entered!r}. "
        "Correct the entry or the NDC.",
        code="reference_disagrees",
        field=name,
        entered=entered,
        reference=reference,
    )


def _check_refills(fields: dict[str, Any]) -> None:
    limit = MAX_REFILLS.get(fields["dea_schedule"] or "")
    if limit is not None and fields["refills_authorized"] > limit:
        raise InvalidInput(
            f"'refills_authorized': a Schedule {fields['dea_schedule'][1:]} prescription may carry "
            f"at most {limit} refills.",
            code="too_many_refills",
        )


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
                found = await lookup(s, [fields["expected_ndc"]])
                known = found.packages.get(fields["expected_ndc"])
                if known is not None:
                    check = check_against_reference(fields, *known, utcnow().date())
                elif found.loaded:
                    check = {
                        "status": "flagged",
                        "reference": None,
                        "filled_in": [],
                        "flags": [{"code": "unknown_ndc", "ndc11": format_ndc11(fields["expected_ndc"])}],
                    }
                else:
                    check = {"status": "no_reference", "reference": None, "filled_in": [], "flags": []}
                missing = [name for name in FROM_REFERENCE if name not in fields]
                if missing:
                    raise InvalidInput(
                        f"'{missing[0]}' is required: the drug reference cannot fill it in "
                        f"({'it does not know this NDC' if found.loaded else 'none is loaded'}).",
                        field=missing[0],
                    )
                _check_refills(fields)
                rx = Prescription(site_id=target, reference_check=check, **fields)
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

    async def fills_used(self, prescription_ids: list[int]) -> dict[int, int]:
        """Per prescription, how many of its fills are used (see server.fills.lifecycle.FILL_USING_STATES)."""
        if not prescription_ids:
            return {}
        async with self.db.read() as s:
            rows = await s.execute(
                select(Fill.prescription_id, func.count())
                .where(Fill.prescription_id.in_(prescription_ids), Fill.state.in_(FILL_USING_STATES))
                .group_by(Fill.prescription_id)
            )
            return {int(pid): int(n) for pid, n in rows.all()}

    async def list_for(self, actor: Principal, *, limit: int = 200) -> list[Prescription]:
        async with self.db.read() as s:
            q = select(Prescription).order_by(Prescription.id.desc()).limit(limit)
            if actor.role is Role.TECHNICIAN:
                q = q.where(Prescription.site_id == actor.site_id)
            return list((await s.execute(q)).scalars())
