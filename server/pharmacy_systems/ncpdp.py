"""NCPDP SCRIPT NewRx: a prescriber's new prescription as XML, read into the fields of a prescription.

The XML is parsed with defusedxml with document type declarations forbidden, so neither an external
entity nor an entity expansion (the "billion laughs") is ever read. Elements are found by their local
names, so SCRIPT 10.6 and 2017071 messages, with or without the namespace, read alike. Coded values
(strength unit, dosage form, DEA schedule) use the NCI thesaurus codes SCRIPT names.
"""

from __future__ import annotations

import xml.etree.ElementTree as StdET  # types only; parsing is defusedxml's
from decimal import Decimal, InvalidOperation
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from server.pharmacy_systems.received import Issue, MessageRejected, Received

# NCI thesaurus codes SCRIPT uses for the units of a strength, a few dosage forms and DEA schedules.
STRENGTH_UNITS = {"C28253": "mg", "C48152": "mcg", "C48155": "g", "C28254": "mL", "C48512": "mg/mL"}
DOSAGE_FORMS = {
    "C42998": "tablet",
    "C25158": "capsule",
    "C42927": "tablet, film coated",
    "C42905": "tablet, extended release",
    "C42916": "capsule, extended release",
    "C42986": "solution",
    "C42994": "suspension",
}
DEA_SCHEDULES = {"C48675": "CII", "C48676": "CIII", "C48677": "CIV", "C48679": "CV"}
NDC_QUALIFIER = "ND"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(node: StdET.Element | None, *path: str) -> StdET.Element | None:
    """The first descendant along the path of local names (each step at any depth below the last)."""
    for name in path:
        if node is None:
            return None
        node = next((e for e in node.iter() if e is not node and _local(e.tag) == name), None)
    return node


def _text(node: StdET.Element | None, *path: str) -> str | None:
    found = _find(node, *path)
    if found is None or found.text is None or not found.text.strip():
        return None
    return found.text.strip()


def parse(raw: bytes) -> StdET.Element:
    """The message's root element; MessageRejected for XML that is not well formed or that declares a
    document type (where entities live)."""
    try:
        root: StdET.Element = SafeET.fromstring(raw, forbid_dtd=True)
    except (defusedxml.DTDForbidden, defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise MessageRejected(
            [Issue("security", "Document type declarations and entities are refused.", "Message")]
        ) from None
    except SafeET.ParseError as exc:
        raise MessageRejected([Issue("structure", f"Not well-formed XML: {exc}.", "Message")]) from None
    return root


def _name(node: StdET.Element | None) -> str | None:
    parts = [_text(node, "FirstName"), _text(node, "MiddleName"), _text(node, "LastName")]
    words = [p for p in parts if p]
    return " ".join(words) or None


def _quantity(value: str | None, where: str, issues: list[Issue]) -> float | None:
    if value is None:
        return None
    try:
        return float(Decimal(value))
    except InvalidOperation:
        issues.append(Issue("invalid", f"{value!r} is not a number.", where))
        return None


def _whole(value: str | None, where: str, issues: list[Issue]) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        issues.append(Issue("invalid", f"{value!r} is not a whole number.", where))
        return None
    return int(value)


def read_new_rx(raw: bytes) -> Received:
    """The NewRx in the message as a prescription body; MessageRejected names what is wrong."""
    root = parse(raw)
    new_rx = _find(root, "NewRx")
    if new_rx is None:
        raise MessageRejected([Issue("not-supported", "Only NewRx messages are taken here.", "Message.Body")])
    issues: list[Issue] = []
    med = _find(new_rx, "MedicationPrescribed")
    prescriber = _find(new_rx, "Prescriber")
    order = _text(root, "PrescriberOrderNumber") or _text(med, "PrescriberOrderNumber")
    code = _find(med, "DrugCoded", "ProductCode")
    ndc = (
        _text(code, "Code")
        if code is not None and _text(code, "Qualifier") in (None, NDC_QUALIFIER)
        else None
    )
    strength_value = _text(med, "Strength", "StrengthValue")
    unit = STRENGTH_UNITS.get(_text(med, "StrengthUnitOfMeasure", "Code") or "", "")
    npi = _text(prescriber, "NPI")
    prescriber_name = _name(_find(prescriber, "Name"))
    body: dict[str, Any] = {
        "rx_number": order,
        "patient_name": _name(_find(new_rx, "Patient", "Name")),
        "patient_dob": _text(new_rx, "Patient", "DateOfBirth", "Date"),
        "prescriber": f"{prescriber_name}, NPI {npi}" if prescriber_name and npi else prescriber_name,
        "drug": _text(med, "DrugDescription"),
        "strength": f"{strength_value} {unit}".strip() if strength_value else None,
        "dosage_form": DOSAGE_FORMS.get(_text(med, "StrengthForm", "Code") or ""),
        "ndc": ndc,
        "quantity": _quantity(_text(med, "Quantity", "Value"), "MedicationPrescribed.Quantity.Value", issues),
        "days_supply": _whole(_text(med, "DaysSupply"), "MedicationPrescribed.DaysSupply", issues),
        "directions": _text(med, "Sig", "SigText"),
        "dea_schedule": DEA_SCHEDULES.get(_text(med, "DEASchedule", "Code") or ""),
        "fill_type": "new",
        "refills_authorized": _whole(
            _text(med, "NumberOfRefills") or _text(med, "Refills", "Value"),
            "MedicationPrescribed.NumberOfRefills",
            issues,
        ),
    }
    if order is None:
        issues.append(
            Issue("required", "The NewRx needs a PrescriberOrderNumber.", "Header.PrescriberOrderNumber")
        )
    if ndc is None:
        issues.append(
            Issue(
                "required",
                "The medication needs its NDC (ProductCode, qualifier ND).",
                "DrugCoded.ProductCode",
            )
        )
    elements = {
        "rx_number": "Header.PrescriberOrderNumber",
        "patient_name": "Patient.HumanPatient.Name",
        "patient_dob": "Patient.HumanPatient.DateOfBirth",
        "prescriber": "Prescriber.NonVeterinarian.Name",
        "drug": "MedicationPrescribed.DrugDescription",
        "strength": "MedicationPrescribed.DrugCoded.Strength",
        "dosage_form": "MedicationPrescribed.DrugCoded.Strength.StrengthForm",
        "ndc": "MedicationPrescribed.DrugCoded.ProductCode",
        "quantity": "MedicationPrescribed.Quantity.Value",
        "days_supply": "MedicationPrescribed.DaysSupply",
        "directions": "MedicationPrescribed.Sig.SigText",
        "refills_authorized": "MedicationPrescribed.NumberOfRefills",
    }
    return Received(
        body={k: v for k, v in body.items() if v is not None},
        # An order number is the prescriber's own: with the prescriber's NPI it names one prescription.
        source_id=f"{npi or ''}|{order or ''}",
        elements=elements,
        issues=issues,
    )
