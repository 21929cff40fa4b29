"""tp-site rx: list the site's prescriptions, enter one (with the original of a paper one), show one
with what the pharmacist said of it, attach an original, or correct an entry the pharmacist returned."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from remote_site_client.api import ApiError, SiteApi, TokenRefused
from remote_site_client.checks import ndc_label
from remote_site_client.commands import rx_import
from remote_site_client.commands.common import (
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REFUSED,
    EXIT_USAGE,
    UsageError,
    load_config,
    no_answer,
    number,
    out,
    rx_numbered,
    say,
    wait_seconds,
)
from remote_site_client.config import SiteConfig
from remote_site_client.originals import OriginalSender
from remote_site_client.outbox import DELIVERED, FAILED, Outbox
from remote_site_client.progress import human_bytes
from server.evidence.media import MAX_PHOTO_BYTES

# What the server takes as a prescription's original, by the file's first bytes (up to MAX_PHOTO_BYTES).
ORIGINAL_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"%PDF-")
# How the state of a prescription's data-entry verification reads in a list.
STATE_LABELS = {
    "not_required": "",
    "awaiting_verification": "waiting for PV1",
    "in_review": "in PV1",
    "verified": "verified",
    "returned": "RETURNED",
}
# What a correction may change, as options of `tp-site rx edit`.
EDITABLE = (
    "patient_name",
    "patient_dob",
    "prescriber",
    "drug",
    "strength",
    "dosage_form",
    "ndc",
    "quantity",
    "days_supply",
    "directions",
)

RX_FIELDS = (
    "rx_number",
    "patient_name",
    "patient_dob",
    "prescriber",
    "drug",
    "strength",
    "dosage_form",
    "ndc",
    "quantity",
    "days_supply",
    "directions",
)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        if args.rx_command == "create":
            original = (
                _original_file(args.original, "The prescription was not entered.") if args.original else None
            )
            body: dict[str, Any] = {name: getattr(args, name) for name in RX_FIELDS}
            body["dea_schedule"] = args.dea_schedule
            body["fill_type"] = args.fill_type
            rx = asyncio.run(_create_rx(cfg, body))
            outbox.cache_prescriptions([rx])
            out(
                f"Prescription Rx {rx['rx_number']} entered: {rx['drug']} {rx['strength']}, "
                f"NDC {ndc_label(rx['expected_ndc'])}."
                + (" It waits for the pharmacist's data-entry verification." if _waits(rx) else "")
            )
            if original is None:
                return EXIT_OK
            return asyncio.run(_send_original(cfg, outbox, int(rx["id"]), original, args.wait))
        if args.rx_command == "original":
            original = _original_file(args.file, "Nothing was stored.")
            rx = asyncio.run(_find(cfg, args.rx_number))
            return asyncio.run(_send_original(cfg, outbox, int(rx["id"]), original, args.wait))
        if args.rx_command == "show":
            return asyncio.run(_show(cfg, args.rx_number))
        if args.rx_command == "edit":
            changes = {name: getattr(args, name) for name in EDITABLE if getattr(args, name) is not None}
            if not changes:
                say("Name at least one field to correct (see tp-site rx edit --help).")
                return EXIT_USAGE
            rx = asyncio.run(_edit(cfg, args.rx_number, changes))
            outbox.cache_prescriptions([rx])
            out(
                f"Rx {rx['rx_number']} corrected ({', '.join(sorted(changes))})."
                + (" It waits for the pharmacist's data-entry verification again." if _waits(rx) else "")
            )
            return EXIT_OK
        status = EXIT_OK
        try:
            items = asyncio.run(_list_rx(cfg))
            outbox.cache_prescriptions(items)
        except TokenRefused as exc:
            say(exc.message)
            say("Showing the prescriptions kept on this computer.")
            items, status = outbox.cached_prescriptions(), EXIT_REFUSED
        except ApiError as exc:
            if not exc.transient:
                raise
            say(f"{no_answer(exc)}; showing the prescriptions kept on this computer.")
            items = outbox.cached_prescriptions()
        for rx in items:
            state = STATE_LABELS.get(rx.get("verification_state", ""), rx.get("verification_state", ""))
            out(
                f"Rx {rx['rx_number']:<12} {rx['drug']} {rx['strength']}  qty {number(rx['quantity'])}  "
                f"NDC {ndc_label(rx['expected_ndc'], billing=False)}  {rx['patient_name']}"
                + (f"  [{state}]" if state else "")
            )
        if not items:
            out("No prescriptions yet.")
    return status


def _waits(rx: dict[str, Any]) -> bool:
    return rx.get("verification_state") in ("awaiting_verification", "in_review")


def _original_file(name: str, untouched: str) -> Path:
    """The original's file, checked here before anything is entered or kept: a photo or scan, a fax's
    TIFF or a PDF, no larger than the server takes. What is wrong with it is for the technician to put
    right (a UsageError naming the file); `untouched` says what was left as it was."""
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"The original {name} is a folder: give the scan or photo itself. {untouched}")
    try:
        with path.open("rb") as f:
            head, size = f.read(8), os.fstat(f.fileno()).st_size
    except FileNotFoundError as exc:
        raise UsageError(
            f"The original {name} does not exist: check the file's name and folder. {untouched}"
        ) from exc
    except OSError as exc:
        raise UsageError(f"The original {name} cannot be read ({exc.strerror}). {untouched}") from exc
    if not head.startswith(ORIGINAL_MAGIC):
        raise UsageError(
            f"The original {name} is not a JPEG, PNG, TIFF or PDF: scan or photograph the paper "
            f"prescription again. {untouched}"
        )
    if size > MAX_PHOTO_BYTES:
        raise UsageError(
            f"The original {name} is {human_bytes(size)}, more than the {human_bytes(MAX_PHOTO_BYTES)} "
            f"the server takes: scan it again at a lower resolution. {untouched}"
        )
    return path


async def _send_original(cfg: SiteConfig, outbox: Outbox, rx_id: int, path: Path, patience: float) -> int:
    """Keeps the original in the outbox, then sends it; `tp-site sync` finishes what the link stops."""
    kept = outbox.add_original(rx_id, path)
    async with SiteApi(cfg) as api:
        result = await OriginalSender(cfg, outbox, api).deliver(kept.id, patience=patience)
    out(result.line())
    if result.state == DELIVERED:
        return EXIT_OK
    return EXIT_REFUSED if result.state == FAILED else EXIT_PENDING


async def _find(cfg: SiteConfig, rx_number: str) -> dict[str, Any]:
    async with SiteApi(cfg) as api:
        return await rx_numbered(api, None, rx_number)


async def _show(cfg: SiteConfig, rx_number: str) -> int:
    """One prescription as entered, its PV1 state, and each verification or return with its reasons."""
    found = await _find(cfg, rx_number)
    async with SiteApi(cfg) as api:
        _, view = await api.call("GET", f"/prescriptions/{found['id']}")
    rx = view["prescription"]
    out(f"Rx {rx['rx_number']} (version {rx['version']}): {rx['verification_state'].replace('_', ' ')}")
    for name in EDITABLE:
        value = rx.get("expected_ndc" if name == "ndc" else name)
        out(f"  {name.replace('_', ' '):<12} {value}")
    pages = len(view.get("original", []))
    if pages:
        out(f"  original     {pages} page{'s' if pages != 1 else ''}")
    for v in view.get("verifications", []):
        reasons = ", ".join(v["reason_codes"])
        out(
            f"  {v['outcome']} by {v['pharmacist']['name']} at {v['decided_at']}"
            + (f": {reasons}" if reasons else "")
            + (f" ({v['note']})" if v.get("note") else "")
        )
    return EXIT_OK


async def _edit(cfg: SiteConfig, rx_number: str, changes: dict[str, Any]) -> dict[str, Any]:
    found = await _find(cfg, rx_number)
    async with SiteApi(cfg) as api:
        _, rx = await api.call(
            "PATCH", f"/prescriptions/{found['id']}", {"version": found["version"], **changes}
        )
    return dict(rx)


async def _create_rx(cfg: SiteConfig, body: dict[str, Any]) -> dict[str, Any]:
    async with SiteApi(cfg) as api:
        return await api.create_prescription(body)


async def _list_rx(cfg: SiteConfig) -> list[dict[str, Any]]:
    async with SiteApi(cfg) as api:
        return await api.prescriptions()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rx", help="prescriptions of this site")
    rx_sub = p.add_subparsers(dest="rx_command", required=True)
    rx_sub.add_parser("list", help="list the site's prescriptions")
    c = rx_sub.add_parser("create", help="enter a prescription")
    # The server takes numbers as JSON numbers.
    types: dict[str, type] = {"quantity": float, "days_supply": int}
    for name in RX_FIELDS:
        c.add_argument("--" + name.replace("_", "-"), dest=name, required=True, type=types.get(name, str))
    c.add_argument("--dea-schedule", choices=["CII", "CIII", "CIV", "CV"])
    c.add_argument("--fill-type", choices=["new", "refill"], default="new")
    c.add_argument(
        "--original",
        metavar="FILE",
        help="the paper prescription as a photo or scan (JPEG, PNG), a fax (TIFF) or a PDF",
    )
    c.add_argument(
        "--wait",
        type=wait_seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds to keep sending the original",
    )
    o = rx_sub.add_parser("original", help="attach the original of a paper prescription entered before")
    o.add_argument("rx_number")
    o.add_argument("file", help="a photo or scan (JPEG, PNG), a fax (TIFF) or a PDF")
    o.add_argument(
        "--wait", type=wait_seconds, default=30.0, metavar="SECONDS", help="seconds to keep sending it"
    )
    show = rx_sub.add_parser("show", help="one prescription, with what the pharmacist said of it")
    show.add_argument("rx_number")
    e = rx_sub.add_parser("edit", help="correct a prescription (after a return); it waits for PV1 again")
    e.add_argument("rx_number")
    for name in EDITABLE:
        e.add_argument("--" + name.replace("_", "-"), dest=name, type=types.get(name, str))
    p.set_defaults(func=run)
    rx_import.add_parser(rx_sub)
