"""tp-site outbox: what waits to be sent or was refused, and why; fix a refused fill, discard one.

A fill the server refused for a reason retrying cannot cure (a view the site requires is missing, the
prescription is unknown, a photo was refused) stops and waits here for the technician: `fix` changes it
in place (a photo, the count, the prescription) and sends it again, `discard` gives up on it with a
reason. Both are recorded in the outbox's audit (`tp-site outbox history`). A refusal no change cures
(remote_site_client.refusals: the rejected fill was resubmitted already, no refill left) says so and
what to do instead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

from remote_site_client.api import SiteApi, TokenRefused
from remote_site_client.checks import CheckReport, check_submission, video_refusal
from remote_site_client.commands.common import (
    EXIT_CHECKS,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REFUSED,
    ONCE_ENROLLED,
    UsageError,
    counted,
    entry_id,
    entry_line,
    load_config,
    not_a_file,
    out,
    rx_numbered,
    wait_seconds,
    when,
    who,
)
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import (
    DELIVERED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUEUED,
    Entry,
    NotFixable,
    Original,
    Outbox,
    Recording,
)
from remote_site_client.progress import human_bytes, progress_board
from remote_site_client.refusals import cured_by_waiting, not_cured_by_a_change
from remote_site_client.sender import Sender
from server.evidence.kinds import KIND_NAMES

# What `--photo KIND=FILE` takes: the media kinds, also as the submit options spell them.
PHOTO_KINDS = (
    "stock_bottle",
    "pills",
    "vial_label",
    "measured_volume",
    "bottle_label",
    "final_package",
    "other",
    "count_video",
)


def _original_lines(o: Original) -> list[str]:
    label = {DELIVERED: "delivered", FAILED: "REFUSED"}.get(o.state, "pending")
    lines = [f"original of prescription {o.prescription_id} ({o.filename})  {human_bytes(o.bytes)}  {label}"]
    if o.state == FAILED:
        lines.append(f"    refused: {o.failed_reason}")
    elif o.state == PENDING and o.last_error:
        lines.append(f"    tries: {o.attempts}, last error: {o.last_error}")
    return lines


def _recording_lines(r: Recording) -> list[str]:
    label = {DELIVERED: "delivered", FAILED: "REFUSED"}.get(r.state, "pending")
    lines = [
        f"recording of consultation {r.consultation_id}  {human_bytes(r.bytes)}  {label}"
        f"  stored {when(r.created_at)}"
    ]
    if r.state == FAILED:
        lines.append(f"    refused: {r.failed_reason}")
    elif r.state == PENDING:
        retry = due(r.next_attempt_at)
        sending = ", uploading (resumes where it stopped)" if r.upload_url else ""
        lines.append(
            f"    tries: {r.attempts}, next: {retry}{sending}"
            + (f", last error: {r.last_error}" if r.last_error else "")
        )
    return lines


def due(at: float) -> str:
    """When the next try is: now, in so many seconds, or at a local time."""
    left = at - time.time()
    if left <= 0:
        return "now"
    return f"in {left:.0f} s" if left < 3600 else when(at)


def how_to_fix(e: Entry) -> list[str]:
    """What the technician can do about a refused fill, as commands to type: the change that cures it,
    or, when the server's code says no change can, what to do instead."""
    sid = e.short_id
    give_up = f'tp-site outbox discard {sid} --reason "WHY"'
    if why := not_cured_by_a_change(e.failed_code):
        see = " (`tp-site status` lists it)" if e.failed_code == "already_resubmitted" else ""
        return [f"    no change sends it: {why}{see}", f"    give it up: {give_up}"]
    if awaited := cured_by_waiting(e.failed_code):
        return [
            f"    it waits for {awaited} (`tp-site rx show {e.rx_number or 'RX'}`), "
            f"then goes as it is: tp-site outbox --retry {sid}",
            f"    or give up on it: {give_up}",
        ]
    kinds = [str(k) for k in e.failed_detail.get("missing", [])]
    if not kinds and e.failed_detail.get("kind"):
        kinds = [str(e.failed_detail["kind"])]
    if kinds:
        photos = " ".join(f"--photo {k}=FILE" for k in kinds)
        names = " and the ".join(KIND_NAMES.get(k, k) for k in kinds)
        fix = f"take the {names}, then: tp-site outbox fix {sid} {photos}"
    elif e.failed_code == "not_found":
        fix = f"enter the prescription (`tp-site rx create`), then: tp-site outbox fix {sid} --rx RX_NUMBER"
    else:
        fix = f"tp-site outbox fix {sid} --photo KIND=FILE or --count N (as it is: --retry {sid})"
    return [f"    to fix: {fix}", f"    or give up on it: {give_up}"]


