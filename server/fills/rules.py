"""Fixed vocabularies of the verification workflow, in one place."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

# Media kinds are named with the evidence rules, which the site shares; the workflow's are those.
from server.evidence.kinds import MEDIA_KINDS as MEDIA_KINDS
from server.evidence.kinds import VIDEO_KINDS as VIDEO_KINDS
from server.security.principal import Role


class FillState(enum.StrEnum):
    DRAFT = "draft"
    QUEUED = "queued"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    HANDED_OUT = "handed_out"
    REJECTED = "rejected"


# Waiting for a pharmacist or in a pharmacist's hands: the queue's fills.
OPEN_STATES = (FillState.QUEUED, FillState.IN_REVIEW)
# Approved by a pharmacist, whether still at the site or handed to the patient since.
APPROVED_STATES = (FillState.APPROVED, FillState.HANDED_OUT)
# The server itself, when a pharmacist's lease runs out.
SYSTEM: Final = "system"


@dataclass(frozen=True)
class Transition:
    """One change of a fill's state the workflow allows: the audit action that records it, the states it
    starts from, the state it ends in, and who may make it."""

    action: str
    sources: tuple[FillState, ...]
    target: FillState
    by: Role | Literal["system"]


# Every state a fill takes and every way it goes from one to the next:
#
#   draft --submit--> queued --claim--> in_review --approve--> approved --hand out--> handed_out
#                       ^                 |  |
#                       +--release--------+  +----reject-----> rejected
#                          (or its lease runs out)
#
# A fill takes its photos as a draft and, once submitted, enters the queue at once: each photo was
# verified as it arrived, so there is nothing left to wait for. CLAIM takes a fill in review only when
# its lease has run out (another pharmacist's, before the server returned it); the lifecycle adds that
# condition. A rejected fill is never reopened: the technician resubmits a new fill linked to it.
# HAND_OUT is the site giving the medication to the patient; where the rules in force require
# counselling, only once the fill has its counselling record (server.counselling); the lifecycle adds
# that condition. A fill's version counts every change a pharmacist decides on: besides these, a waiting
# fill's flags, when the server adds one (FLAGGED), which leaves its state as it is.
TRANSITIONS: Final = (
    CREATE := Transition("fill.created", (), FillState.DRAFT, Role.TECHNICIAN),
    SUBMIT := Transition("fill.submitted", (FillState.DRAFT,), FillState.QUEUED, Role.TECHNICIAN),
    CLAIM := Transition("fill.claimed", OPEN_STATES, FillState.IN_REVIEW, Role.PHARMACIST),
    RELEASE := Transition("fill.released", (FillState.IN_REVIEW,), FillState.QUEUED, Role.PHARMACIST),
    EXPIRE := Transition("fill.released", (FillState.IN_REVIEW,), FillState.QUEUED, SYSTEM),
    APPROVE := Transition("fill.decided", (FillState.IN_REVIEW,), FillState.APPROVED, Role.PHARMACIST),
    REJECT := Transition("fill.decided", (FillState.IN_REVIEW,), FillState.REJECTED, Role.PHARMACIST),
    HAND_OUT := Transition("fill.handed_out", (FillState.APPROVED,), FillState.HANDED_OUT, Role.TECHNICIAN),
)


# Patient waiting at the counter first, then routine, then fills going out for delivery.
PRIORITIES = ("waiting", "routine", "delivery")

REJECTION_REASONS: dict[str, str] = {
    "wrong_drug": "Wrong drug",
    "wrong_strength": "Wrong strength",
    "wrong_quantity": "Wrong quantity",
    "wrong_patient": "Wrong patient",
    "label_error": "Label error",
    "expired_or_damaged_stock": "Expired or damaged stock",
    "image_unclear": "Image unclear",
    "barcode_mismatch": "Barcode mismatch",
    "other": "Other (note required)",
}

OUTCOMES = ("approve", "reject")
FILL_TYPES = ("new", "refill")


class FlagCode(enum.StrEnum):
    """What a pharmacist must acknowledge before approving a fill; set when the fill is queued, and a
    refill too soon also while it waits, when another fill of the patient's drug is approved (FLAGGED)."""

    PRODUCT_CHECK = "product_check"
    QUANTITY_MISMATCH = "quantity_mismatch"
    OVERRIDE = "override"
    REUSED_PHOTO = "reused_photo"
    REFILL_TOO_SOON = "refill_too_soon"


# Announced (and audited) when a waiting fill takes a flag after it was queued; its state stays.
FLAGGED: Final = "fill.flagged"

FLAG_LABELS: dict[str, str] = {
    FlagCode.PRODUCT_CHECK: "Product check",
    FlagCode.QUANTITY_MISMATCH: "Count differs",
    FlagCode.OVERRIDE: "Photo check overridden",
    FlagCode.REUSED_PHOTO: "Reused photo",
    FlagCode.REFILL_TOO_SOON: "Refill too soon",
}

# Why a pharmacist approves a fill in spite of a flag; "other" needs a note.
ACKNOWLEDGEMENT_REASONS: dict[str, str] = {
    "verified_visually": "Verified visually in the photos",
    "partial_fill_documented": "Partial fill, documented",
    "manufacturer_change_confirmed": "Manufacturer change confirmed",
    "early_refill_authorized": "Early refill authorized (vacation, dose change, lost supply)",
    "photo_confirmed_current": "Photo confirmed as taken for this fill",
    "other": "Other (note required)",
}


class CounsellingKind(enum.StrEnum):
    """How a fill's counselling record was made (server.counselling)."""

    VIDEO = "video"
    PHONE = "phone"
    DECLINED = "declined"


class Counselling(enum.StrEnum):
    """Where a fill's counselling stands (fills.counselling): required or not, and once recorded, how."""

    NOT_REQUIRED = "not_required"
    DUE = "due"
    COUNSELLED_VIDEO = "counselled_video"
    COUNSELLED_PHONE = "counselled_phone"
    DECLINED = "declined"


COUNSELLING_OF: Final = {
    CounsellingKind.VIDEO: Counselling.COUNSELLED_VIDEO,
    CounsellingKind.PHONE: Counselling.COUNSELLED_PHONE,
    CounsellingKind.DECLINED: Counselling.DECLINED,
}
# A fill with one of these has its record: nothing more is due.
COUNSELLING_RECORDED: Final = tuple(COUNSELLING_OF.values())
# Who declined counselling, as a role: never a name.
DECLINED_BY: Final = ("patient", "agent")


def counselling_at_start(required: bool) -> Counselling:
    return Counselling.DUE if required else Counselling.NOT_REQUIRED
