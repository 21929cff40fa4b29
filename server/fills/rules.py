"""Fixed vocabularies of the verification workflow, in one place."""

from __future__ import annotations

import enum


class FillState(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"


# Patient waiting at the counter first, then routine, then fills going out for delivery.
PRIORITIES = ("waiting", "routine", "delivery")

MEDIA_KINDS = ("stock_bottle", "pills", "vial_label", "final_package", "count_video", "other")
VIDEO_KINDS = frozenset({"count_video"})

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
