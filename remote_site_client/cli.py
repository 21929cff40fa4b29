"""tp-site: enroll, rx, submit, status, outbox, watch and sync, for the technician at a remote site."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remote_site_client import config as site_config
from remote_site_client.api import ApiError, SiteApi
from remote_site_client.checks import CheckReport, check_submission
from remote_site_client.config import ConfigError, SiteConfig
from remote_site_client.live import Decisions, listen, run_hook
from remote_site_client.outbox import (
    DELIVERED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUEUED,
    Entry,
    Outbox,
    Recording,
)
from remote_site_client.progress import human_bytes, progress_board
from remote_site_client.recordings import RecordingAttempt, RecordingSender
from remote_site_client.sender import Sender
from server.evidence.kinds import KIND_NAMES

log = logging.getLogger("tp-site")

EXIT_OK = 0
EXIT_CHECKS = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_REFUSED = 4

PHOTO_OPTIONS = (
    ("stock_bottle", "--stock-bottle"),
    ("pills", "--pills"),
    ("vial_label", "--vial-label"),
    ("final_package", "--final-package"),
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


class UsageError(Exception):
    """A mistake on the command line or in the site's setup; the message says what to do."""


def out(text: str = "") -> None:
    print(text, flush=True)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else site_config.default_config_path()


def _load(args: argparse.Namespace) -> SiteConfig:
    return site_config.load(_config_path(args))


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


# -- enroll --------------------------------------------------------------------------------------


def _read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    if os.environ.get("TP_SITE_TOKEN"):
        return os.environ["TP_SITE_TOKEN"].strip()
    if args.token:
        return str(args.token).strip()
    if sys.stdin.isatty():
        return getpass.getpass("Device token (from the administrator): ").strip()
    return sys.stdin.readline().strip()


def cmd_enroll(args: argparse.Namespace) -> int:
    token = _read_token(args)
    if not token:
        raise UsageError(
            "No device token given: pass --token-file FILE, TP_SITE_TOKEN, or type it when asked."
        )
    path = _config_path(args)
    previous: SiteConfig | None = None
    with contextlib.suppress(ConfigError):
        previous = site_config.load(path)
    data_dir = (
        Path(args.data_dir)
        if args.data_dir
        else (previous.data_dir if previous else site_config.default_data_dir())
    )
    cfg = SiteConfig(server_url=args.server.rstrip("/"), token=token, data_dir=data_dir.resolve())
    tuning = {
        "long_edge": args.long_edge,
        "jpeg_quality": args.jpeg_quality,
        "retention_days": args.retention_days,
        "min_long_edge": args.min_long_edge,
        "min_short_edge": args.min_short_edge,
        "chunk_bytes": args.chunk_bytes,
        "retry_base_seconds": args.retry_base_seconds,
    }
    cfg = cfg.with_(**{k: v for k, v in tuning.items() if v is not None})
    who = ""
    if not args.no_verify:
        me = asyncio.run(_whoami(cfg))
        user = me["user"]
        if user["role"] != "technician":
            raise UsageError(
                f"This token belongs to {user['username']}, a {user['role']}: "
                "a site needs a technician's token."
            )
        who = f" as {user['display_name']} (site {user['site_id']})"
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    site_config.save(cfg, path)
    Outbox(cfg.data_dir).close()
    out(f"Enrolled with {cfg.server_url}{who}. Settings in {path} (readable by you only).")
    return EXIT_OK


async def _whoami(cfg: SiteConfig) -> dict[str, Any]:
    async with SiteApi(cfg) as api:
        return await api.whoami()


# -- rx ------------------------------------------------------------------------------------------


