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
from server.evidence.counts import MAX_COUNT as MAX_SITE_COUNT
from server.fills.rules import (
    ACKNOWLEDGEMENT_REASONS,
    MEDIA_KINDS,
    OUTCOMES,
    PRIORITIES,
    REJECTION_REASONS,
    FlagCode,
)
from server.inputs import (
    ID,
    INT32_MAX,
    Body,
    Field,
    Int,
    ListOf,
    Nullable,
    Object,
    OneOf,
    Quantity,
    Text,
    Uuid,
)

MAX_NOTE = 2000
MAX_BARCODES = 10
MAX_OVERRIDDEN_CHECKS = 32
# Seconds a view can have been on screen: a day is more than any review.
MAX_SECONDS_SEEN = Decimal(86400)
MAX_VIEWS = 64
MAX_ACK_NOTE = 500

OVERRIDDEN_CHECK = Object(
    Body(
        {
            "kind": Field(OneOf(MEDIA_KINDS), required=True, description="The photo the check was about."),
            "check": Field(
                Text(64, 1, pattern="[a-z0-9_]+"),
                required=True,
                description="The site's check code, e.g. blurry.",
            ),
        }
    )
)

NEW_FILL = Body(
    {
        "id": Field(
            Uuid("A fill needs an 'id': a UUID made by the site."),
            required=True,
            description="Made by the site; creating the same fill again is idempotent.",
        ),
        "prescription_id": Field(ID, required=True),
        "priority": Field(
            OneOf(PRIORITIES, f"Priority must be one of {', '.join(PRIORITIES)}."),
            description="Routine when not given; a resubmission without it takes the rejected fill's.",
        ),
        "barcodes": Field(
            Nullable(
                ListOf(
                    Text(200, 1),
                    MAX_BARCODES,
                    f"Barcodes must be a list of at most {MAX_BARCODES} scanned barcode texts.",
                )
            )
        ),
        "counted_quantity": Field(Nullable(Quantity(Decimal(0), Decimal(MAX_SITE_COUNT)))),
        "previous_fill_id": Field(Nullable(Uuid()), description="The rejected fill this one replaces."),
        "override_reason": Field(
            Nullable(
                Text(500, 1, strip=True, message="An override needs a reason of at most 500 characters.")
            ),
            description="Why the site goes on although its checks of the photos or the product failed.",
        ),
        "overridden_checks": Field(
            Nullable(
                ListOf(
                    OVERRIDDEN_CHECK,
                    MAX_OVERRIDDEN_CHECKS,
                    f"Overridden checks must be a list of at most {MAX_OVERRIDDEN_CHECKS} "
                    "{kind, check} objects.",
                )
            ),
            description="Each check the technician sent the fill past, on which photo.",
        ),
    },
    description="A draft fill of a prescription at the caller's site.",
)


ACKNOWLEDGEMENT = Object(
    Body(
        {
            "flag": Field(OneOf(tuple(FlagCode)), required=True),
            "reason": Field(
                OneOf(
                    tuple(ACKNOWLEDGEMENT_REASONS),
                    f"An acknowledgement's reason must be one of {', '.join(ACKNOWLEDGEMENT_REASONS)}.",
                ),
                required=True,
            ),
            "note": Field(Nullable(Text(MAX_ACK_NOTE, strip=True))),
        },
        description="A flag of the fill acknowledged, with why the fill is right all the same.",
    )
)
VIEW_SEEN = Object(
    Body(
        {
            "media_id": Field(ID, required=True),
            "seconds": Field(Quantity(Decimal(0), MAX_SECONDS_SEEN), required=True),
            "max_zoom": Field(Nullable(Quantity(Decimal(0), Decimal(64)))),
            "played_fraction": Field(
                Nullable(Quantity(Decimal(0), Decimal(1))),
                description="A video: the share of it played or scrubbed through.",
            ),
        },
        description="One photo or video as it was on the pharmacist's screen.",
    )
)


# A count the pharmacist confirms: what a site may send.
MAX_COUNT = Decimal(MAX_SITE_COUNT)


@dataclass(frozen=True)
class TypedCount:
    """A count as the pharmacist typed it: a JSON number, or a string of one ("30", "7.5")."""

    def parse(self, value: object, name: str) -> Decimal:
        message = f"'{name}' must be a count from 0 to {MAX_COUNT}, such as 30."
        if isinstance(value, str):
            try:
                value = Decimal(value.strip())
            except ArithmeticError:
                raise InvalidInput(message) from None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise InvalidInput(message)
        number = Decimal(str(value))
        if not number.is_finite() or not Decimal(0) <= number <= MAX_COUNT:
            raise InvalidInput(message)
        return number

    def schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(MAX_COUNT)},
                {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*$"},
            ]
        }