def _entry_lines(outbox: Outbox, e: Entry) -> list[str]:
    lines = [entry_line(e, outbox.cached_prescription(rx_id=e.prescription_id))]
    if e.state == FAILED:
        lines.append(f"    refused: {e.failed_reason}")
        lines += how_to_fix(e)
    elif e.replaced_by:
        lines.append(f"    fixed: replaced by fill {e.replaced_by.replace('-', '')[:8]}")
    elif e.state in OPEN_STATES and e.last_error == TokenRefused.MESSAGE:
        lines.append(f"    waiting: the server refused this computer's device token; it goes {ONCE_ENROLLED}")
    elif e.state in OPEN_STATES:
        retry = due(e.next_attempt_at)
        lines.append(
            f"    tries: {e.attempts}, next: {retry}"
            + (f", last error: {e.last_error}" if e.last_error else "")
        )
    for f in e.files:
        size = human_bytes(f.original_bytes)
        sending = f" -> {human_bytes(f.bytes)}" if f.bytes is not None and f.bytes != f.original_bytes else ""
        done = "stored on server" if f.media_id is not None else ("uploading" if f.upload_url else "waiting")
        lines.append(f"    {KIND_NAMES.get(f.kind, f.kind):<20} {size}{sending}  {done}")
    return lines


def _list(args: argparse.Namespace, outbox: Outbox) -> int:
    if args.retry:
        fill_id = entry_id(outbox, args.retry)
        if not outbox.requeue(fill_id):
            raise UsageError(f"Fill {args.retry} was not refused: nothing to send again.")
        out(f"Fill {args.retry} will be sent again.")
        return EXIT_OK
    if args.retry_recording is not None:
        if not outbox.requeue_recording(args.retry_recording):
            raise UsageError(f"Consultation {args.retry_recording} has no refused recording here.")
        out(f"The recording of consultation {args.retry_recording} will be sent again.")
        return EXIT_OK
    entries = outbox.entries(None if args.all else [*OPEN_STATES, FAILED])
    states = None if args.all else [PENDING, FAILED]
    recordings, originals = outbox.recordings(states), outbox.originals(states)
    lines = [line for r in recordings for line in _recording_lines(r)]
    lines += [line for o in originals for line in _original_lines(o)]
    for line in lines:
        out(line)
    if not entries and not lines:
        out("The outbox is empty: everything was delivered.")
    refused = [e for e in entries if e.state == FAILED]
    if refused:
        out(
            f"{len(refused)} fill(s) refused by the server: they wait for you, not sent again by "
            "themselves; each says what to do."
        )
    for e in entries:
        for line in _entry_lines(outbox, e):
            out(line)
    return EXIT_OK


def _photo(text: str) -> tuple[str, Path]:
    kind, sep, path = text.partition("=")
    kind = kind.strip().lower().replace("-", "_")
    if not sep or kind not in PHOTO_KINDS or not path:
        raise UsageError(f"--photo takes KIND=FILE, KIND one of {', '.join(PHOTO_KINDS)} (not {text!r}).")
    if why := not_a_file(kind, Path(path)):
        raise UsageError(why)
    if kind == "count_video" and (why := video_refusal(Path(path), f"--photo {text}")):
        raise UsageError(f"{why} Nothing was changed.")
    return kind, Path(path)


async def _prescription(cfg: SiteConfig, outbox: Outbox, rx_number: str) -> dict[str, Any]:
    if (rx := outbox.cached_prescription(rx_number=rx_number)) is not None:
        return rx
    async with SiteApi(cfg) as api:
        return await rx_numbered(api, outbox, rx_number)


