"""What the technician does to fills from the page: save one, fix or discard a refused one, prepare a
resubmission of a rejected one. The same rules as the command line's `submit` and `outbox`."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remote_site_client.commands.outbox import fix_needs_new_id
from remote_site_client.commands.submit import PRIORITIES, NoCopyOffline, rejected_fill
from remote_site_client.outbox import FAILED, Outbox, short_id
from remote_site_client.station.captures import Capture, Captures, check_capture
from remote_site_client.station.errors import Question, StationError, not_enrolled
from remote_site_client.station.runtime import Station
from remote_site_client.station.worklist import views_to_retake
from server.evidence.counts import read_count
from server.evidence.kinds import KIND_NAMES, MEDIA_KINDS

MAX_REASON = 500


def _names(kinds: Sequence[str]) -> str:
    return " and the ".join(KIND_NAMES.get(k, k) for k in kinds)


def _outbox(station: Station) -> Outbox:
    if station.outbox is None:
        raise not_enrolled()
    return station.outbox


def _prescription(outbox: Outbox, prescription_id: int) -> dict[str, Any]:
    rx = outbox.cached_prescription(rx_id=prescription_id)
    if rx is None:
        raise StationError(
            400, "unknown_prescription", "This prescription is not known here: pick it from the list again."
        )
    return rx


def views_required(station: Station, rx: dict[str, Any]) -> list[str]:
    """The photos a fill of this prescription needs: the server's list for it (its dosage form under
    the site's rules), else the site's."""
    return list(rx.get("required_media_kinds") or station.required_views)


def _captures_of(captures: Captures, ids: Sequence[str], prescription_id: int | None) -> list[Capture]:
    found = []
    for cid in ids:
        c = captures.get(cid)
        if c is None:
            raise StationError(
                400, "capture_gone", "A photo of this fill is gone (the station restarted): retake it."
            )
        if prescription_id is not None and c.prescription_id not in (None, prescription_id):
            raise StationError(400, "capture_mismatch", "A photo is of another prescription: retake it.")
        found.append(c)
    kinds = [c.kind for c in found if c.kind != "other"]
    doubled = sorted({k for k in kinds if kinds.count(k) > 1})
    if doubled:
        raise StationError(400, "view_twice", f"The {_names(doubled)} was given twice: keep one.")
    order: dict[str, int] = {str(k): i for i, k in enumerate(MEDIA_KINDS)}
    return sorted(found, key=lambda c: order.get(c.kind, len(order)))


def _refuse_problems(found: Sequence[Capture]) -> None:
    failing = [c for c in found if not c.ok]
    if failing:
        raise StationError(
            400,
            "checks_failed",
            "Retake the " + _names([c.kind for c in failing]) + ": " + failing[0].problems[0].message,
            {"captures": [c.id for c in failing]},
        )


def _count(typed: Any) -> float | None:
    """The count as the page sends what was typed (the field's text); None when it was left empty."""
    if typed is None or (isinstance(typed, str) and not typed.strip()):
        return None
    try:
        return read_count(typed)
    except ValueError as exc:
        raise StationError(400, "bad_count", str(exc)) from None


def _no_count() -> StationError:
    return StationError(400, "no_count", "Type the counted quantity before saving.")


def _quantity(q: float) -> str:
    return f"{q:.2f}".rstrip("0").rstrip(".")


def _ask_if_count_differs(count: float, rx: dict[str, Any], payload: dict[str, Any]) -> None:
    """A count other than the prescription's is saved once the technician confirms it: a partial fill
    is one, a slip of the finger (300 for 30) another. The server flags it for the pharmacist either
    way (quantity_mismatch); this asks only the technician."""
    prescribed = rx.get("quantity")
    if prescribed is None or payload.get("count_confirmed") is True or count == float(prescribed):
        return
    raise Question(
        "count_differs",
        f"Counted {_quantity(count)}, the prescription is for {_quantity(float(prescribed))}: save anyway?",
        {"counted": count, "prescribed": float(prescribed)},
    )


def save_fill(station: Station, captures: Captures, payload: dict[str, Any]) -> dict[str, Any]:
    """Stores the fill in the outbox (files and entry fsynced) and wakes the sender; nothing is stored
    when a required view is missing, a photo failed its checks or the count is missing or not a number, nor
    while a count other than the prescription's waits for the technician's confirmation."""
    outbox = _outbox(station)
    try:
        prescription_id = int(payload["prescription_id"])
    except (KeyError, TypeError, ValueError):
        raise StationError(400, "no_prescription", "Pick the prescription first.") from None
    rx = _prescription(outbox, prescription_id)
    found = _captures_of(captures, [str(c) for c in payload.get("captures") or []], prescription_id)
    missing = [k for k in views_required(station, rx) if k not in {c.kind for c in found}]
    if missing:
        raise StationError(
            400, "missing_views", f"Take the {_names(missing)} before saving.", {"missing": missing}
        )
    _refuse_problems(found)
    # None chosen, none sent: the server's default, which for a resubmission is the rejected fill's.
    priority = payload.get("priority") or None
    if priority is not None and priority not in PRIORITIES:
        raise StationError(400, "bad_priority", f"Priority is one of {', '.join(PRIORITIES)}.")
    bottle = next((c for c in found if c.kind == "stock_bottle"), None)
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "prescription_id": prescription_id,
        "barcodes": (bottle.barcodes if bottle else [])[:10],
    }
    if priority is not None:
        body["priority"] = priority
    count = _count(payload.get("counted_quantity"))
    if count is None:
        raise _no_count()
    _ask_if_count_differs(count, rx, payload)
    body["counted_quantity"] = count
    previous = payload.get("previous_fill_id")
    if previous:
        body["previous_fill_id"] = str(uuid.UUID(str(previous)))
    fill_id = outbox.add(body, [(c.kind, c.path) for c in found], rx_number=str(rx["rx_number"]))
    for c in found:
        captures.drop(c.id)
    station.wake()
    return {"fill_id": fill_id, "short_id": short_id(fill_id)}


