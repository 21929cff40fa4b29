"""tp-site status: the site's fills, or one fill with its decision (what is known here when offline).

Fills are named by their short id (the first 8 characters, as the pharmacist's console shows them),
with the Rx number and the drug, in this computer's local time.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from remote_site_client.api import ApiError, SiteApi, TokenRefused
from remote_site_client.commands.common import (
    EXIT_OK,
    EXIT_REFUSED,
    UsageError,
    entry_line,
    fill_id_digits,
    load_config,
    local_time,
    no_answer,
    number,
    out,
    outbox_candidates,
    pick_fill,
    product,
    say,
    whole_number,
)
from remote_site_client.config import SiteConfig
from remote_site_client.live import Decisions
from remote_site_client.outbox import FAILED, OPEN_STATES, Outbox, short_id
from remote_site_client.progress import human_bytes
from server.evidence.kinds import KIND_NAMES

STATE_WORDS = {
    "draft": "not submitted",
    "queued": "waiting for a pharmacist",
    "in_review": "being verified",
    "approved": "APPROVED",
    "handed_out": "HANDED OUT",
    "rejected": "REJECTED",
}
# A fill's counselling, as the technician reads it before handing the fill out.
COUNSELLING_WORDS = {
    "due": "counselling due: ask the pharmacist for a counselling call before handing it out",
    "counselled_video": "counselling done (video call)",
    "counselled_phone": "counselling done (telephone)",
    "declined": "counselling declined",
}


def _print_fill(fill: dict[str, Any], labels: dict[str, str]) -> None:
    rx = fill.get("prescription") or {}
    out(f"Fill {short_id(fill['id'])}: {STATE_WORDS.get(fill['state'], fill['state'])}  (id {fill['id']})")
    patient = rx.get("patient_name") or ""
    out(f"  Rx {rx.get('rx_number')}  {product(rx)}  qty {number(rx.get('quantity'))}  {patient}")
    out(f"  submitted {local_time(fill.get('submitted_at'))}, counted {number(fill.get('counted_quantity'))}")
    out(f"  product check: {fill.get('product_check')}")
    for m in fill.get("media", []):
        out(
            f"  {KIND_NAMES.get(m['kind'], m['kind']):<20} {m.get('width')}x{m.get('height')}  "
            f"{human_bytes(m['bytes'])}"
        )
    if fill.get("override_reason"):
        out(f"  override: {fill['override_reason']}")
    if fill.get("previous_fill_id"):
        out(f"  resubmission of fill {short_id(fill['previous_fill_id'])}")
    decision = fill.get("decision")
    if decision:
        verdict = "APPROVED" if decision["outcome"] == "approve" else "REJECTED"
        by = (decision.get("pharmacist") or {}).get("name")
        out(f"  {verdict} by {by} at {local_time(decision.get('decided_at'))}")
        if decision.get("reason_codes"):
            out("  reasons: " + "; ".join(labels.get(c, c) for c in decision["reason_codes"]))
        if decision.get("note"):
            out(f"  note: {decision['note']}")
        if verdict == "REJECTED":
            out(f"  Retake what was asked for, then: tp-site submit --resubmit-of {short_id(fill['id'])}")
    if fill["state"] in ("approved", "handed_out") and fill.get("counselling") in COUNSELLING_WORDS:
        out(f"  {COUNSELLING_WORDS[fill['counselling']]}")
    if fill["state"] == "approved" and fill.get("counselling") != "due":
        out(f"  Hand it to the patient, then: tp-site hand-out {short_id(fill['id'])}")


async def prescriptions_of(
    api: SiteApi, outbox: Outbox, fills: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Each fill's prescription: from this computer when it knows it, else looked up once and kept
    (a fill's prescription never changes; the site's fill list does not carry it)."""
    cached = {int(rx["id"]): rx for rx in outbox.cached_prescriptions()}
    found: dict[str, dict[str, Any]] = {}
    unknown = []
    for fill in fills:
        rx_id = fill.get("prescription_id") or outbox.prescription_of(fill["id"])
        if rx_id is not None and int(rx_id) in cached:
            found[fill["id"]] = cached[int(rx_id)]
        else:
            unknown.append(fill["id"])
    gate = asyncio.Semaphore(4)

    async def look_up(fill_id: str) -> None:
        async with gate:
            rx = (await api.fill(fill_id)).get("prescription")
        if rx:
            outbox.cache_prescriptions([rx])
            outbox.remember_prescription_of(fill_id, int(rx["id"]))
            found[fill_id] = rx

    await asyncio.gather(*(look_up(f) for f in unknown))
    return found


