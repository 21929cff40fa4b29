"""What a fill the server refused needs, by the server's error code.

Most refusals are cured by changing the fill: a photo retaken, a view added, the count, the
prescription. Some are not, and advice to change a photo would only send it to be refused again: the
fill is no longer needed, or cannot be filled here. A few are cured by waiting, then sending it again
as it is. Kept apart from how a command words it, so that every front end tells the same.
"""

from __future__ import annotations

# Refusals no change to the fill cures: why, in a few words (what follows "no change sends it: ").
NOT_CURED_BY_A_CHANGE: dict[str, str] = {
    "already_resubmitted": "the rejected fill it replaces was resubmitted already, by another fill",
    "not_rejected": "the fill it was to replace is not a rejected one",
    "refills_exhausted": "the prescription has no fill left; the patient needs a new prescription",
    "telepharmacy_not_allowed": "the state's rules do not let this site dispense it",
    "schedule_not_allowed": "the state's rules do not let this site dispense its schedule",
}

# Refusals cured by waiting, then sending the fill again as it is: for what.
CURED_BY_WAITING: dict[str, str] = {
    "prescription_not_verified": "the pharmacist's data-entry verification of the prescription "
    "(corrected first, if it was returned)",
}


def not_cured_by_a_change(code: str | None) -> str | None:
    """Why no change to a fill refused with `code` sends it; None when one may."""
    return NOT_CURED_BY_A_CHANGE.get(code or "")


def cured_by_waiting(code: str | None) -> str | None:
    """What a fill refused with `code` waits for before it is sent again as it is; None when nothing."""
    return CURED_BY_WAITING.get(code or "")
