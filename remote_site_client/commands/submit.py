"""tp-site submit: check the photos, store the fill in the outbox, and send it."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_site_client.api import ApiError, SiteApi, TokenRefused
from remote_site_client.checks import CheckReport, check_submission, video_refusal
from remote_site_client.commands.common import (
    EXIT_CHECKS,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REFUSED,
    ONCE_ENROLLED,
    UsageError,
    counted,
    load_config,
    not_a_file,
    out,
    outbox_candidates,
    pick_fill,
    rx_numbered,
    wait_seconds,
)
from remote_site_client.commands.outbox import how_to_fix
from remote_site_client.commands.status import STATE_WORDS, resolve_on_server
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import FAILED, QUEUED, Outbox, short_id
from remote_site_client.progress import progress_board
from remote_site_client.refusals import not_cured_by_a_change
from remote_site_client.sender import Sender
from server.evidence.kinds import KIND_NAMES

PHOTO_OPTIONS = (
    ("stock_bottle", "--stock-bottle"),
    ("pills", "--pills"),
    ("vial_label", "--vial-label"),
    ("measured_volume", "--measured-volume"),
    ("bottle_label", "--bottle-label"),
    ("final_package", "--final-package"),
)
# A fill's priorities, as the server takes them (server.fills.rules), in its queue's order. A fill sent
# without one is DEFAULT_PRIORITY, but a resubmission keeps the priority of the fill it replaces.
PRIORITIES = ("waiting", "routine", "delivery")
DEFAULT_PRIORITY = "routine"


def _files(args: argparse.Namespace, *, resubmitting: bool = False) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for kind, _ in PHOTO_OPTIONS:
        value = getattr(args, kind)
        if value:
            files.append((kind, Path(value)))
    files += [("other", Path(p)) for p in args.other or []]
    if args.video:
        files.append(("count_video", Path(args.video)))
    for kind, path in files:
        if why := not_a_file(kind, path):
            raise UsageError(why)
        if kind == "count_video" and (why := video_refusal(path, f"--video {path}")):
            raise UsageError(f"{why} Nothing was stored.")
    if not resubmitting and not any(kind == "stock_bottle" for kind, _ in files):
        raise UsageError("A fill needs the stock bottle photo (--stock-bottle FILE).")
    return files


@dataclass
class Rejected:
    """The rejected fill a resubmission replaces: its id, prescription, count and photos to keep."""

    fill_id: str
    prescription_id: int
    counted_quantity: float | None
    # (kind, a file here holding it) for each photo of the rejected fill.
    files: list[tuple[str, Path]]


class NoCopyOffline(UsageError):
    """The server cannot be reached, and this computer holds no copy of the rejected fill (another one
    sent it, or its rejection never reached this one): only the server can give its photos."""


async def rejected_fill(
    cfg: SiteConfig, outbox: Outbox, text: str, workdir: Path, keep: set[str]
) -> Rejected:
    """The rejected fill named by `text` (short id), with a local copy of each of its photos whose kind
    is not in `keep`: the outbox's original when it still has it, else the one the server stored."""
    refused: TokenRefused | None = None
    try:
        async with SiteApi(cfg) as api:
            fill_id = await resolve_on_server(api, outbox, text, state="rejected")
            _not_resubmitted(fill_id, await api.resubmission_of(fill_id), outbox)
            fill = await api.fill(fill_id)
            local = outbox.get(fill_id)
            originals = {f.kind: f.original for f in (local.files if local else ()) if f.original.exists()}
            files: list[tuple[str, Path]] = []
            for m in fill.get("media", []):
                kind = str(m["kind"])
                if kind in keep:
                    continue
                if kind in originals and kind != "other":
                    files.append((kind, originals.pop(kind)))
                    continue
                dest = workdir / f"{len(files):02d}-{kind}{_suffix(m.get('content_type'))}"
                await api.download(str(m["url"]), dest)
                files.append((kind, dest))
            count = fill.get("counted_quantity")
            return Rejected(fill_id, int(fill["prescription"]["id"]), count, files)
    except ApiError as exc:
        if not exc.transient:
            raise
        if isinstance(exc, TokenRefused):
            refused = exc
    # Offline: what this computer kept of a fill it sent and heard was rejected.
    found = pick_fill(text, outbox_candidates(outbox, text), where="in this outbox")
    entry = outbox.get(found) if found else None
    if entry is None or entry.fill_state != "rejected":
        if refused is not None:
            raise refused
        raise NoCopyOffline(
            f"The server cannot be reached, and no rejected fill {text} is known here: try again when "
            "the link is back."
        )
    _not_resubmitted(entry.fill_id, None, outbox)
    files = [(f.kind, f.original) for f in entry.files if f.kind not in keep and f.original.exists()]
    count = entry.body.get("counted_quantity")
    return Rejected(entry.fill_id, entry.prescription_id, count, files)


