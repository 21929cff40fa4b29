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
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.data_entry.rules import CORRECTABLE, VerificationState
from server.data_entry.service import announce, initial_state
from server.db.conditional import update_if
from server.db.engine import Database
from server.db.models import (
    DrugPackage,
    DrugProduct,
    Fill,
    Prescription,
    PrescriptionRevision,
    Site,
    utcnow,
)
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.barcodes import format_ndc11, normalize_ndc
from server.fills.lifecycle import FILL_USING_STATES
from server.fills.rules import FILL_TYPES
from server.inputs import Body, Date, Field, Int, Nullable, OneOf, Quantity, Text
from server.keyset import Keyset, Page
from server.pharmacy_systems.received import Issue, MessageRejected, Received
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

# A date of birth this far back is a typo (0950 for 1950): no one living was born before it.
OLDEST_AGE_YEARS = 130


@dataclass(frozen=True)
class DateOfBirth(Date):
    """A patient's date of birth: not after today, nor OLDEST_AGE_YEARS before it. Either would be a typo
    that reaches the label and, through the patient's name and date of birth, their history of fills.
    Today is the UTC date, which is never behind a US site's own."""

    def parse(self, value: object, name: str) -> dt.date:
        born = super().parse(value, name)
        today = dt.datetime.now(dt.UTC).date()
        earliest = dt.date(today.year - OLDEST_AGE_YEARS, 1, 1)
        if not earliest <= born <= today:
            raise InvalidInput(
                f"'{name}' must be a date of birth from {earliest} to today ({today}), not {born}."
            )
        return born

    def schema(self) -> dict[str, Any]:
        # JSON Schema bounds no date by today: said in words, and in extensions a client may read.
        return {
            **super().schema(),
            "description": f"A date of birth: not after today (UTC), nor before January 1 of the year "
            f"{OLDEST_AGE_YEARS} years back",
            "x-latest": "today",
            "x-earliest-years-ago": OLDEST_AGE_YEARS,
        }


# Prescriptions as a site lists them: newest first.
PRESCRIPTIONS_ORDER = Keyset("prescriptions", [(Prescription.id, int)], descending=True)


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
        "patient_dob": Field(DateOfBirth(example="1950-04-30"), required=True),
        "ndc": Field(NDC_TEXT, description="The expected product's NDC (10 or 11 digits, dashes allowed)"),
        "expected_ndc": Field(NDC_TEXT, description="The same as 'ndc' (one of the two is required)"),
        "quantity": Field(Quantity(Decimal(0), Decimal(100000), exclusive_minimum=True), required=True),
        "days_supply": Field(Int(0, 400)),
        "dea_schedule": Field(Nullable(OneOf(("", *DEA_SCHEDULES)))),
        "fill_type": Field(OneOf(FILL_TYPES, "'fill_type' is 'new' or 'refill'.")),
        "refills_authorized": Field(
            REFILLS, description="Refills authorised beyond the first fill (default 0)"
        ),
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
    if fields.get("source"):
        out["source_kind"], out["source_body"] = "csv", fields["source"]
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


async def _reference_check(s: AsyncSession, fields: dict[str, Any]) -> dict[str, Any]:
    """The reference check of an entry (filling in what the reference may), then the refill limits."""
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
    return check


