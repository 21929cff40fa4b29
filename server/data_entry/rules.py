"""PV1's fixed vocabularies and states, in one place.

A prescription entered or received at a site that requires PV1 waits for a pharmacist:

    awaiting_verification --claim--> in_review --verify--> verified --(corrected)--+
            ^                           |   \\--return---> returned --(corrected)--+
            +--release / lease runs out-+                                          |
            +----------------------------------------------------------------------+

Only a verified prescription (or one that needs no PV1: "not_required") gets fills. A correction at the
site makes a new version, and a verification is of one version: a pharmacist who saw an older one gets
409. Claims are leases, as for fills, and the same lease length.
"""

from __future__ import annotations

import enum
from typing import Final


class VerificationState(enum.StrEnum):
    NOT_REQUIRED = "not_required"
    AWAITING = "awaiting_verification"
    IN_REVIEW = "in_review"
    VERIFIED = "verified"
    RETURNED = "returned"


# Waiting for a pharmacist or in a pharmacist's hands: the data-entry rows of the queue.
OPEN_STATES: Final = (VerificationState.AWAITING, VerificationState.IN_REVIEW)
# No fill may be made while a prescription is in one of these.
NOT_FILLABLE: Final = (*OPEN_STATES, VerificationState.RETURNED)
# The queue's two kinds of work: a prescription's data entry (PV1), a fill's product (PV2).
DATA_ENTRY = "data_entry"
PRODUCT = "product"

OUTCOMES: Final = ("verify", "return")
# The outcome as the verification record keeps it, and the state it leaves the prescription in.
OUTCOME_STATE: Final = {"verify": VerificationState.VERIFIED, "return": VerificationState.RETURNED}

RETURN_REASONS: dict[str, str] = {
    "wrong_patient": "Wrong patient",
    "wrong_drug": "Wrong drug",
    "wrong_strength": "Wrong strength",
    "wrong_directions": "Wrong directions",
    "wrong_quantity": "Wrong quantity",
    "wrong_prescriber": "Wrong prescriber",
    "needs_clarification": "Needs clarification with the prescriber",
    "other": "Other (note required)",
}

# What a correction may change: the entered fields of the prescription (not its number or source).
CORRECTABLE: Final = (
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
