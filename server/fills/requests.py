"""What a site or a pharmacist asks of a fill, read from a request body and checked against the rules.

Parsing knows the vocabularies (server.fills.rules) and the limits of a request; whether the fill may
change as asked is the lifecycle's to say.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from server.errors import InvalidInput
from server.fills.rules import OUTCOMES, PRIORITIES, REJECTION_REASONS

MAX_NOTE = 2000
MAX_BARCODES = 10


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
        try:
            fill_id = str(uuid.UUID(str(body["id"])))
            rx = int(body["prescription_id"])
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput(
                "A fill needs an 'id' (a UUID made by the site) and a 'prescription_id'."
            ) from exc
        priority = body.get("priority", "routine")
        if priority not in PRIORITIES:
            raise InvalidInput(f"Priority must be one of {', '.join(PRIORITIES)}.")
        barcodes = body.get("barcodes") or []
        if not isinstance(barcodes, list) or not all(
            isinstance(b, str) and 0 < len(b) <= 200 for b in barcodes
        ):
            raise InvalidInput("Barcodes must be a list of scanned barcode texts.")
        if len(barcodes) > MAX_BARCODES:
            raise InvalidInput(f"At most {MAX_BARCODES} barcodes per fill.")
        counted = body.get("counted_quantity")
        try:
            counted_q = None if counted is None else Decimal(str(counted))
        except InvalidOperation as exc:
            raise InvalidInput("The counted quantity must be a number.") from exc
        if counted_q is not None and (counted_q < 0 or counted_q > 100000):
            raise InvalidInput("The counted quantity is out of range.")
        prev = body.get("previous_fill_id")
        override = body.get("override_reason")
        if override is not None and (not isinstance(override, str) or not 0 < len(override.strip()) <= 500):
            raise InvalidInput("An override needs a reason of at most 500 characters.")
        return cls(
            id=fill_id,
            prescription_id=rx,
            priority=priority,
            barcodes=tuple(barcodes),
            counted_quantity=counted_q,
            previous_fill_id=str(prev) if prev else None,
            override_reason=override.strip() if override else None,
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
        try:
            version = int(body["version"])
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput("A decision names the fill 'version' it was made on.") from exc
        outcome = body.get("outcome")
        if outcome not in OUTCOMES:
            raise InvalidInput("The outcome must be 'approve' or 'reject'.")
        reasons = body.get("reason_codes") or []
        if not isinstance(reasons, list) or any(r not in REJECTION_REASONS for r in reasons):
            raise InvalidInput(f"Reason codes must come from: {', '.join(REJECTION_REASONS)}.")
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise InvalidInput(f"The note must be text of at most {MAX_NOTE} characters.")
        note = note.strip() if note else None
        if outcome == "reject" and not reasons:
            raise InvalidInput("A rejection needs at least one reason code.")
        if outcome == "approve" and reasons:
            raise InvalidInput("An approval carries no rejection reasons.")
        if "other" in reasons and not note:
            raise InvalidInput("The reason 'other' needs a note saying what is wrong.")
        return cls(version, outcome, tuple(dict.fromkeys(reasons)), note or None)
