"""FHIR R4 prescriptions: a MedicationRequest, alone with contained resources or in a Bundle, read into
the fields of a prescription.

The resources are validated with the `fhir.resources` R4B models (R4B reads R4 MedicationRequests, which
did not change between the two); then each MedicationRequest is mapped, its Patient, Practitioner and
Medication found by reference (contained `#id`, a bundle entry's fullUrl, or `Type/id`). Every problem
is an issue naming its element, and nothing is kept unless the whole message is good.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from server.pharmacy_systems.received import Issue, MessageRejected, Received

NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
# UCUM codes and spelled units of a days supply, in days.
DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7}
BUNDLE_TYPES = ("transaction", "batch", "collection", "message")


def _resource_models() -> dict[str, Any]:
    """The models, imported when the first message arrives: they take a third of a second to load."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    return {"Bundle": Bundle, "MedicationRequest": MedicationRequest}


def _expression(root: str, loc: tuple[Any, ...]) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(body: dict[str, Any], expected: str) -> Any:
    """The body as a FHIR model of the expected type (or either for the base URL); issues otherwise."""
    kind = str(body.get("resourceType"))
    models = _resource_models()
    allowed = ("Bundle", "MedicationRequest") if expected == "any" else (expected,)
    if kind not in allowed:
        raise MessageRejected(
            [
                Issue(
                    "structure",
                    f"Expected a {' or '.join(allowed)} resource, got {body.get('resourceType')!r}.",
                    "resourceType",
                )
            ]
        )
    from pydantic import ValidationError

    try:
        return models[kind].model_validate(body)
    except ValidationError as exc:
        raise MessageRejected(
            [
                Issue(
                    "invalid" if e["type"] != "missing" else "required", e["msg"], _expression(kind, e["loc"])
                )
                for e in exc.errors()
            ]
        ) from None


@dataclass
class _Context:
    """Resources a reference may point at: the request's contained ones and the bundle's entries."""

    by_ref: dict[str, Any]

    def resolve(self, ref: Any, contained: dict[str, Any]) -> Any:
        if ref is None or not ref.reference:
            return None
        target = str(ref.reference)
        if target.startswith("#"):
            return contained.get(target[1:])
        return self.by_ref.get(target)


def _text(name: Any) -> str:
    """A HumanName as written: its text, else given names and family name."""
    if name.text:
        return str(name.text)
    return " ".join([*(str(g) for g in name.given or []), str(name.family or "")]).strip()


def _codings(concept: Any) -> Iterator[Any]:
    if concept is not None:
        yield from concept.coding or []


def _npi(practitioner: Any) -> str | None:
    for ident in practitioner.identifier or []:
        if ident.system == NPI_SYSTEM and ident.value:
            return str(ident.value)
    return None


def _strength(medication: Any) -> str | None:
    for ingredient in (medication.ingredient or []) if medication is not None else []:
        ratio = ingredient.strength
        if ratio is not None and ratio.numerator is not None and ratio.numerator.value is not None:
            unit = ratio.numerator.unit or ratio.numerator.code or ""
            return f"{_plain(ratio.numerator.value)} {unit}".strip()
    return None


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


def _days(duration: Any, where: str, issues: list[Issue]) -> int | None:
    if duration is None or duration.value is None:
        return None
    unit = str(duration.code or duration.unit or "d").lower()
    if unit not in DAYS:
        issues.append(Issue("invalid", f"A days supply is given in days or weeks, not {unit!r}.", where))
        return None
    return int(Decimal(duration.value) * DAYS[unit])


