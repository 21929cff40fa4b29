"""What the tp-site commands share: exit statuses, output, the site's settings, waiting for Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import re
import signal
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from remote_site_client import config as site_config
from remote_site_client.api import ApiError, SiteApi, Unreachable
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import DISCARDED, FAILED, PENDING, QUEUED, Entry, Outbox
from remote_site_client.recordings import RecordingAttempt
from server.evidence.counts import read_count
from server.evidence.kinds import KIND_NAMES

EXIT_OK = 0
EXIT_CHECKS = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_REFUSED = 4

# When what the outbox holds goes while the server refuses this computer's device token.
ONCE_ENROLLED = (
    "once this computer is enrolled again (`tp-site enroll --token-file ...`, then `tp-site sync`)"
)


class UsageError(Exception):
    """A mistake on the command line or in the site's setup; the message says what to do."""


async def rx_numbered(api: SiteApi, outbox: Outbox | None, rx_number: str) -> dict[str, Any]:
    """The site's prescription with this Rx number as the server has it now, however old (a refill's
    prescription is rarely among the newest), kept in this computer's copy; else a UsageError."""
    rx = await api.prescription_numbered(rx_number)
    if rx is None:
        raise UsageError(f"No prescription Rx {rx_number} at this site: enter it with `tp-site rx create`.")
    if outbox is not None:
        outbox.cache_prescriptions([rx])
    return rx


class OutputClosed(Exception):
    """What the command writes is read no further (`tp-site status | head`): it stops quietly."""


def out(text: str = "") -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise OutputClosed from None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def not_a_file(kind: str, path: Path) -> str | None:
    """Why the file given for a photo or video of `kind` cannot be taken; None when it is a file."""
    name = KIND_NAMES.get(kind, kind)
    if path.is_dir():
        return f"The {name} {path} is a folder: give the file itself."
    if not path.exists():
        return f"The {name} {path} does not exist."
    if not path.is_file():
        return f"The {name} {path} is not a file."
    return None


def no_answer(exc: ApiError) -> str:
    """Why the server did not answer, as the start of a sentence (no full stop): an unreachable server's
    message says so itself; a busy or failing one's is said to be the server's."""
    if isinstance(exc, Unreachable):
        return exc.message.rstrip(".")
    return f"The server cannot answer now ({exc.message.rstrip('.')})"


def whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (`what` names it in the refusal)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{what} is from {low} to {high}")
        return n

    return parse


def counted(text: str) -> float:
    """A --count argument: a count the server takes, else argparse says why (nothing is stored)."""
    try:
        return read_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The longest a command keeps trying now (--wait): a day; what is not sent by then waits for the sender.
MAX_WAIT_SECONDS = 86_400


def wait_seconds(text: str) -> float:
    """A --wait argument: seconds from 0 to a day, else argparse says why (a NaN or an infinity would
    keep the command trying for ever)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, e.g. 120") from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:  # False for NaN too
        raise argparse.ArgumentTypeError(f"seconds are from 0 to {MAX_WAIT_SECONDS:,} (a day)")
    return seconds


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else site_config.default_config_path()


def load_config(args: argparse.Namespace) -> SiteConfig:
    return site_config.load(config_path(args))


def when(ts: float | None) -> str:
    """An epoch time as this computer's local time, to the minute."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def local_time(iso: str | None) -> str:
    """A server time (ISO 8601, UTC) as this computer's local time, to the minute."""
    if not iso:
        return "-"
    return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def number(value: object) -> str:
    """A quantity as people write it: 30, 2.5; '-' when unknown."""
    return "-" if value is None else f"{float(str(value)):g}"


def product(rx: Mapping[str, Any] | None) -> str:
    if not rx:
        return "?"
    return " ".join(str(p) for p in (rx.get("drug"), rx.get("strength")) if p)


def entry_line(e: Entry, rx: Mapping[str, Any] | None = None) -> str:
    label = {QUEUED: "delivered", FAILED: "REFUSED", DISCARDED: "discarded"}.get(
        e.state, f"waiting to send ({e.state})"
    )
    decided = (
        f", {e.fill_state}" if e.fill_state in ("approved", "handed_out", "rejected", "in_review") else ""
    )
    return (
        f"{e.short_id}  Rx {e.rx_number or (rx or {}).get('rx_number') or '?'}  {product(rx)}  "
        f"{label}{decided}  stored {when(e.created_at)}"
    )


_FILL_ID_TEXT = re.compile(r"[0-9a-f-]+")


def fill_id_digits(text: str) -> str:
    """The hex digits of a fill id as typed: a short id (the 8 characters shown) or the whole id."""
    digits = text.strip().lower().replace("-", "")
    if not _FILL_ID_TEXT.fullmatch(text.strip().lower()) or not 4 <= len(digits) <= 32:
        raise UsageError(
            f"{text!r} is not a fill id: give the 8 characters `tp-site status` shows, e.g. 7772e458."
        )
    return digits


def pick_fill(text: str, candidates: Iterable[tuple[str, str]], *, where: str) -> str | None:
    """The one fill among `candidates` ((fill id, how to tell it)) whose id starts with `text`;
    None when none does; a UsageError listing them when several do."""
    digits = fill_id_digits(text)
    found: dict[str, str] = {}
    for fill_id, label in candidates:
        if fill_id.replace("-", "").startswith(digits):
            found.setdefault(fill_id, label)
    if len(found) > 1:
        hexes = {fid: fid.replace("-", "") for fid in found}
        # Enough of each id to tell them apart.
        width = next(
            (
                n
                for n in range(max(8, len(digits) + 1), 33)
                if len({h[:n] for h in hexes.values()}) == len(hexes)
            ),
            32,
        )
        lines = "\n".join(f"  {hexes[fid][:width]}  {label}" for fid, label in found.items())
        raise UsageError(f"{text} is the start of {len(found)} fills {where}; give more of the id:\n{lines}")
    if found:
        return next(iter(found))
    if len(digits) == 32:
        return str(uuid.UUID(digits))
    return None


def outbox_candidates(outbox: Outbox, text: str) -> list[tuple[str, str]]:
    return [
        (e.fill_id, f"Rx {e.rx_number or '?'}, stored {when(e.created_at)}, {e.state}")
        for e in outbox.find(fill_id_digits(text))
    ]


def entry_id(outbox: Outbox, text: str) -> str:
    """The outbox entry a technician named by its short id (or whole id)."""
    found = pick_fill(text, outbox_candidates(outbox, text), where="in this outbox")
    if found is None or outbox.get(found) is None:
        raise UsageError(f"No fill {text} in this outbox (see `tp-site outbox --all`).")
    return found


def who(args: argparse.Namespace) -> str:
    """Who acts, for the outbox's audit: --by NAME, else the computer's user."""
    return str(getattr(args, "by", None) or getpass.getuser())


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