def fix_entry(station: Station, captures: Captures, fill_id: str, payload: dict[str, Any], actor: str) -> str:
    """A refused fill changed in place (new photos, the count) or sent again as it is; audited."""
    outbox = _outbox(station)
    entry = outbox.get(fill_id)
    if entry is None or entry.state != FAILED:
        raise StationError(409, "not_refused", "This fill was not refused: there is nothing to fix.")
    found = _captures_of(captures, [str(c) for c in payload.get("captures") or []], entry.prescription_id)
    count = _count(payload.get("counted_quantity"))
    if not found and count is None:
        if not outbox.requeue(fill_id):
            raise StationError(409, "not_refused", "This fill was not refused: there is nothing to fix.")
        station.wake()
        return fill_id
    _refuse_problems(found)
    new_kinds = {c.kind for c in found}
    rx = outbox.cached_prescription(rx_id=entry.prescription_id) or {}
    missing = [k for k in views_required(station, rx) if k not in new_kinds | set(entry.kinds())]
    if missing:
        raise StationError(
            400, "missing_views", f"Take the {_names(missing)} before saving.", {"missing": missing}
        )
    if count is None and entry.body.get("counted_quantity") is None:
        raise _no_count()
    if count is not None:
        _ask_if_count_differs(count, rx, payload)
    body = dict(entry.body)
    if count is not None:
        body["counted_quantity"] = count
    bottle = next((c for c in found if c.kind == "stock_bottle"), None)
    if bottle is not None:
        body["barcodes"] = bottle.barcodes[:10]
    changed = [KIND_NAMES.get(k, k) for k in sorted(new_kinds)] + ([f"count {count:g}"] if count else [])
    what = ", ".join(changed)
    new_id = outbox.fix(
        fill_id,
        photos=[(c.kind, c.path) for c in found],
        body=body,
        rekey=fix_needs_new_id(entry, body, new_kinds),
        rx_number=entry.rx_number,
        actor=actor,
        reason=str(payload.get("reason") or "").strip()[:MAX_REASON] or f"fixed: {what}",
    )
    for c in found:
        captures.drop(c.id)
    station.wake()
    return new_id


def discard_entry(station: Station, fill_id: str, reason: Any, actor: str) -> None:
    text = str(reason or "").strip()
    if not text:
        raise StationError(400, "no_reason", "Say why this fill is discarded.")
    _outbox(station).discard(fill_id, actor=actor, reason=text[:MAX_REASON])
    station.wake()


async def prepare_resubmission(station: Station, captures: Captures, fill_id: str) -> dict[str, Any]:
    """The rejected fill's photos as captures (kept unless retaken), the views its reasons ask to
    retake, and its count: what the page needs to resubmit it."""
    outbox = _outbox(station)
    assert station.config is not None
    with tempfile.TemporaryDirectory(prefix="tp-station-") as work:
        try:
            previous = await rejected_fill(station.config, outbox, fill_id, Path(work), set())
        except NoCopyOffline:
            raise StationError(
                503,
                "offline",
                f"The server cannot be reached, and this station holds no copy of rejected fill "
                f"{short_id(fill_id)}: only the server has its photos. Resubmit it once the station shows "
                "Connected again; nothing was changed.",
            ) from None
        kept = []
        for kind, path in previous.files:
            with path.open("rb") as f:
                cid, dest = captures.new_path(kind, f.read(64))
            await asyncio.to_thread(shutil.copyfile, path, dest)
            kept.append(Capture(cid, kind, dest, previous.prescription_id, kept_from=previous.fill_id))
    rx = outbox.cached_prescription(rx_id=previous.prescription_id)
    expected = rx["expected_ndc"] if rx else None
    thresholds = station.config.thresholds()

    def check(c: Capture) -> None:
        c.problems, c.notes, c.barcodes = check_capture(
            c.kind, c.path, expected_ndc=expected, thresholds=thresholds, today=dt.date.today()
        )

    await asyncio.gather(*(asyncio.to_thread(check, c) for c in kept))
    for c in kept:
        captures.add(c)
    entry = outbox.get(previous.fill_id)
    codes = entry.reason_codes if entry else []
    if not codes and station.api is not None:
        decision = (await station.api.fill(previous.fill_id)).get("decision") or {}
        codes = list(decision.get("reason_codes") or [])
    return {
        "fill_id": previous.fill_id,
        "prescription_id": previous.prescription_id,
        "counted_quantity": previous.counted_quantity,
        "captures": [c.view() for c in kept],
        "retake": views_to_retake(codes),
    }
