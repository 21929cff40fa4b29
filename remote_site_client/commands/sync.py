"""tp-site sync: deliver the outbox (fills, call recordings, prescriptions' originals), once or as a
long-running service."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from remote_site_client.api import SiteApi, TokenRefused
from remote_site_client.commands.common import (
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REFUSED,
    ONCE_ENROLLED,
    load_config,
    out,
    recordings_exit,
    say,
    until_stopped,
)
from remote_site_client.config import SiteConfig
from remote_site_client.delivery import wake_on_other_writers
from remote_site_client.live import Decisions, listen
from remote_site_client.originals import OriginalSender
from remote_site_client.outbox import FAILED, OPEN_STATES, Outbox, short_id
from remote_site_client.recordings import RecordingSender
from remote_site_client.sender import Sender

log = logging.getLogger("tp-site")


async def _sync_once(sender: Sender, outbox: Outbox, patience: float) -> int:
    """Delivers what the outbox holds now, retrying each fill and recording for up to `patience` seconds
    (one try each when the server refuses the device token: nothing goes until it is enrolled again)."""
    results = [
        await sender.deliver(e.fill_id, patience=patience)
        for e in reversed(outbox.entries(list(OPEN_STATES)))
    ]
    outbox.prune(sender.config.retention_days)
    recording_sender = RecordingSender(sender.config, outbox, sender.api)
    recordings = [
        await recording_sender.deliver(r.consultation_id, patience=patience) for r in outbox.recordings()
    ]
    original_sender = OriginalSender(sender.config, outbox, sender.api)
    originals = [await original_sender.deliver(o.id, patience=patience) for o in outbox.originals()]
    refused = [a.token_refused for a in results] + [a.token_refused for a in recordings]
    if any(refused + [a.token_refused for a in originals]):
        return _token_refused(outbox)
    for rec in recordings:
        out(rec.line())
    for original in originals:
        out(original.line())
    for r in results:
        state = "delivered" if r.delivered else ("REFUSED" if r.state == FAILED else "not yet")
        out(f"{short_id(r.fill_id)}: {state}" + (f" ({r.error})" if r.error else ""))
    if any(r.state == FAILED for r in results):
        return EXIT_REFUSED
    if outbox.entries(list(OPEN_STATES)):
        return EXIT_PENDING
    if any(o.state == FAILED for o in originals):
        return EXIT_REFUSED
    return recordings_exit(recordings)


def _token_refused(outbox: Outbox) -> int:
    """Says once that the server refused the device token, and what waits for the next enrolment."""
    say(TokenRefused.MESSAGE)
    kept = (
        (len(outbox.entries(list(OPEN_STATES))), "fill(s)"),
        (len(outbox.recordings()), "call recording(s)"),
        (len(outbox.originals()), "prescription original(s)"),
    )
    waiting = ", ".join(f"{n} {what}" for n, what in kept if n)
    say(f"The outbox keeps {waiting}: they go {ONCE_ENROLLED}.")
    return EXIT_REFUSED


async def _sync(cfg: SiteConfig, outbox: Outbox, once: bool, patience: float) -> int:
    async with SiteApi(cfg) as api:
        sender = Sender(cfg, outbox, api)
        if once:
            return await _sync_once(sender, outbox, patience)
        recordings = RecordingSender(cfg, outbox, api)
        originals = OriginalSender(cfg, outbox, api)
        stop, wake, wake_recordings = asyncio.Event(), asyncio.Event(), asyncio.Event()
        wake_originals = asyncio.Event()
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
            wake_originals.set()

        say(f"Sync running for {cfg.server_url}; outbox in {cfg.data_dir}. Stop with Ctrl-C.")
        sending = asyncio.create_task(sender.run(stop, wake))
        recording = asyncio.create_task(recordings.run(stop, wake_recordings))
        sending_originals = asyncio.create_task(originals.run(stop, wake_originals))
        # A refused device token stops the service (the listener says so first): it cannot deliver
        # anything until the computer is enrolled again and the service started with the new token.
        listening = asyncio.create_task(
            listen(api, outbox, "sync", handle, on_connect=connected, give_up_on_refused_token=True)
        )
        noticing = asyncio.create_task(
            wake_on_other_writers(outbox.data_version, wake, wake_recordings, wake_originals)
        )
        await until_stopped(stop, sending, recording, sending_originals, listening, noticing)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        return asyncio.run(_sync(cfg, outbox, args.once, args.patience))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sync", help="deliver the outbox: fills and call recordings (a long-running service)")
    p.add_argument("--once", action="store_true", help="deliver what is waiting now, then exit")
    p.add_argument(
        "--patience",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --once: how long to retry each fill and recording",
    )
    p.set_defaults(func=run)