def _check(cfg: SiteConfig, files: list[tuple[str, Path]], rx: dict[str, Any] | None) -> CheckReport:
    """The fixed fill's photos, all of them, through the same checks as `submit`."""
    out("Checking the photos...")
    report = check_submission(
        files,
        scanned=[],
        expected_ndc=rx["expected_ndc"] if rx else None,
        today=dt.date.today(),
        thresholds=cfg.thresholds(),
    )
    for note in report.notes:
        out(f"  ok: {note}")
    for problem in report.problems:
        out(f"  PROBLEM: {problem.message}")
    return report


def fix_needs_new_id(entry: Entry, body: dict[str, Any], new_kinds: set[str]) -> bool:
    """Whether a fixed fill must go under a new id: the server may hold a draft under this one that a
    changed request, or a replaced photo it stored, no longer matches."""
    changed_body = any(
        body.get(k) != entry.body.get(k) for k in ("prescription_id", "counted_quantity", "barcodes")
    )
    replaced_stored = any(f.kind in new_kinds and f.media_id is not None for f in entry.files)
    return (changed_body and entry.fill_state is not None) or replaced_stored


def _fix(args: argparse.Namespace, cfg: SiteConfig, outbox: Outbox) -> int:
    fill_id = entry_id(outbox, args.fill_id)
    entry = outbox.get(fill_id)
    assert entry is not None
    if entry.state != FAILED:
        raise UsageError(
            f"Fill {entry.short_id} was not refused (it is {entry.state}): there is nothing to fix."
        )
    photos = [_photo(p) for p in args.photo or []]
    if not photos and args.count is None and args.rx is None:
        raise UsageError("Say what to change: --photo KIND=FILE, --count N or --rx RX_NUMBER.")
    body = dict(entry.body)
    rx_number = entry.rx_number
    rx = outbox.cached_prescription(rx_id=entry.prescription_id)
    if args.rx is not None:
        rx = asyncio.run(_prescription(cfg, outbox, args.rx))
        body["prescription_id"] = int(rx["id"])
        rx_number = str(rx["rx_number"])
    if args.count is not None:
        body["counted_quantity"] = args.count
    new_kinds = {k for k, _ in photos}
    files = [(f.kind, f.original) for f in entry.files if f.kind not in new_kinds] + photos
    report = _check(cfg, files, rx)
    if not report.ok and not body.get("override_reason"):
        out("Nothing was changed. Retake the photos above.")
        return EXIT_CHECKS
    if "stock_bottle" in new_kinds:
        body["barcodes"] = report.barcodes[:10]
    rekey = fix_needs_new_id(entry, body, new_kinds)
    what = ", ".join(
        [*(f"{KIND_NAMES.get(k, k)} {p.name}" for k, p in photos)]
        + ([f"count {args.count:g}"] if args.count is not None else [])
        + ([f"Rx {rx_number}"] if args.rx is not None else [])
    )
    try:
        new_id = outbox.fix(
            fill_id,
            photos=photos,
            body=body,
            rekey=rekey,
            rx_number=rx_number,
            actor=who(args),
            reason=args.reason or f"fixed: {what}",
        )
    except NotFixable as exc:
        raise UsageError(str(exc)) from exc
    if new_id != fill_id:
        out(f"Fixed ({what}) as fill {new_id.replace('-', '')[:8]}, which replaces {entry.short_id}.")
    else:
        out(f"Fixed ({what}).")
    if args.no_send:
        out("It will be sent by `tp-site sync`.")
        return EXIT_PENDING
    return asyncio.run(_send(cfg, outbox, new_id, args.wait))


async def _send(cfg: SiteConfig, outbox: Outbox, fill_id: str, patience: float) -> int:
    async with SiteApi(cfg) as api:
        result = await Sender(cfg, outbox, api, progress=progress_board()).deliver(fill_id, patience=patience)
    sid = fill_id.replace("-", "")[:8]
    if result.state == QUEUED:
        out(f"Fill {sid} is queued for verification.")
        return EXIT_OK
    if result.token_refused:
        out(result.error or "")
        out(f"Fill {sid} waits in the outbox: it goes {ONCE_ENROLLED}.")
        return EXIT_PENDING
    if result.state == FAILED:
        out(f"The server refused fill {sid} again: {result.error}")
        return EXIT_REFUSED
    out(
        f"Not sent yet ({result.error or 'link down'}). It is kept in the outbox; `tp-site sync` delivers it."
    )
    return EXIT_PENDING