def cmd_rx(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with Outbox(cfg.data_dir) as outbox:
        if args.rx_command == "create":
            body: dict[str, Any] = {name: getattr(args, name) for name in RX_FIELDS}
            body["dea_schedule"] = args.dea_schedule
            body["fill_type"] = args.fill_type
            rx = asyncio.run(_create_rx(cfg, body))
            outbox.cache_prescriptions([rx])
            out(
                f"Prescription {rx['id']} (Rx {rx['rx_number']}) entered: {rx['drug']} {rx['strength']}, "
                f"NDC {rx['expected_ndc']}."
            )
            return EXIT_OK
        try:
            items = asyncio.run(_list_rx(cfg))
            outbox.cache_prescriptions(items)
        except ApiError as exc:
            if not exc.transient:
                raise
            say(f"Offline ({exc.message}); showing the prescriptions kept on this computer.")
            items = outbox.cached_prescriptions()
        for rx in items:
            out(
                f"{rx['id']:>6}  Rx {rx['rx_number']:<12} {rx['drug']} {rx['strength']}  "
                f"qty {rx['quantity']:g}  NDC {rx['expected_ndc']}  {rx['patient_name']}"
            )
        if not items:
            out("No prescriptions yet.")
    return EXIT_OK


async def _create_rx(cfg: SiteConfig, body: dict[str, Any]) -> dict[str, Any]:
    async with SiteApi(cfg) as api:
        return await api.create_prescription(body)


async def _list_rx(cfg: SiteConfig) -> list[dict[str, Any]]:
    async with SiteApi(cfg) as api:
        return await api.prescriptions()


# -- submit --------------------------------------------------------------------------------------


def _files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for kind, _ in PHOTO_OPTIONS:
        value = getattr(args, kind)
        if value:
            files.append((kind, Path(value)))
    files += [("other", Path(p)) for p in args.other or []]
    if args.video:
        files.append(("count_video", Path(args.video)))
    for kind, path in files:
        if not path.is_file():
            raise UsageError(f"The {KIND_NAMES.get(kind, kind)} {path} does not exist.")
    if not any(kind == "stock_bottle" for kind, _ in files):
        raise UsageError("A fill needs the stock bottle photo (--stock-bottle FILE).")
    return files


async def _find_rx(cfg: SiteConfig, outbox: Outbox, args: argparse.Namespace) -> dict[str, Any] | None:
    """The prescription from the local copy, else from the server; None when offline and unknown."""
    rx_id = args.prescription_id
    rx = outbox.cached_prescription(rx_id=rx_id, rx_number=args.rx)
    if rx is not None:
        return rx
    try:
        async with SiteApi(cfg) as api:
            items = await api.prescriptions()
    except ApiError as exc:
        if not exc.transient:
            raise
        return None
    outbox.cache_prescriptions(items)
    rx = outbox.cached_prescription(rx_id=rx_id, rx_number=args.rx)
    if rx is None:
        raise UsageError(
            f"No prescription {args.rx or rx_id} at this site: enter it with `tp-site rx create`."
        )
    return rx


def _print_report(report: CheckReport) -> None:
    for note in report.notes:
        out(f"  ok: {note}")
    for problem in report.problems:
        out(f"  PROBLEM: {problem.message}")


def cmd_submit(args: argparse.Namespace) -> int:
    cfg = _load(args)
    files = _files(args)
    with Outbox(cfg.data_dir) as outbox:
        rx = asyncio.run(_find_rx(cfg, outbox, args))
        if rx is None and args.prescription_id is None:
            raise UsageError(
                "The server cannot be reached and this prescription is not known here: "
                "give --prescription-id."
            )
        prescription_id = int(rx["id"]) if rx else int(args.prescription_id)
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
            "priority": args.priority,
            "barcodes": report.barcodes[:10],
        }
        if args.count is not None:
            body["counted_quantity"] = args.count
        if args.resubmit_of:
            body["previous_fill_id"] = args.resubmit_of
        if args.override:
            body["override_reason"] = args.override
        fill_id = outbox.add(body, files, rx_number=rx["rx_number"] if rx else None)
        out(f"Stored in the outbox as fill {fill_id}.")
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
            f"Fill {fill_id} is queued for verification. "
            "Wait for the pharmacist's decision before handing it out."
        )
        return EXIT_OK
    if result.state == FAILED:
        out(f"The server refused fill {fill_id}: {result.error}")
        out("It stays in the outbox (see `tp-site outbox`); fix the cause, then `tp-site outbox --retry ID`.")
        return EXIT_REFUSED
    out(
        f"Not sent yet ({result.error or 'link down'}). It is safe in the outbox; `tp-site sync` delivers it."
    )
    return EXIT_PENDING


# -- status and outbox ---------------------------------------------------------------------------


def _entry_line(e: Entry) -> str:
    label = {QUEUED: "delivered", FAILED: "FAILED"}.get(e.state, f"pending ({e.state})")
    decided = f", {e.fill_state}" if e.fill_state in ("approved", "rejected", "in_review") else ""
    return (
        f"{e.fill_id}  Rx {e.rx_number or e.prescription_id}  {label}{decided}  stored {_when(e.created_at)}"
    )


