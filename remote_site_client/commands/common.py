"""What the tp-site commands share: exit statuses, output, the site's settings, waiting for Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remote_site_client import config as site_config
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import FAILED, PENDING, QUEUED, Entry
from remote_site_client.recordings import RecordingAttempt

EXIT_OK = 0
EXIT_CHECKS = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_REFUSED = 4


class UsageError(Exception):
    """A mistake on the command line or in the site's setup; the message says what to do."""


def out(text: str = "") -> None:
    print(text, flush=True)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else site_config.default_config_path()


def load_config(args: argparse.Namespace) -> SiteConfig:
    return site_config.load(config_path(args))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def entry_line(e: Entry) -> str:
    label = {QUEUED: "delivered", FAILED: "FAILED"}.get(e.state, f"pending ({e.state})")
    decided = f", {e.fill_state}" if e.fill_state in ("approved", "rejected", "in_review") else ""
    return (
        f"{e.fill_id}  Rx {e.rx_number or e.prescription_id}  {label}{decided}  stored {when(e.created_at)}"
    )


def recordings_exit(results: Sequence[RecordingAttempt]) -> int:
    if any(r.state == FAILED for r in results):
        return EXIT_REFUSED
    return EXIT_PENDING if any(r.state == PENDING for r in results) else EXIT_OK


async def until_stopped(done: asyncio.Event, *tasks: asyncio.Task[Any]) -> None:
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
