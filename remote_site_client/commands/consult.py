"""tp-site consult: a video consultation at the counter, recorded only with consent."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from remote_site_client.api import SiteApi
from remote_site_client.commands.common import (
    EXIT_OK,
    EXIT_REFUSED,
    UsageError,
    load_config,
    out,
    recordings_exit,
    say,
)
from remote_site_client.commands.status import resolve_on_server
from remote_site_client.outbox import Outbox
from remote_site_client.progress import progress_board
from remote_site_client.recordings import RecordingSender


def run(args: argparse.Namespace) -> int:
    """A video consultation from the counter: camera 'test' (generated pattern), a device or a file."""
    from remote_site_client.consult import Consultation, ConsultError, Timeouts, open_source

    cfg = load_config(args)
    if args.record and not args.record.lower().endswith(".mp4"):
        raise UsageError("--record writes an .mp4 file (H.264 + AAC); webm loses video now and then.")
    video, audio, player = open_source(args.camera)
    body: dict[str, Any] = {"kind": "live_look" if args.live_look else "counsel"}
    if args.rx_id is not None:
        body["prescription_id"] = args.rx_id
    if args.record:
        body["recording_consent"] = True

    async def place_call() -> int:
        async with SiteApi(cfg) as api:
            if args.fill_id:
                # Its short id, as the technician reads it from `tp-site status`.
                with Outbox(cfg.data_dir) as outbox:
                    body["fill_id"] = await resolve_on_server(api, outbox, args.fill_id)
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
                    return recordings_exit([sent])
        return EXIT_OK

    return asyncio.run(place_call())


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--fill-id", help="the fill the counselling is about (its short id)")
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
    p.set_defaults(func=run)
