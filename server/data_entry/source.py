"""An e-prescription's fields as its message says them, beside the entry, with every difference named.

The message is kept verbatim (server.prescriptions); here it is read again with the same reader intake
used, so what the pharmacist sees on the source side is exactly what the prescriber's system sent.
Reading a FHIR message validates it with the fhir.resources models (milliseconds): it runs in a worker.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from server.evidence.barcodes import normalize_ndc
from server.pharmacy_systems import ncpdp
from server.pharmacy_systems.fhir import read_message
from server.pharmacy_systems.received import MessageRejected, Received

# The entered fields a message also carries, in the order the PV1 view shows them.
COMPARED = (
    "patient_name",
    "patient_dob",
    "prescriber",
    "drug",
    "strength",
    "dosage_form",
    "expected_ndc",
    "quantity",
    "days_supply",
    "directions",
    "dea_schedule",
    "refills_authorized",
)
_SPACE = re.compile(r"\s+")


def message_fields(kind: str, body: str, source_id: str | None) -> dict[str, Any] | None:
    """The fields the message said for this prescription, or None when it cannot be read again."""
    try:
        if kind == "fhir":
            message = json.loads(body)
            _, items = read_message(message, str(message.get("resourceType", "")))
        elif kind == "ncpdp":
            items = [ncpdp.read_new_rx(body.encode("utf-8"))]
        else:
            return None
    except (MessageRejected, ValueError):
        return None
    item = _item(items, source_id)
    if item is None:
        return None
    fields = dict(item.body)
    if "ndc" in fields:
        fields["expected_ndc"] = fields.pop("ndc")
    return {name: fields.get(name) for name in COMPARED}


def _item(items: list[Received], source_id: str | None) -> Received | None:
    for item in items:
        if item.source_id == source_id:
            return item
    return items[0] if len(items) == 1 else None


def entered_fields(rx: Any) -> dict[str, Any]:
    """The prescription's entered values of the fields a message also carries."""
    return {name: getattr(rx, name) for name in COMPARED}


def differences(entered: dict[str, Any], said: dict[str, Any]) -> list[str]:
    """The fields whose entered value is not what the message said (spacing and letter case aside)."""
    return [
        name
        for name in COMPARED
        if said.get(name) is not None and not _same(name, entered.get(name), said[name])
    ]


def _same(name: str, entered: Any, said: Any) -> bool:
    if entered is None:
        return False
    if name == "expected_ndc":
        try:
            return normalize_ndc(str(entered)) == normalize_ndc(str(said))
        except ValueError:
            return False
    if name in ("quantity", "days_supply", "refills_authorized"):
        try:
            return Decimal(str(entered)) == Decimal(str(said))
        except InvalidOperation:
            return False
    if isinstance(said, dt.date):
        said = said.isoformat()
    return _plain(str(entered)) == _plain(str(said))


def _plain(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()
