"""tp-site outbox: what is waiting to be sent or was refused, and why; send a refused one again."""

from __future__ import annotations

import argparse
import time

from remote_site_client.commands.common import EXIT_OK, UsageError, entry_line, load_config, out, when
from remote_site_client.outbox import DELIVERED, FAILED, OPEN_STATES, PENDING, QUEUED, Outbox, Recording
from remote_site_client.progress import human_bytes
from server.evidence.kinds import KIND_NAMES


def _recording_lines(r: Recording) -> list[str]:
    label = {DELIVERED: "delivered", FAILED: "FAILED"}.get(r.state, "pending")
    lines = [
        f"recording of consultation {r.consultation_id}  {human_bytes(r.bytes)}  {label}"
        f"  stored {when(r.created_at)}"
    ]
    if r.state == FAILED:
        lines.append(f"    refused: {r.failed_reason}")
    elif r.state == PENDING:
        retry = "now" if r.next_attempt_at <= time.time() else when(r.next_attempt_at)
        sending = ", uploading (resumes where it stopped)" if r.upload_url else ""
        lines.append(
            f"    tries: {r.attempts}, next: {retry}{sending}"
            + (f", last error: {r.last_error}" if r.last_error else "")
        )
    return lines


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
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
            out(entry_line(e))
            if e.state == FAILED:
                out(f"    refused: {e.failed_reason}")
            elif e.state != QUEUED:
                retry = "now" if e.next_attempt_at <= time.time() else when(e.next_attempt_at)
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("outbox", help="what is waiting to be sent or was refused, and why")
    p.add_argument("--all", action="store_true", help="include delivered fills and recordings")
    p.add_argument("--retry", metavar="FILL_ID", help="send a refused fill again")
    p.add_argument(
        "--retry-recording",
        type=int,
        metavar="CONSULTATION_ID",
        help="send a refused consultation recording again",
    )
    p.set_defaults(func=run)
