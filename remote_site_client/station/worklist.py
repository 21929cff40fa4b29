"""The site's fills as the technician's work list: the server's fills and the outbox's, newest first.

A fill still in the outbox (waiting to send, or refused) is known only here; a delivered one is the
server's, with its decision. With the uplink down the list is what this computer knows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from remote_site_client.api import ApiError, SiteApi
from remote_site_client.commands.status import prescriptions_of
from remote_site_client.live import Decisions
from remote_site_client.outbox import DISCARDED, FAILED, OPEN_STATES, QUEUED, Entry, Outbox, short_id
from remote_site_client.refusals import cured_by_waiting, not_cured_by_a_change
from server.evidence.kinds import MEDIA_KINDS

# The server's newest fills the work list shows (pages of the site's fill list).
WORK_LIST_FILLS = 300

# The views a rejection reason asks to retake: what the pharmacist could not accept in them. "Image
# unclear" and "other" name no view: the technician reads the note and chooses.
RETAKE_FOR_REASON: dict[str, tuple[str, ...]] = {
    "wrong_drug": ("stock_bottle",),
    "wrong_strength": ("stock_bottle",),
    "barcode_mismatch": ("stock_bottle",),
    "expired_or_damaged_stock": ("stock_bottle",),
    "wrong_quantity": ("pills",),
    "wrong_patient": ("vial_label",),
    "label_error": ("vial_label",),
}

# The work list's states, in the words the page shows.
WAITING, REFUSED = "waiting_to_send", "refused"


def views_to_retake(reason_codes: Sequence[str]) -> list[str]:
    wanted = {k for code in reason_codes for k in RETAKE_FOR_REASON.get(code, ())}
    return [k for k in MEDIA_KINDS if k in wanted]


def _epoch_iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat() if ts else None


def _rx_fields(rx: Mapping[str, Any] | None) -> dict[str, Any]:
    rx = rx or {}
    return {
        "prescription_id": rx.get("id"),
        "rx_number": rx.get("rx_number"),
        "drug": rx.get("drug"),
        "strength": rx.get("strength"),
        "patient_name": rx.get("patient_name"),
    }


def entry_item(e: Entry, rx: Mapping[str, Any] | None) -> dict[str, Any]:
    state = {FAILED: REFUSED, DISCARDED: "discarded"}.get(e.state, WAITING)
    if e.state == QUEUED:
        state = e.fill_state or "queued"
    item = {
        "fill_id": e.fill_id,
        "short_id": e.short_id,
        "state": state,
        "at": _epoch_iso(e.created_at),
        **_rx_fields(rx),
        "in_outbox": e.state != QUEUED,
        "error": e.failed_reason if e.state == FAILED else (e.last_error if e.state in OPEN_STATES else None),
        "previous_fill_id": e.body.get("previous_fill_id"),
        "replaced_by": e.replaced_by,
    }
    if not item["rx_number"]:
        item["rx_number"] = e.rx_number
    return item


def server_item(fill: Mapping[str, Any], rx: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "fill_id": fill["id"],
        "short_id": short_id(fill["id"]),
        "state": fill["state"],
        "at": fill.get("submitted_at") or fill.get("created_at"),
        **_rx_fields(rx),
        "in_outbox": False,
        "error": None,
        "previous_fill_id": fill.get("previous_fill_id"),
        "replaced_by": None,
        "decided_at": fill.get("decided_at"),
        "counselling": fill.get("counselling"),
    }


def _when(item: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(item["at"]) if item.get("at") else dt.datetime.min.replace(tzinfo=dt.UTC)


async def work_list(api: SiteApi | None, outbox: Outbox) -> tuple[list[dict[str, Any]], bool]:
    """Every fill of the site by state, newest first, and whether the server answered."""
    rxs = {int(rx["id"]): rx for rx in outbox.cached_prescriptions()}
    local = [e for e in outbox.entries(None, limit=500) if not (e.state == DISCARDED and e.replaced_by)]
    items: dict[str, dict[str, Any]] = {}
    online = False
    if api is not None:
        try:
            fills = [f for f in await api.fills(at_most=WORK_LIST_FILLS) if f["state"] != "draft"]
            found = await prescriptions_of(api, outbox, fills)
            for f in fills:
                items[f["id"]] = server_item(f, found.get(f["id"]))
            online = True
        except ApiError as exc:
            if not exc.transient:
                raise
    for e in local:
        if e.fill_id in items and e.state == QUEUED:
            continue
        items[e.fill_id] = entry_item(e, rxs.get(e.prescription_id))
    ordered = sorted(items.values(), key=_when, reverse=True)
    return ordered, online


def _local_view(outbox: Outbox, e: Entry) -> dict[str, Any]:
    return {
        "state": e.state,
        "refused": e.failed_reason,
        "refused_code": e.failed_code,
        # A refusal no change to the fill cures (why), or one cured by waiting (for what): no "Fix it".
        "no_change_cures": not_cured_by_a_change(e.failed_code) if e.state == FAILED else None,
        "waits_for": cured_by_waiting(e.failed_code) if e.state == FAILED else None,
        "missing": e.failed_detail.get("missing") or [],
        "refused_view": e.failed_detail.get("kind"),
        "views": e.kinds(),
        "counted_quantity": e.body.get("counted_quantity"),
        "rx": outbox.cached_prescription(rx_id=e.prescription_id),
    }


async def fill_view(
    api: SiteApi | None, decisions: Decisions | None, outbox: Outbox, fill_id: str
) -> dict[str, Any] | None:
    """One fill as the page shows it: `server` (the server's fill, its decision's reasons in words and
    the views to retake) once the server has it, `local` (the outbox's entry) while this station holds
    it; None when neither knows it. Offline, the outbox's part alone."""
    entry = outbox.get(fill_id)
    local = _local_view(outbox, entry) if entry is not None else None
    server = None
    if api is not None and decisions is not None and (entry is None or entry.fill_state is not None):
        try:
            server = await api.fill(fill_id)
            labels = await decisions.labels()
        except ApiError:
            if entry is None:
                raise  # nothing here to show instead: offline is said as such, not as no such fill
            server = None  # offline, or not on the server yet: what the outbox holds
        decision = (server or {}).get("decision")
        if decision:
            codes = decision.get("reason_codes") or []
            decision["reasons"] = [labels.get(c, c) for c in codes]
            decision["retake"] = views_to_retake(codes)
    if server is None and local is None:
        return None
    return {"server": server, "local": local}