def _recording_lines(r: Recording) -> list[str]:
    label = {DELIVERED: "delivered", FAILED: "FAILED"}.get(r.state, "pending")
    lines = [
        f"recording of consultation {r.consultation_id}  {human_bytes(r.bytes)}  {label}"
        f"  stored {_when(r.created_at)}"
    ]
    if r.state == FAILED:
        lines.append(f"    refused: {r.failed_reason}")
    elif r.state == PENDING:
        retry = "now" if r.next_attempt_at <= time.time() else _when(r.next_attempt_at)
        sending = ", uploading (resumes where it stopped)" if r.upload_url else ""
        lines.append(
            f"    tries: {r.attempts}, next: {retry}{sending}"
            + (f", last error: {r.last_error}" if r.last_error else "")
        )
    return lines


def cmd_outbox(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with Outbox(cfg.data_dir) as outbox:
        if args.retry:
            if not outbox.requeue(args.retry):
                raise UsageError(f"{args.retry} is not a failed entry of this outbox.")
            out(f"Fill {args.retry} will be sent again.")
            return EXIT_OK
        if args.retry_recording is not None:
            if not outbox.requeue_recording(args.retry_recording):
                raise UsageError(f"Consultation {args.retry_recording} has no refused recording here.")
            out(f"The recording of consultation {args.retry_recording} will be sent again.")
            return EXIT_OK
        entries = outbox.entries(None if args.all else [*OPEN_STATES, FAILED])
        recordings = outbox.recordings(None if args.all else [PENDING, FAILED])
        for r in recordings:
            for line in _recording_lines(r):
                out(line)
        if not entries and not recordings:
            out("The outbox is empty: everything was delivered.")
        for e in entries:
            out(_entry_line(e))
            if e.state == FAILED:
                out(f"    refused: {e.failed_reason}")
            elif e.state != QUEUED:
                retry = "now" if e.next_attempt_at <= time.time() else _when(e.next_attempt_at)
                out(
                    f"    tries: {e.attempts}, next: {retry}"
                    + (f", last error: {e.last_error}" if e.last_error else "")
                )
            for f in e.files:
                size = human_bytes(f.original_bytes)
                sending = (
                    f" -> {human_bytes(f.bytes)}"
                    if f.bytes is not None and f.bytes != f.original_bytes
                    else ""
                )
                done = (
                    "stored on server"
                    if f.media_id is not None
                    else ("uploading" if f.upload_url else "waiting")
                )
                out(f"    {KIND_NAMES.get(f.kind, f.kind):<20} {size}{sending}  {done}")
    return EXIT_OK


def _print_fill(fill: dict[str, Any], labels: dict[str, str]) -> None:
    rx = fill.get("prescription") or {}
    out(f"Fill {fill['id']}: {fill['state']}")
    out(f"  Rx {rx.get('rx_number')}  {rx.get('drug')} {rx.get('strength')}  qty {rx.get('quantity')}")
    out(f"  product check: {fill.get('product_check')}")
    for m in fill.get("media", []):
        out(
            f"  {KIND_NAMES.get(m['kind'], m['kind']):<20} {m.get('width')}x{m.get('height')}  "
            f"{human_bytes(m['bytes'])}"
        )
    if fill.get("override_reason"):
        out(f"  override: {fill['override_reason']}")
    decision = fill.get("decision")
    if decision:
        verdict = "APPROVED" if decision["outcome"] == "approve" else "REJECTED"
        out(
            f"  {verdict} by {(decision.get('pharmacist') or {}).get('name')} at {decision.get('decided_at')}"
        )
        if decision.get("reason_codes"):
            out("  reasons: " + "; ".join(labels.get(c, c) for c in decision["reason_codes"]))
        if decision.get("note"):
            out(f"  note: {decision['note']}")


async def _status(cfg: SiteConfig, outbox: Outbox, fill_id: str | None) -> None:
    async with SiteApi(cfg) as api:
        if fill_id:
            fill = await api.fill(fill_id)
            decisions = Decisions(api, outbox)
            if fill.get("decision"):
                await decisions.notice_from(fill)
            else:
                outbox.set_fill_state(fill_id, fill["state"])
            _print_fill(fill, await decisions.labels() if fill.get("decision") else {})
            return
        for fill in await api.fills():
            decision = fill.get("decision") or {}
            extra = ""
            if decision.get("reason_codes"):
                extra = "  reasons: " + ",".join(decision["reason_codes"])
            out(
                f"{fill['id']}  {fill['state']:<10} {fill['priority']:<9} "
                f"submitted {fill.get('submitted_at') or '-'}{extra}"
            )


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with Outbox(cfg.data_dir) as outbox:
        pending = outbox.entries([*OPEN_STATES, FAILED])
        if pending:
            out(f"{len(pending)} fill(s) in the outbox not delivered yet (see `tp-site outbox`).")
        try:
            asyncio.run(_status(cfg, outbox, args.fill_id))
        except ApiError as exc:
            if not exc.transient:
                raise
            say(f"The server cannot be reached ({exc.message}); what this computer knows:")
            entry = outbox.get(args.fill_id) if args.fill_id else None
            for e in [entry] if entry else outbox.entries():
                out(_entry_line(e))
    return EXIT_OK


# -- watch and sync ------------------------------------------------------------------------------


def _hook_argv(args: argparse.Namespace) -> list[str] | None:
    if not args.run:
        return None
    return [args.run, *(args.run_arg or [])]


async def _watch(cfg: SiteConfig, outbox: Outbox, args: argparse.Namespace) -> int:
    hook = _hook_argv(args)
    seen = 0
    done = asyncio.Event()
    async with SiteApi(cfg) as api:
        decisions = Decisions(api, outbox)

        async def handle(event: dict[str, Any]) -> None:
            nonlocal seen
            if event.get("type") != "fill.decided":
                if args.all:
                    out(f"{event.get('type')}  fill {event.get('fill_id')}  {event.get('state')}")
                return
            notice = await decisions.notice(str(event["fill_id"]))
            out(notice.text())
            if hook:
                code = await run_hook(hook, notice)
                if code:
                    say(f"{hook[0]} exited with status {code} for fill {notice.fill_id}")
            seen += 1
            if args.exit_after and seen >= args.exit_after:
                done.set()

        def connected() -> None:
            say("Connected; waiting for decisions.")

        task = asyncio.create_task(
            listen(
                api,
                outbox,
                "watch",
                handle,
                on_connect=connected,
                on_disconnect=lambda why: say(f"Link lost ({why}); reconnecting..."),
            )
        )
        await _until_stopped(done, task)
    return EXIT_OK


async def _until_stopped(done: asyncio.Event, *tasks: asyncio.Task[Any]) -> None:
    """Waits until `done`, SIGINT/SIGTERM, or a task ends; then cancels the tasks."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    waiter = asyncio.ensure_future(done.wait())
    try:
        finished, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in finished:
            if t is not waiter and not t.cancelled() and t.exception():
                raise t.exception()  # type: ignore[misc]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for t in (waiter, *tasks):
            t.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)


def cmd_watch(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with Outbox(cfg.data_dir) as outbox:
        return asyncio.run(_watch(cfg, outbox, args))


def cmd_consult(args: argparse.Namespace) -> int:
    """A video consultation from the counter: camera 'test' (generated pattern), a device or a file."""
    from remote_site_client.consult import Consultation, ConsultError, Timeouts, open_source

    cfg = _load(args)
    if args.record and not args.record.lower().endswith(".mp4"):
        raise UsageError("--record writes an .mp4 file (H.264 + AAC); webm loses video now and then.")
    video, audio, player = open_source(args.camera)
    body: dict[str, Any] = {"kind": "live_look" if args.live_look else "counsel"}
    if args.rx_id is not None:
        body["prescription_id"] = args.rx_id
    if args.fill_id:
        body["fill_id"] = args.fill_id
    if args.record:
        body["recording_consent"] = True

    async def run() -> int:
        async with SiteApi(cfg) as api:
            call = Consultation(
                api,
                video=video,
                audio=audio,
                player=player,
                timeouts=Timeouts(answer=args.answer_timeout),
                max_seconds=args.max_seconds,
                record_to=args.record,
                request=body,
                on_status=say,
                wait_for_invite=args.wait_for_request,
            )
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGINT, call.hang_up)
            try:
                result = await call.run()
            except ConsultError as exc:
                say(f"error: {exc}")
                return EXIT_REFUSED
            finally:
                # Ctrl-C stops an upload as it stops a submission: the outbox keeps the rest.
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(signal.SIGINT)
            out(
                f"consultation {result.consultation_id}: ended ({result.reason}, by {result.ended_by}); "
                f"frames received {result.frames_received}, sent {result.frames_sent}"
            )
            if result.recorded and result.consultation_id is not None:
                # Through the outbox: kept (fsync'd) until the server has it; `tp-site sync` retries.
                with Outbox(cfg.data_dir) as outbox:
                    outbox.add_recording(result.consultation_id, Path(args.record))
                    sender = RecordingSender(cfg, outbox, api, progress=progress_board())
                    sent = await sender.deliver(result.consultation_id, patience=args.upload_wait)
                    out(sent.line())
                    return _recordings_exit([sent])
        return EXIT_OK

    return asyncio.run(run())


def _recordings_exit(results: Sequence[RecordingAttempt]) -> int:
    if any(r.state == FAILED for r in results):
        return EXIT_REFUSED
    return EXIT_PENDING if any(r.state == PENDING for r in results) else EXIT_OK


async def _sync_once(sender: Sender, outbox: Outbox, patience: float) -> int:
    """Delivers what the outbox holds now, retrying each fill and recording for up to `patience` seconds."""
    results = [
        await sender.deliver(e.fill_id, patience=patience)
        for e in reversed(outbox.entries(list(OPEN_STATES)))
    ]
    outbox.prune(sender.config.retention_days)
    recording_sender = RecordingSender(sender.config, outbox, sender.api)
    recordings = [
        await recording_sender.deliver(r.consultation_id, patience=patience) for r in outbox.recordings()
    ]
    for rec in recordings:
        out(rec.line())
    for r in results:
        state = "delivered" if r.delivered else ("REFUSED" if r.state == FAILED else "not yet")
        out(f"{r.fill_id}: {state}" + (f" ({r.error})" if r.error else ""))
    if any(r.state == FAILED for r in results):
        return EXIT_REFUSED
    if outbox.entries(list(OPEN_STATES)):
        return EXIT_PENDING
    return _recordings_exit(recordings)


async def _sync(cfg: SiteConfig, outbox: Outbox, once: bool, patience: float) -> int:
    async with SiteApi(cfg) as api:
        sender = Sender(cfg, outbox, api)
        if once:
            return await _sync_once(sender, outbox, patience)
        recordings = RecordingSender(cfg, outbox, api)
        stop, wake, wake_recordings = asyncio.Event(), asyncio.Event(), asyncio.Event()
        decisions = Decisions(api, outbox)

        async def handle(event: dict[str, Any]) -> None:
            if event.get("type") == "fill.decided":
                notice = await decisions.notice(str(event["fill_id"]))
                log.warning("decision: %s", notice.text().splitlines()[0])
                wake.set()

        def connected() -> None:
            # The link is back: whatever waits for a retry goes now.
            outbox.wake_all()
            wake.set()
            wake_recordings.set()

        say(f"Sync running for {cfg.server_url}; outbox in {cfg.data_dir}. Stop with Ctrl-C.")
        sending = asyncio.create_task(sender.run(stop, wake))
        recording = asyncio.create_task(recordings.run(stop, wake_recordings))
        listening = asyncio.create_task(listen(api, outbox, "sync", handle, on_connect=connected))
        await _until_stopped(stop, sending, recording, listening)
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with Outbox(cfg.data_dir) as outbox:
        return asyncio.run(_sync(cfg, outbox, args.once, args.patience))


# -- the parser ----------------------------------------------------------------------------------


def _add_submit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "submit",
        help="check the photos, store the fill in the outbox, and send it",
        description="Exit status: 0 queued for verification, 1 a check failed (nothing stored), "
        "3 stored but not delivered yet (sync delivers it), 4 refused by the server.",
    )
    which = p.add_mutually_exclusive_group(required=True)
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
    p.add_argument("--count", type=float, help="the counted quantity")
    p.add_argument("--priority", choices=["waiting", "routine", "delivery"], default="routine")
    p.add_argument("--override", metavar="REASON", help="send although a check failed; the reason is audited")
    p.add_argument("--resubmit-of", metavar="FILL_ID", help="the rejected fill this one replaces")
    p.add_argument("--no-send", action="store_true", help="only store it in the outbox")
    p.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to keep trying now before leaving it to `tp-site sync`",
    )
    p.set_defaults(func=cmd_submit)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tp-site", description="Telepharmacy remote site: submit fills for verification"
    )
    ap.add_argument(
        "--config", help=f"settings file (default ${site_config.CONFIG_ENV} or ~/.config/tp-site/config.json)"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="connect this computer to the server with a device token")
    p.add_argument("--server", required=True, help="the server's URL, e.g. https://verify.example.org")
    p.add_argument(
        "--token", help="the device token (prefer --token-file or TP_SITE_TOKEN: not in shell history)"
    )
    p.add_argument("--token-file", help="a file holding the device token")
    p.add_argument("--data-dir", help="where the outbox lives (default ~/.local/share/tp-site)")
    p.add_argument(
        "--long-edge", type=int, help="re-encode photos to this long edge in pixels (0: send originals)"
    )
    p.add_argument("--jpeg-quality", type=int)
    p.add_argument("--retention-days", type=float, help="keep originals this long after approval")
    p.add_argument("--min-long-edge", type=int, help="refuse photos whose long edge is smaller (pixels)")
    p.add_argument("--min-short-edge", type=int, help="refuse photos whose short edge is smaller (pixels)")
    p.add_argument("--chunk-bytes", type=int, help="upload in chunks of this size (0: one request per file)")
    p.add_argument("--retry-base-seconds", type=float)
    p.add_argument("--no-verify", action="store_true", help="do not contact the server now")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("rx", help="prescriptions of this site")
    rx_sub = p.add_subparsers(dest="rx_command", required=True)
    rx_sub.add_parser("list", help="list the site's prescriptions")
    c = rx_sub.add_parser("create", help="enter a prescription")
    for name in RX_FIELDS:
        c.add_argument("--" + name.replace("_", "-"), dest=name, required=True)
    c.add_argument("--dea-schedule", choices=["CII", "CIII", "CIV", "CV"])
    c.add_argument("--fill-type", choices=["new", "refill"], default="new")
    p.set_defaults(func=cmd_rx)

    _add_submit(sub)

    p = sub.add_parser("status", help="the site's fills, or one fill with its decision")
    p.add_argument("fill_id", nargs="?")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("outbox", help="what is waiting to be sent or was refused, and why")
    p.add_argument("--all", action="store_true", help="include delivered fills and recordings")
    p.add_argument("--retry", metavar="FILL_ID", help="send a refused fill again")
    p.add_argument(
        "--retry-recording",
        type=int,
        metavar="CONSULTATION_ID",
        help="send a refused consultation recording again",
    )
    p.set_defaults(func=cmd_outbox)

    p = sub.add_parser("watch", help="print decisions as they arrive")
    p.add_argument(
        "--run", metavar="PROGRAM", help="run this program for each decision (data in TP_* variables)"
    )
    p.add_argument("--run-arg", action="append", metavar="ARG", help="an argument for --run (repeatable)")
    p.add_argument("--all", action="store_true", help="also print queued/claimed/released events")
    p.add_argument("--exit-after", type=int, metavar="N", help="stop after N decisions")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser(
        "consult",
        help="ask a pharmacist for a video consultation at the counter",
        description="Exit status: 0 the call ended (and its recording, if any, was delivered), "
        "3 the recording waits in the outbox (sync delivers it), 4 refused by the server.",
    )
    p.add_argument(
        "--camera", default="test", help="'test' (generated pattern), a device (/dev/video0) or a media file"
    )
    p.add_argument("--rx-id", type=int, help="the prescription the counselling is about")
    p.add_argument("--fill-id", help="the fill the counselling is about")
    p.add_argument("--live-look", action="store_true", help="a one-way view of the counting tray")
    p.add_argument(
        "--wait-for-request",
        action="store_true",
        help="a counter kiosk: wait for a pharmacist to ask (counselling on a fill, a live look)",
    )
    p.add_argument("--record", metavar="FILE.mp4", help="record the call (only with the patient's consent)")
    p.add_argument("--answer-timeout", type=float, default=120.0, metavar="SECONDS")
    p.add_argument("--max-seconds", type=float, metavar="SECONDS", help="hang up after this long")
    p.add_argument(
        "--upload-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --record: how long to keep retrying the upload before leaving it to `tp-site sync`",
    )
    p.set_defaults(func=cmd_consult)

    p = sub.add_parser("sync", help="deliver the outbox: fills and call recordings (a long-running service)")
    p.add_argument("--once", action="store_true", help="deliver what is waiting now, then exit")
    p.add_argument(
        "--patience",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --once: how long to retry each fill and recording",
    )
    p.set_defaults(func=cmd_sync)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except ApiError as exc:
        say(f"error: {exc.message}")
        return EXIT_PENDING if exc.transient else EXIT_REFUSED
    except KeyboardInterrupt:
        say("Stopped. Anything stored in the outbox is safe and will be sent by `tp-site sync`.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