def _not_resubmitted(fill_id: str, on_server: dict[str, Any] | None, outbox: Outbox) -> None:
    """Refuses, before anything is stored, a retake of a rejected fill another fill replaces already
    (`on_server`, the server's, or one in this outbox): the server takes one resubmission of a rejected
    fill, and would refuse a second only once it was stored here and sent."""
    if on_server is not None:
        new, state = short_id(on_server["id"]), STATE_WORDS.get(on_server["state"], on_server["state"])
        where = f"{state}; see `tp-site status {new}`"
    elif (local := outbox.resubmission_of(fill_id)) is not None:
        new = local.short_id
        where = {
            FAILED: "refused by the server; `tp-site outbox` says how to fix it, or discard it",
            QUEUED: f"sent; see `tp-site status {new}`",
        }.get(local.state, "in this outbox, not sent yet; see `tp-site outbox`")
    else:
        return
    raise UsageError(
        f"The rejected fill {short_id(fill_id)} was resubmitted already: fill {new} replaces it ({where}). "
        "Nothing was stored."
    )


def _suffix(content_type: object) -> str:
    return {"image/png": ".png", "video/mp4": ".mp4", "video/webm": ".webm"}.get(str(content_type), ".jpg")


async def _find_rx(cfg: SiteConfig, outbox: Outbox, args: argparse.Namespace) -> dict[str, Any] | None:
    """The prescription from the local copy, else from the server; None when offline and unknown."""
    rx_id = args.prescription_id
    rx = outbox.cached_prescription(rx_id=rx_id, rx_number=args.rx)
    if rx is not None:
        return rx
    try:
        async with SiteApi(cfg) as api:
            if args.rx is not None:
                return await rx_numbered(api, outbox, args.rx)
            items = await api.prescriptions()
    except ApiError as exc:
        if not exc.transient or (isinstance(exc, TokenRefused) and rx_id is None):
            raise
        return None
    outbox.cache_prescriptions(items)
    rx = outbox.cached_prescription(rx_id=rx_id)
    if rx is None:
        raise UsageError(f"No prescription {rx_id} at this site: enter it with `tp-site rx create`.")
    return rx


def _require_views(rx: dict[str, Any], files: list[tuple[str, Path]]) -> None:
    """Refuses, before anything is stored or sent, a fill without a photo the server will ask for (the
    prescription's list: its dosage form under the site's rules). Sent, it would be refused only after
    its other photos went over the link."""
    given = {kind for kind, _ in files}
    lacking = [k for k in rx.get("required_media_kinds") or () if k not in given]
    if lacking:
        options = {**dict(PHOTO_OPTIONS), "count_video": "--video", "other": "--other"}
        names = " and the ".join(KIND_NAMES.get(k, k) for k in lacking)
        how = " ".join(f"{options.get(k, k)} FILE" for k in lacking)
        raise UsageError(f"Rx {rx['rx_number']} needs the {names} too ({how}). Nothing was stored.")


def _print_report(report: CheckReport) -> None:
    for note in report.notes:
        out(f"  ok: {note}")
    for problem in report.problems:
        out(f"  PROBLEM: {problem.message}")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if not (args.rx or args.prescription_id is not None or args.resubmit_of):
        raise UsageError("Say which prescription: --rx RX_NUMBER (or --resubmit-of FILL_ID for a retake).")
    files = _files(args, resubmitting=bool(args.resubmit_of))
    with Outbox(cfg.data_dir) as outbox, tempfile.TemporaryDirectory(prefix="tp-site-") as work:
        previous: Rejected | None = None
        if args.resubmit_of:
            given = {kind for kind, _ in files}
            previous = asyncio.run(rejected_fill(cfg, outbox, args.resubmit_of, Path(work), given))
            if args.rx is None and args.prescription_id is None:
                args.prescription_id = previous.prescription_id
            order = [kind for kind, _ in PHOTO_OPTIONS] + ["other", "count_video"]
            previous.files.sort(key=lambda kf: order.index(kf[0]) if kf[0] in order else len(order))
            kept = [kind for kind, _ in previous.files]
            files += previous.files
            if args.count is None and previous.counted_quantity is not None:
                args.count = float(previous.counted_quantity)
                kept.append(f"count {args.count:g}")
            if kept:
                names = ", ".join(KIND_NAMES.get(k, k) for k in kept)
                out(f"Kept from the rejected fill {short_id(previous.fill_id)}: {names}.")
        return _submit(cfg, outbox, args, files, previous)