def _map(request: Any, where: str, context: _Context) -> Received:
    """One MedicationRequest as a prescription body, with the element each field came from."""
    issues: list[Issue] = []
    contained = {str(r.id): r for r in request.contained or [] if r.id}
    patient = context.resolve(request.subject, contained)
    practitioner = context.resolve(request.requester, contained)
    medication = context.resolve(request.medicationReference, contained)
    concept = request.medicationCodeableConcept or (medication.code if medication is not None else None)
    ident = next((i for i in request.identifier or [] if i.value), None)
    if ident is None:
        issues.append(
            Issue("required", "The prescription needs an identifier (its Rx number).", f"{where}.identifier")
        )
    if patient is None or patient.get_resource_type() != "Patient":
        issues.append(Issue("required", "subject must reference the Patient.", f"{where}.subject"))
        patient = None
    if practitioner is None or practitioner.get_resource_type() != "Practitioner":
        issues.append(Issue("required", "requester must reference the Practitioner.", f"{where}.requester"))
        practitioner = None
    ndc = next((str(c.code) for c in _codings(concept) if c.system == NDC_SYSTEM and c.code), None)
    if ndc is None:
        issues.append(
            Issue("required", f"The medication needs an NDC coding ({NDC_SYSTEM}).", f"{where}.medication")
        )
    rxnorm = next((str(c.code) for c in _codings(concept) if c.system == RXNORM_SYSTEM and c.code), None)
    drug = (concept.text if concept is not None and concept.text else None) or next(
        (str(c.display) for c in _codings(concept) if c.display), None
    )
    dispense = request.dispenseRequest
    quantity = dispense.quantity.value if dispense is not None and dispense.quantity is not None else None
    body: dict[str, Any] = {
        "rx_number": str(ident.value) if ident is not None else None,
        "patient_name": _text(patient.name[0]) if patient is not None and patient.name else None,
        "patient_dob": patient.birthDate.isoformat() if patient is not None and patient.birthDate else None,
        "prescriber": _prescriber(practitioner),
        "drug": drug,
        "strength": _strength(medication),
        "dosage_form": _form(medication),
        "ndc": ndc,
        "quantity": float(quantity) if quantity is not None else None,
        "days_supply": _days(
            dispense.expectedSupplyDuration if dispense else None,
            f"{where}.dispenseRequest.expectedSupplyDuration",
            issues,
        ),
        "directions": " ".join(str(d.text) for d in request.dosageInstruction or [] if d.text) or None,
        "fill_type": "new",
    }
    if dispense is not None and dispense.numberOfRepeatsAllowed is not None:
        body["refills_authorized"] = int(dispense.numberOfRepeatsAllowed)
    source_id = f"{ident.system or ''}|{ident.value}" if ident is not None else ""
    elements = {
        "rx_number": f"{where}.identifier",
        "patient_name": "Patient.name",
        "patient_dob": "Patient.birthDate",
        "prescriber": "Practitioner.name",
        "drug": f"{where}.medication",
        "strength": "Medication.ingredient.strength",
        "dosage_form": "Medication.form",
        "ndc": f"{where}.medication (coding system {NDC_SYSTEM})",
        "quantity": f"{where}.dispenseRequest.quantity",
        "days_supply": f"{where}.dispenseRequest.expectedSupplyDuration",
        "directions": f"{where}.dosageInstruction.text",
        "refills_authorized": f"{where}.dispenseRequest.numberOfRepeatsAllowed",
    }
    extra = {"rxnorm": rxnorm} if rxnorm else {}
    return Received(
        body={k: v for k, v in body.items() if v is not None},
        source_id=source_id,
        elements=elements,
        issues=issues,
        extra=extra,
    )


def _prescriber(practitioner: Any) -> str | None:
    if practitioner is None or not practitioner.name:
        return None
    npi = _npi(practitioner)
    name = _text(practitioner.name[0])
    return f"{name}, NPI {npi}" if npi else name


def _form(medication: Any) -> str | None:
    if medication is None or medication.form is None:
        return None
    form = medication.form
    return (
        str(form.text) if form.text else next((str(c.display) for c in form.coding or [] if c.display), None)
    )


def read_message(body: dict[str, Any], expected: str) -> tuple[str, list[Received]]:
    """The message's kind ("Bundle" or "MedicationRequest") and each prescription in it.
    MessageRejected names every problem."""
    model = validate(body, expected)
    if model.get_resource_type() == "MedicationRequest":
        return "MedicationRequest", [_map(model, "MedicationRequest", _Context({}))]
    if model.type not in BUNDLE_TYPES:
        raise MessageRejected(
            [Issue("not-supported", f"Bundle type {model.type!r} is not taken.", "Bundle.type")]
        )
    by_ref: dict[str, Any] = {}
    for entry in model.entry or []:
        if entry.resource is None:
            continue
        if entry.fullUrl:
            by_ref[str(entry.fullUrl)] = entry.resource
        if entry.resource.id:
            by_ref[f"{entry.resource.get_resource_type()}/{entry.resource.id}"] = entry.resource
    context = _Context(by_ref)
    out = []
    for i, entry in enumerate(model.entry or []):
        if entry.resource is not None and entry.resource.get_resource_type() == "MedicationRequest":
            out.append(_map(entry.resource, f"Bundle.entry[{i}].resource", context))
    if not out:
        raise MessageRejected([Issue("required", "The Bundle holds no MedicationRequest.", "Bundle.entry")])
    return "Bundle", out