def _shown(value: Any) -> Any:
    """A value as the API shows it (and a revision keeps it): dates as ISO text, quantities as numbers."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _entered(rx: Prescription) -> dict[str, Any]:
    """The correctable fields of a prescription as the API shows them."""
    return {name: _shown(getattr(rx, name)) for name in CORRECTABLE}


# A correction names the version it corrects and any of the entered fields.
CORRECTION = Body(
    {
        **{
            name: Field(f.spec, description=f.description)
            for name, f in PRESCRIPTION.fields.items()
            if name not in ("rx_number", "fill_type", "source")
        },
        "version": Field(
            Int(1, 2**31 - 1), required=True, description="The prescription's version corrected"
        ),
    },
    description="Only the fields sent change; the rx number and the source stay.",
)


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
                return Stored(await self._insert(s, actor, target, fields), created=True)
        except IntegrityError as exc:
            raise Conflict(f"Rx {fields['rx_number']} exists at this site already.") from exc

    async def _insert(
        self,
        s: AsyncSession,
        actor: Principal,
        site_id: int,
        fields: dict[str, Any],
        action: str = "prescription.created",
    ) -> Prescription:
        """Checks the fields against the drug reference (filling in what it may) and the refill limits,
        then stores the prescription, audits it and, where the site requires it, puts it in the PV1
        queue."""
        site = await s.get(Site, site_id)
        assert site is not None
        check = await _reference_check(s, fields)
        now = utcnow()
        state = initial_state(site)
        rx = Prescription(
            site_id=site_id,
            reference_check=check,
            verification_state=state,
            awaiting_since=now if state == VerificationState.AWAITING else None,
            version=1,
            **fields,
        )
        s.add(rx)
        await s.flush()
        await audit.append(
            self.db,
            s,
            actor,
            action,
            "prescription",
            rx.id,
            {"site_id": site_id, "rx_number": rx.rx_number, "source": rx.source_kind},
        )
        if state == VerificationState.AWAITING:
            await announce(self.db, s, actor, "prescription.awaiting_verification", rx, site)
        return rx

    async def correct(self, actor: Principal, rx_id: int, body: dict[str, Any]) -> Prescription:
        """The site corrects a prescription's entry (after a return, or any time no fill of it is open):
        a new version, checked as at entry, with each change's old and new value kept; where the site
        requires PV1 it waits for verification again, a verified one too."""
        if actor.role is not Role.TECHNICIAN:
            raise Forbidden("Prescriptions are corrected at the site.")
        version = CORRECTION.parse(body)["version"]
        async with self.db.write() as s:
            row = (
                await s.execute(
                    select(Prescription, Site)
                    .join(Site, Site.id == Prescription.site_id)
                    .where(Prescription.id == rx_id)
                )
            ).first()
            if row is None or row.Site.id != actor.site_id:
                raise NotFound("No such prescription at this site.")
            rx: Prescription = row.Prescription
            site: Site = row.Site
            if rx.version != version:
                raise Conflict(
                    "The prescription changed since you read it; read it again.",
                    code="stale_version",
                    version=rx.version,
                    your_version=version,
                )
            open_fills = (
                await s.execute(
                    select(func.count()).where(
                        Fill.prescription_id == rx.id, Fill.state.in_(("queued", "in_review"))
                    )
                )
            ).scalar_one()
            if open_fills:
                raise Conflict(
                    "A fill of this prescription waits for verification; it cannot be corrected now.",
                    code="fill_open",
                )
            before = _entered(rx)
            merged = {
                **before,
                **{k: v for k, v in body.items() if k != "version"},
                "rx_number": rx.rx_number,
            }
            merged.pop("expected_ndc", None)
            merged["ndc"] = body.get("ndc", body.get("expected_ndc", rx.expected_ndc))
            fields = parse_prescription(merged)
            fields.pop("rx_number")
            check = await _reference_check(s, fields)
            after = {name: _shown(fields.get(name)) for name in CORRECTABLE}
            changes = {
                name: {"old": before[name], "new": after[name]}
                for name in CORRECTABLE
                if before[name] != after[name]
            }
            if not changes:
                raise InvalidInput("The correction changes nothing.", code="no_change")
            state = initial_state(site)
            now = utcnow()
            previous = rx.verification_state
            values: dict[str, Any] = {name: fields[name] for name in CORRECTABLE if name in fields}
            values.update(
                reference_check=check,
                verification_state=state,
                awaiting_since=now if state == VerificationState.AWAITING else rx.awaiting_since,
                claimed_by=None,
                lease_expires_at=None,
                version=rx.version + 1,
            )
            if not await update_if(s, rx, [Prescription.version == version], values):
                raise Conflict(
                    "The prescription changed since you read it; read it again.", code="stale_version"
                )
            revision = PrescriptionRevision(
                prescription_id=rx.id,
                version=rx.version,
                edited_by=actor.user_id,
                changes=changes,
                previous_state=previous,
                edited_at=now,
            )
            s.add(revision)
            await s.flush()
            digest = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()
            await announce(
                self.db,
                s,
                actor,
                "prescription.corrected",
                rx,
                site,
                {"previous_state": previous},
                # The values are patient data: they stay in the revision; the chain seals its digest.
                audit_only={"revision_id": revision.id, "fields": sorted(changes), "changes_sha256": digest},
                at=now,
            )
            return rx

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
        assert actor.site_id is not None
        fields.update(source_kind=kind, source_id=item.source_id, source_body=original, source_digest=digest)
        try:
            rx = await self._insert(s, actor, actor.site_id, fields, "prescription.received")
        except InvalidInput as exc:
            # The drug reference contradicts the message, or a refill limit: named in the sender's terms.
            where = item.elements.get(exc.detail.get("field") or "", "MedicationRequest")
            raise MessageRejected([Issue("business-rule", exc.message, where)]) from None
        return Stored(rx, created=True)

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

    async def list_for(
        self,
        actor: Principal,
        *,
        rx_number: str | None = None,
        after: tuple[Any, ...] | None = None,
        limit: int = 200,
    ) -> Page[Prescription]:
        """A page of the prescriptions the actor may list (a technician: their site's), newest first;
        only those numbered `rx_number` when given (a site's one, however old: a refill's prescription
        is rarely among the newest)."""
        async with self.db.read() as s:
            q = select(Prescription).order_by(*PRESCRIPTIONS_ORDER.order_by()).limit(limit + 1)
            if actor.role is Role.TECHNICIAN:
                q = q.where(Prescription.site_id == actor.site_id)
            if rx_number is not None:
                q = q.where(Prescription.rx_number == rx_number)
            if after is not None:
                q = q.where(PRESCRIPTIONS_ORDER.after(after))
            rows = list((await s.execute(q)).scalars())
        return PRESCRIPTIONS_ORDER.page(rows, limit, lambda rx: (rx.id,))
