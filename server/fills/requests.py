"""What a site or a pharmacist asks of a fill, read from a request body and checked against the rules.

Parsing knows the vocabularies (server.fills.rules) and the limits of a request; whether the fill may
change as asked is the lifecycle's to say.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from server.errors import InvalidInput
from server.fills.rules import OUTCOMES, PRIORITIES, REJECTION_REASONS
from server.inputs import ID, INT32_MAX, Body, Field, Int, ListOf, Nullable, OneOf, Quantity, Text, Uuid

MAX_NOTE = 2000
MAX_BARCODES = 10

NEW_FILL = Body(
    {
        "id": Field(
            Uuid("A fill needs an 'id': a UUID made by the site."),
            required=True,
            description="Made by the site; creating the same fill again is idempotent.",
        ),
        "prescription_id": Field(ID, required=True),
        "priority": Field(OneOf(PRIORITIES, f"Priority must be one of {', '.join(PRIORITIES)}.")),
        "barcodes": Field(
            Nullable(
                ListOf(
                    Text(200, 1),
                    MAX_BARCODES,
                    f"Barcodes must be a list of at most {MAX_BARCODES} scanned barcode texts.",
                )
            )
        ),
        "counted_quantity": Field(Nullable(Quantity(Decimal(0), Decimal(100000)))),
        "previous_fill_id": Field(Nullable(Uuid()), description="The rejected fill this one replaces."),
        "override_reason": Field(
            Nullable(
                Text(500, 1, strip=True, message="An override needs a reason of at most 500 characters.")
            ),
            description="Why the site goes on although the product check flagged the stock bottle.",
        ),
    },
    description="A draft fill of a prescription at the caller's site.",
)


def _decision_rules(d: dict[str, Any]) -> None:
    reasons, note = d.get("reason_codes") or [], d.get("note")
    if d["outcome"] == "reject" and not reasons:
        raise InvalidInput("A rejection needs at least one reason code.")
    if d["outcome"] == "approve" and reasons:
        raise InvalidInput("An approval carries no rejection reasons.")
    if "other" in reasons and not (note and note.strip()):
        raise InvalidInput("The reason 'other' needs a note saying what is wrong.")


DECISION = Body(
    {
        "version": Field(Int(0, INT32_MAX), required=True, description="The fill's version decided on."),
        "outcome": Field(OneOf(OUTCOMES, "The outcome must be 'approve' or 'reject'."), required=True),
        "reason_codes": Field(
            Nullable(
                ListOf(
                    OneOf(tuple(REJECTION_REASONS)),
                    4 * len(REJECTION_REASONS),
                    f"Reason codes must come from: {', '.join(REJECTION_REASONS)}.",
                )
            )
        ),
        "note": Field(Nullable(Text(MAX_NOTE))),
    },
    check=_decision_rules,
    description="A rejection needs reason codes (and 'other' a note); an approval has none.",
)


@dataclass(frozen=True)
class NewFill:
    """What a site sends to create a fill; also the body whose digest makes creation idempotent."""

    id: str
    prescription_id: int
    priority: str = "routine"
    barcodes: tuple[str, ...] = ()
    counted_quantity: Decimal | None = None
    previous_fill_id: str | None = None
    override_reason: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> NewFill:
        f = NEW_FILL.parse(body)
        return cls(
            id=f["id"],
            prescription_id=f["prescription_id"],
            priority=f.get("priority", "routine"),
            barcodes=tuple(f.get("barcodes") or ()),
            counted_quantity=f.get("counted_quantity"),
            previous_fill_id=f.get("previous_fill_id"),
            override_reason=f.get("override_reason"),
        )

    def digest(self) -> str:
        body = {
            "prescription_id": self.prescription_id,
            "priority": self.priority,
            "barcodes": list(self.barcodes),
            "counted_quantity": None
            if self.counted_quantity is None
            else str(self.counted_quantity.normalize()),
            "previous_fill_id": self.previous_fill_id,
            "override_reason": self.override_reason,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DecisionInput:
    """A pharmacist's decision as sent: on which version of the fill, the outcome, reasons and a note."""

    version: int
    outcome: str
    reason_codes: tuple[str, ...]
    note: str | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DecisionInput:
        d = DECISION.parse(body)
        note = (d.get("note") or "").strip()
        reasons = d.get("reason_codes") or []
        return cls(d["version"], d["outcome"], tuple(dict.fromkeys(reasons)), note or None)