COUNT_CONFIRMATION = Object(
    Body(
        {"count": Field(TypedCount(), required=True, description="The units counted in the photo.")},
        description="The count the pharmacist read off the counted-units photo (Schedule II).",
    )
)


def _decision_rules(d: dict[str, Any]) -> None:
    reasons, note = d.get("reason_codes") or [], d.get("note")
    for ack in d.get("acknowledgements") or []:
        if ack["reason"] == "other" and not ack.get("note"):
            raise InvalidInput(
                "An acknowledgement for the reason 'other' needs a note.", field="acknowledgements"
            )
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
        "acknowledgements": Field(
            Nullable(ListOf(ACKNOWLEDGEMENT, len(FlagCode))),
            description="An approval acknowledges each flag of the fill once.",
        ),
        "views_seen": Field(
            Nullable(ListOf(VIEW_SEEN, MAX_VIEWS)),
            description="What the pharmacist had on screen; an approval names every photo and video.",
        ),
        "count_confirmation": Field(
            Nullable(COUNT_CONFIRMATION),
            description="A Schedule II approval confirms the site's count: the pharmacist's own count of "
            "the counted-units photo.",
        ),
    },
    check=_decision_rules,
    description="A rejection needs reason codes (and 'other' a note); an approval has none.",
)


@dataclass(frozen=True)
class NewFill:
    """What a site sends to create a fill; also the body whose digest makes creation idempotent."""

    id: str
    prescription_id: int
    # None: not given, so routine, or for a resubmission the priority of the fill it replaces.
    priority: str | None = None
    barcodes: tuple[str, ...] = ()
    counted_quantity: Decimal | None = None
    previous_fill_id: str | None = None
    override_reason: str | None = None
    # ({"kind": ..., "check": ...}, ...)
    overridden_checks: tuple[dict[str, str], ...] = ()

    @classmethod
    def parse(cls, body: dict[str, Any]) -> NewFill:
        f = NEW_FILL.parse(body)
        return cls(
            id=f["id"],
            prescription_id=f["prescription_id"],
            priority=f.get("priority"),
            barcodes=tuple(f.get("barcodes") or ()),
            counted_quantity=f.get("counted_quantity"),
            previous_fill_id=f.get("previous_fill_id"),
            override_reason=f.get("override_reason"),
            overridden_checks=tuple(
                dict(c)
                for c in {(c["kind"], c["check"]): c for c in f.get("overridden_checks") or []}.values()
            ),
        )

    def digest(self) -> str:
        body = {
            "prescription_id": self.prescription_id,
            "priority": self.priority or "routine",
            "barcodes": list(self.barcodes),
            "counted_quantity": None
            if self.counted_quantity is None
            else str(self.counted_quantity.normalize()),
            "previous_fill_id": self.previous_fill_id,
            "override_reason": self.override_reason,
        }
        if self.overridden_checks:
            # Only when sent: fills created before overridden checks existed keep their digest.
            body["overridden_checks"] = list(self.overridden_checks)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DecisionInput:
    """A pharmacist's decision as sent: on which version of the fill, the outcome, reasons and a note."""

    version: int
    outcome: str
    reason_codes: tuple[str, ...]
    note: str | None
    # ({"flag", "reason", "note"}, ...), one per flag code (the last one sent wins).
    acknowledgements: tuple[dict[str, Any], ...] = ()
    # ({"media_id", "seconds", "max_zoom", "played_fraction"}, ...), one per media id.
    views_seen: tuple[dict[str, Any], ...] = ()
    # The count the pharmacist confirms (Schedule II), as they typed it.
    confirmed_count: Decimal | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DecisionInput:
        d = DECISION.parse(body)
        note = (d.get("note") or "").strip()
        reasons = d.get("reason_codes") or []
        acks = {
            a["flag"]: {"flag": a["flag"], "reason": a["reason"], "note": a.get("note") or None}
            for a in d.get("acknowledgements") or []
        }
        views = {v["media_id"]: _view(v) for v in d.get("views_seen") or []}
        return cls(
            d["version"],
            d["outcome"],
            tuple(dict.fromkeys(reasons)),
            note or None,
            tuple(acks.values()),
            tuple(views.values()),
            (d.get("count_confirmation") or {}).get("count"),
        )


def _view(v: dict[str, Any]) -> dict[str, Any]:
    """A view as stored: numbers as JSON numbers, rounded to what a person's eye can tell apart."""
    out: dict[str, Any] = {"media_id": v["media_id"], "seconds": round(float(v["seconds"]), 2)}
    for key in ("max_zoom", "played_fraction"):
        if v.get(key) is not None:
            out[key] = round(float(v[key]), 3)
    return out