def _submit(
    cfg: SiteConfig,
    outbox: Outbox,
    args: argparse.Namespace,
    files: list[tuple[str, Path]],
    previous: Rejected | None,
) -> int:
    rx = asyncio.run(_find_rx(cfg, outbox, args))
    if rx is None and args.prescription_id is None:
        raise UsageError(
            "The server cannot be reached and this prescription is not known here: give --prescription-id."
        )
    prescription_id = int(rx["id"]) if rx else int(args.prescription_id)
    if rx is not None:
        _require_views(rx, files)
    out("Checking the photos...")
    report = check_submission(
        files,
        scanned=args.barcode or [],
        expected_ndc=rx["expected_ndc"] if rx else None,
        today=dt.date.today(),
        thresholds=cfg.thresholds(),
    )
    _print_report(report)
    if not report.ok and not args.override:
        out('Nothing was sent. Retake the photos above, or send anyway with --override "REASON".')
        return EXIT_CHECKS
    if not report.ok:
        out(f"Sending anyway: override recorded with the reason {args.override!r}.")
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "prescription_id": prescription_id,
        "barcodes": report.barcodes[:10],
    }
    if args.priority is not None:
        body["priority"] = args.priority
    if args.count is not None:
        body["counted_quantity"] = args.count
    if previous is not None:
        body["previous_fill_id"] = previous.fill_id
    if args.override:
        body["override_reason"] = args.override
        # Which check was sent past, on which photo: the pharmacist acknowledges each.
        body["overridden_checks"] = [{"kind": p.kind, "check": p.code} for p in report.problems]
    fill_id = outbox.add(body, files, rx_number=rx["rx_number"] if rx else None)
    out(f"Stored in the outbox as fill {short_id(fill_id)} (id {fill_id}).")
    if args.no_send:
        out("It will be sent by `tp-site sync`.")
        return EXIT_PENDING
    return asyncio.run(_send_now(cfg, outbox, fill_id, args.wait))


async def _send_now(cfg: SiteConfig, outbox: Outbox, fill_id: str, patience: float) -> int:
    async with SiteApi(cfg) as api:
        sender = Sender(cfg, outbox, api, progress=progress_board())
        result = await sender.deliver(fill_id, patience=patience)
    if result.state == QUEUED:
        out(
            f"Fill {short_id(fill_id)} is queued for verification. "
            "Wait for the pharmacist's decision before handing it out."
        )
        return EXIT_OK
    if result.token_refused:
        out(result.error or "")
        out(f"Fill {short_id(fill_id)} waits in the outbox: it goes {ONCE_ENROLLED}.")
        return EXIT_PENDING
    if result.state == FAILED:
        out(f"The server refused fill {short_id(fill_id)}: {result.error}")
        fixable = not_cured_by_a_change(result.code) is None
        out(
            "It is not sent again by itself. It waits in the outbox"
            + (" (`tp-site outbox` says how to fix it):" if fixable else ":")
        )
        entry = outbox.get(fill_id)
        if entry is not None:
            for line in how_to_fix(entry):
                out(line)
        return EXIT_REFUSED
    out(
        f"Not sent yet ({result.error or 'link down'}). It is safe in the outbox; `tp-site sync` delivers it."
    )
    return EXIT_PENDING


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "submit",
        help="check the photos, store the fill in the outbox, and send it",
        description="Exit status: 0 queued for verification, 1 a check failed (nothing stored), "
        "3 stored but not delivered yet (sync delivers it), 4 refused by the server.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rx", help="the prescription's Rx number")
    which.add_argument("--prescription-id", type=int, help="the prescription's id on the server")
    for kind, option in PHOTO_OPTIONS:
        p.add_argument(option, dest=kind, metavar="FILE", help=f"the {KIND_NAMES[kind]}")
    p.add_argument("--other", action="append", metavar="FILE", help="another photo (repeatable)")
    p.add_argument("--video", metavar="FILE", help="a short count video (MP4 or WebM)")
    p.add_argument(
        "--barcode",
        action="append",
        metavar="TEXT",
        help="scanned barcode text (default: read from the stock bottle photo)",
    )
    p.add_argument("--count", type=counted, help="the counted quantity")
    p.add_argument(
        "--priority",
        choices=PRIORITIES,
        help=f"{DEFAULT_PRIORITY} when not given; a resubmission keeps the rejected fill's",
    )
    p.add_argument("--override", metavar="REASON", help="send although a check failed; the reason is audited")
    p.add_argument(
        "--resubmit-of",
        metavar="FILL_ID",
        help="the rejected fill this replaces (short id); its photos and count are kept unless given anew",
    )
    p.add_argument("--no-send", action="store_true", help="only store it in the outbox")
    p.add_argument(
        "--wait",
        type=wait_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long to keep trying now before leaving it to `tp-site sync`",
    )
    p.set_defaults(func=run)