def fill_label(fill: dict[str, Any], rx: dict[str, Any] | None) -> str:
    return (
        f"Rx {(rx or {}).get('rx_number', '?')} {product(rx)}, {fill['state']}, "
        f"submitted {local_time(fill.get('submitted_at'))}"
    )


async def resolve_on_server(api: SiteApi, outbox: Outbox, text: str, *, state: str | None = None) -> str:
    """The site's fill a technician named by its short id: among the fills the server lists (and those
    of this outbox); several matches are an error that lists them."""
    fills = await api.fills(state)
    digits = fill_id_digits(text)
    matching = [f for f in fills if f["id"].replace("-", "").startswith(digits)]
    rxs = await prescriptions_of(api, outbox, matching)
    candidates = [(f["id"], fill_label(f, rxs.get(f["id"]))) for f in fills]
    if state is None:
        candidates += outbox_candidates(outbox, text)
    found = pick_fill(text, candidates, where="of this site")
    if found is None:
        which = f"{state} fill" if state else "fill"
        raise UsageError(f"No {which} {text} among this site's recent fills (see `tp-site status`).")
    return found


async def _status(cfg: SiteConfig, outbox: Outbox, fill_text: str | None, limit: int) -> None:
    async with SiteApi(cfg) as api:
        decisions = Decisions(api, outbox)
        if fill_text:
            fill_id = await resolve_on_server(api, outbox, fill_text)
            fill = await api.fill(fill_id)
            if fill.get("decision"):
                await decisions.notice_from(fill)
            else:
                outbox.set_fill_state(fill_id, fill["state"])
            _print_fill(fill, await decisions.labels() if fill.get("decision") else {})
            return
        fills = await api.fills(at_most=limit)
        rxs = await prescriptions_of(api, outbox, fills)
        decided = any((f.get("decision") or {}).get("reason_codes") for f in fills)
        labels = await decisions.labels() if decided else {}
        if not fills:
            out("No fills yet.")
        for fill in fills:
            rx = rxs.get(fill["id"]) or {}
            decision = fill.get("decision") or {}
            extra = ""
            if decision.get("reason_codes"):
                extra = "  reasons: " + "; ".join(labels.get(c, c) for c in decision["reason_codes"])
            out(
                f"{short_id(fill['id'])}  Rx {rx.get('rx_number', '?'):<10} {product(rx):<24} "
                f"{fill['state']:<10} {fill['priority']:<9} submitted {local_time(fill.get('submitted_at'))}"
                f"{extra}"
            )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        pending = outbox.entries([*OPEN_STATES, FAILED])
        if pending:
            out(f"{len(pending)} fill(s) in the outbox not delivered yet (see `tp-site outbox`).")
        try:
            asyncio.run(_status(cfg, outbox, args.fill_id, args.limit))
        except TokenRefused as exc:
            say(exc.message)
            say("What this computer knows:")
            _print_local(outbox, args.fill_id)
            return EXIT_REFUSED
        except ApiError as exc:
            if not exc.transient:
                raise
            say(f"{no_answer(exc)}; what this computer knows:")
            _print_local(outbox, args.fill_id)
    return EXIT_OK


def _print_local(outbox: Outbox, fill_text: str | None) -> None:
    """The outbox's fills (or the one named), as this computer knows them without the server."""
    entries = outbox.entries()
    if fill_text:
        found = pick_fill(fill_text, outbox_candidates(outbox, fill_text), where="here")
        entries = [e for e in entries if e.fill_id == found]
    for e in entries:
        out(entry_line(e, outbox.cached_prescription(rx_id=e.prescription_id)))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="the site's fills, or one fill with its decision")
    p.add_argument("fill_id", nargs="?", help="the fill's short id (8 characters, as shown) or its whole id")
    p.add_argument(
        "--limit",
        type=whole_number(1, 10_000, "a number of fills"),
        default=30,
        help="how many of the newest fills to list (default 30)",
    )
    p.set_defaults(func=run)