def _discard(args: argparse.Namespace, outbox: Outbox) -> int:
    if not args.reason.strip():
        raise UsageError("Say why the fill is discarded: --reason TEXT.")
    fill_id = entry_id(outbox, args.fill_id)
    try:
        entry = outbox.discard(fill_id, actor=who(args), reason=args.reason.strip())
    except NotFixable as exc:
        raise UsageError(str(exc)) from exc
    out(
        f"Fill {entry.short_id} (Rx {entry.rx_number or '?'}) discarded: it will not be sent, and its photos "
        "are deleted from this computer. Recorded in `tp-site outbox history`."
    )
    return EXIT_OK


def _history(args: argparse.Namespace, outbox: Outbox) -> int:
    fill_id = entry_id(outbox, args.fill_id) if args.fill_id else None
    rows = outbox.audit_log(fill_id)
    if not rows:
        out("Nothing was fixed or discarded here.")
    for r in rows:
        extra = (
            f" -> fill {r.detail['replaced_by'].replace('-', '')[:8]}" if r.detail.get("replaced_by") else ""
        )
        out(f"{when(r.at)}  {r.fill_id.replace('-', '')[:8]}  {r.action:<9} by {r.actor}: {r.reason}{extra}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        if args.outbox_command == "fix":
            return _fix(args, cfg, outbox)
        if args.outbox_command == "discard":
            return _discard(args, outbox)
        if args.outbox_command == "history":
            return _history(args, outbox)
        return _list(args, outbox)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "outbox",
        help="what is waiting to be sent or was refused, and why; fix or discard a refused fill",
        description="Fills are named by their short id (the 8 characters shown).",
    )
    p.add_argument("--all", action="store_true", help="include delivered and discarded fills and recordings")
    p.add_argument("--retry", metavar="FILL_ID", help="send a refused fill again as it is")
    p.add_argument(
        "--retry-recording",
        type=int,
        metavar="CONSULTATION_ID",
        help="send a refused consultation recording again",
    )
    p.set_defaults(func=run, outbox_command=None)
    actions = p.add_subparsers(dest="outbox_command")
    fix = actions.add_parser(
        "fix",
        help="change a refused fill (a photo, the count, the prescription) and send it again",
        description="Exit status: 0 queued for verification, 1 a photo check failed (nothing changed), "
        "3 fixed but not delivered yet (sync delivers it), 4 refused again.",
    )
    fix.add_argument("fill_id", metavar="FILL_ID")
    fix.add_argument(
        "--photo",
        action="append",
        metavar="KIND=FILE",
        help=f"a photo to add, or to replace the fill's of that kind ({', '.join(PHOTO_KINDS)}); repeatable",
    )
    fix.add_argument("--count", type=counted, help="the counted quantity")
    fix.add_argument("--rx", metavar="RX_NUMBER", help="the prescription the fill is for")
    fix.add_argument("--reason", help="why, for the outbox's audit (default: what was changed)")
    fix.add_argument(
        "--by", metavar="NAME", help="who fixes it, for the audit (default: this computer's user)"
    )
    fix.add_argument("--no-send", action="store_true", help="leave the sending to `tp-site sync`")
    fix.add_argument(
        "--wait", type=wait_seconds, default=120.0, metavar="SECONDS", help="how long to keep trying now"
    )
    discard = actions.add_parser("discard", help="give up on a fill not delivered: never sent, audited")
    discard.add_argument("fill_id", metavar="FILL_ID")
    discard.add_argument("--reason", required=True, help="why it is discarded (kept in the outbox's audit)")
    discard.add_argument("--by", metavar="NAME", help="who discards it (default: this computer's user)")
    history = actions.add_parser("history", help="what was fixed or discarded here: who, when and why")
    history.add_argument("fill_id", nargs="?", metavar="FILL_ID")
