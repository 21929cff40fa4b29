"""What a pharmacist must acknowledge before approving a fill: its flags, set when it is queued (and a
refill too soon while it waits, when another fill of the patient's drug is approved: FLAGGED).

A flag is one per code and carries ids and numbers only (flags travel in realtime events): the
technician's override reason, the patient and the drug stay in the fill's detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from server.db.models import Fill, Media
from server.errors import NotYet
from server.evidence.kinds import MEDIA_KINDS, VIDEO_KINDS
from server.fills.requests import DecisionInput
from server.fills.rules import FlagCode


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# What the drug reference says of a scanned or prescribed NDC that a pharmacist must hear even when the
# barcode matches: the product is no longer marketed, excluded from the directory, or not in it.
# A video counts as seen once this share of it was played or scrubbed through (the console measures it
# and learns the share from GET /api/v1/reasons).
VIDEO_SEEN_FRACTION = 0.9
REFERENCE_FLAGS = ("discontinued", "excluded", "unknown_ndc", "expected_unknown")


def _product_flag(result: str, detail: dict[str, Any]) -> dict[str, Any] | None:
    """The product_check flag: a barcode that does not match (with the reference's class of mismatch
    when one is loaded), or a match the reference has doubts about."""
    reference = detail.get("reference") or {}
    doubts = [f["code"] for f in reference.get("flags", []) if f.get("code") in REFERENCE_FLAGS]
    if result == "match" and not doubts:
        return None
    flag: dict[str, Any] = {"code": FlagCode.PRODUCT_CHECK, "result": result}
    if detail.get("mismatch_class"):
        flag["mismatch_class"] = detail["mismatch_class"]
    if doubts:
        flag["reference"] = doubts
    return flag


def flags_at_queue(
    fill: Fill,
    prescribed: Decimal,
    product_check: str,
    product_detail: dict[str, Any],
    *extra: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The fill's flags from what it carries, plus the ones found by looking elsewhere (`extra`: a
    reused photo, a refill too soon), in a fixed order."""
    flags: list[dict[str, Any]] = []
    product = _product_flag(product_check, product_detail)
    if product is not None:
        flags.append(product)
    counted = fill.counted_quantity
    if counted is None or counted != prescribed:
        flags.append(
            {
                "code": FlagCode.QUANTITY_MISMATCH,
                "counted": _number(counted),
                "prescribed": _number(prescribed),
            }
        )
    if fill.overridden_checks or fill.override_reason:
        flags.append({"code": FlagCode.OVERRIDE, "checks": list(fill.overridden_checks or [])})
    flags += [f for f in extra if f]
    return flags


def order_by_view(media: Iterable[Media], required: Sequence[str]) -> list[Media]:
    """A fill's media in the order of the site's required views, then the other kinds in their usual
    order, videos last: the same order for every fill."""
    rank = {kind: i for i, kind in enumerate([*required, *MEDIA_KINDS])}
    return sorted(media, key=lambda m: (m.kind in VIDEO_KINDS, rank.get(m.kind, len(rank)), m.id))


def _was_seen(m: Media, view: dict[str, Any] | None) -> bool:
    """A photo was on screen; a video was played or scrubbed through nearly to its end."""
    if view is None:
        return False
    if m.kind in VIDEO_KINDS:
        return (view.get("played_fraction") or 0) >= VIDEO_SEEN_FRACTION
    return bool(view["seconds"] > 0)


def check_approval(fill: Fill, media: Sequence[Media], d: DecisionInput) -> None:
    """An approval must acknowledge every flag of the fill and name every photo and video as seen;
    NotYet (422) says what is missing."""
    acknowledged = {a["flag"] for a in d.acknowledgements}
    missing_flags = [f["code"] for f in fill.flags or [] if f["code"] not in acknowledged]
    if missing_flags:
        raise NotYet(
            "Acknowledge each flag of this fill before approving it: " + ", ".join(missing_flags) + ".",
            code="flags_unacknowledged",
            missing=missing_flags,
        )
    views = {v["media_id"]: v for v in d.views_seen}
    unseen = [m.id for m in media if not _was_seen(m, views.get(m.id))]
    if unseen:
        raise NotYet(
            "Every photo and video of the fill must be seen before it is approved.",
            code="views_unseen",
            missing=unseen,
        )
