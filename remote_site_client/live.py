"""Decisions as they land: a websocket that reconnects and catches up from the last event it handled.

The cursor (last event id handled) is kept in the outbox database under a name per consumer, and moves
only after an event was handled, so an event is never lost to a dropped link or a killed process; a
handler that fails (the note could not be fetched) leaves the cursor and the event comes again.

The server keeps a window of events, not all of them: a site away for longer than the window (or too
far behind to replay) is told to reload instead. It then reads the state of each fill it sent whose
decision it has not recorded, hands the handler a `fill.decided` for each one decided meanwhile, and
carries on from the live point.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import connect

from remote_site_client import backoff
from remote_site_client.api import ApiError, SiteApi, TokenRefused
from remote_site_client.outbox import QUEUED, Outbox, short_id

log = logging.getLogger(__name__)

CLOSE_LAGGING = 4000
# The server withdrew the connection's rights (server/realtime/hub.py), its reason in the close frame.
CLOSE_ACCESS_WITHDRAWN = 4401
DECIDED_STATES = ("approved", "rejected")
# The fills sent from here that a reload asks the server about (those still waiting for a decision).
RELOAD_FILLS = 500
EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
# Why the link was dropped when the server refused the old device token and the new enrolment's is used.
ENROLLED_AGAIN = "the old device token was refused; going on with the one of the new enrolment"


@dataclass(frozen=True)
class DecisionNotice:
    """A decision on one of this site's fills, as the technician reads it."""

    fill_id: str
    outcome: str
    state: str
    reason_codes: tuple[str, ...]
    reasons: tuple[str, ...]
    note: str | None
    rx_number: str | None
    drug: str | None
    pharmacist: str | None
    decided_at: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.outcome == "approve"

    def text(self) -> str:
        product = " ".join(p for p in (self.drug, self.extra.get("strength")) if p)
        head = "APPROVED" if self.approved else "REJECTED"
        sid = short_id(self.fill_id)
        lines = [f"{head}  Rx {self.rx_number or '?'}  {product}  (fill {sid})"]
        if self.pharmacist:
            at = dt.datetime.fromisoformat(self.decided_at).astimezone() if self.decided_at else None
            lines.append(f"  by {self.pharmacist}" + (f" at {at:%Y-%m-%d %H:%M}" if at else ""))
        if not self.approved:
            lines.append("  reasons: " + ("; ".join(self.reasons) or "none given"))
            if self.note:
                lines.append(f"  note: {self.note}")
            lines.append(
                "  Do not hand this out. Fix it and resubmit with: "
                f"tp-site submit --resubmit-of {sid} (with the retaken photos)"
            )
        elif self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    def environment(self) -> dict[str, str]:
        """What a per-decision command receives, as environment variables (never through a shell)."""
        return {
            "TP_FILL_ID": self.fill_id,
            "TP_OUTCOME": self.outcome,
            "TP_STATE": self.state,
            "TP_REASON_CODES": ",".join(self.reason_codes),
            "TP_REASONS": "; ".join(self.reasons),
            "TP_NOTE": self.note or "",
            "TP_RX_NUMBER": self.rx_number or "",
            "TP_DRUG": self.drug or "",
            "TP_PHARMACIST": self.pharmacist or "",
            "TP_DECIDED_AT": self.decided_at or "",
        }


class Decisions:
    """Turns `fill.decided` events into notices: fetches the note (events never carry it), records it."""

    def __init__(self, api: SiteApi, outbox: Outbox) -> None:
        self.api = api
        self.outbox = outbox
        self._labels: dict[str, str] | None = None

    async def labels(self) -> dict[str, str]:
        if self._labels is None:
            self._labels = await self.api.reasons()
        return self._labels

    async def notice(self, fill_id: str) -> DecisionNotice:
        fill = await self.api.fill(fill_id)
        return await self.notice_from(fill)

    async def notice_from(self, fill: dict[str, Any]) -> DecisionNotice:
        decision = fill.get("decision") or {}
        codes = tuple(decision.get("reason_codes") or ())
        labels = await self.labels() if codes else {}
        rx = fill.get("prescription") or {}
        notice = DecisionNotice(
            fill_id=fill["id"],
            outcome=str(decision.get("outcome") or ("approve" if fill["state"] == "approved" else "reject")),
            state=fill["state"],
            reason_codes=codes,
            reasons=tuple(labels.get(c, c) for c in codes),
            note=decision.get("note"),
            rx_number=rx.get("rx_number"),
            drug=rx.get("drug"),
            pharmacist=(decision.get("pharmacist") or {}).get("name"),
            decided_at=decision.get("decided_at"),
            extra={"strength": rx.get("strength")},
        )
        self.outbox.record_decision(
            notice.fill_id, notice.state, notice.outcome, notice.reason_codes, notice.note
        )
        return notice


async def run_hook(argv: Sequence[str], notice: DecisionNotice, *, limit_seconds: float = 60.0) -> int | None:
    """Runs the site's command for a decision; data goes in the environment and as JSON on stdin."""
    env = {**os.environ, **notice.environment()}
    payload = json.dumps({**notice.environment(), "reason_codes": list(notice.reason_codes)}).encode()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=None, stderr=None
        )
    except OSError as exc:
        log.error("could not run %s: %s", argv[0], exc)
        return None
    try:
        async with asyncio.timeout(limit_seconds):
            await proc.communicate(payload)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("%s took longer than %.0fs and was stopped", argv[0], limit_seconds)
    return proc.returncode


async def decided_while_away(api: SiteApi, outbox: Outbox) -> list[dict[str, Any]]:
    """A `fill.decided` event for each fill sent from here that the server has decided and this outbox
    has no decision for: what a client told to reload hands its handler, in place of the replay."""
    events = []
    for entry in outbox.entries([QUEUED], limit=RELOAD_FILLS):
        if entry.decided_at is not None:
            continue
        fill = await api.fill(entry.fill_id)
        if fill["state"] in DECIDED_STATES:
            outcome = (fill.get("decision") or {}).get("outcome")
            events.append(
                {"type": "fill.decided", "fill_id": fill["id"], "state": fill["state"], "outcome": outcome}
            )
    return events


async def _handled(
    api: SiteApi, outbox: Outbox, cursor_name: str, handle: EventHandler, message: dict[str, Any]
) -> None:
    """Hands an event to the handler, then moves the cursor past it; a reload reads what it replaces."""
    if message.get("type") == "reload":
        # Behind the server's window of events: the state is read instead of a replay.
        log.info("live events: reloading (%s)", message.get("reason"))
        for event in await decided_while_away(api, outbox):
            await handle(event)
        outbox.set_cursor(cursor_name, int(message["cursor"]))
    elif "id" in message:
        await handle(message)
        outbox.set_cursor(cursor_name, int(message["id"]))


def _token_refused(exc: Exception) -> bool:
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return exc.response.status_code == 401
    return isinstance(exc, TokenRefused)


def _why_lost(exc: Exception) -> str:
    """Why the live connection ended, in words."""
    if _token_refused(exc):
        return TokenRefused.MESSAGE
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd else None
        if code == CLOSE_ACCESS_WITHDRAWN:
            reason = (exc.rcvd.reason if exc.rcvd else "") or "no reason given"
            return f"the server withdrew this computer's access: {reason}"
        return "too slow for the event stream" if code == CLOSE_LAGGING else f"connection closed ({code})"
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return f"the server refused the live connection ({exc.response.status_code})"
    return f"{type(exc).__name__}: {exc}"


async def listen(
    api: SiteApi,
    outbox: Outbox,
    cursor_name: str,
    handle: EventHandler,
    *,
    on_connect: Callable[[], None] | None = None,
    on_disconnect: Callable[[str], None] | None = None,
    on_token_refused: Callable[[], None] | None = None,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    give_up_on_refused_token: bool = False,
    enrolled_token: Callable[[], str] | None = None,
) -> None:
    """Runs until cancelled: connect, catch up from the cursor, handle live events, reconnect. With
    `give_up_on_refused_token` a refused device token raises TokenRefused instead: reconnecting with
    it cannot help. Unless `enrolled_token` (the token the site's configuration holds now) gives
    another one: the computer was enrolled again meanwhile, and it goes on with the new token.
    Otherwise a refused token is told to `on_token_refused`, when given, instead of `on_disconnect`."""
    failures = 0
    while True:
        cursor = outbox.cursor(cursor_name)
        why, refused = "", False
        try:
            async with connect(
                api.websocket_url(cursor),
                additional_headers={"Authorization": f"Bearer {api.config.token}"},
                proxy=None,
                open_timeout=15,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                max_size=1024 * 1024,
            ) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "hello":
                        failures = 0
                        if cursor is None:
                            outbox.set_cursor(cursor_name, int(message.get("cursor") or 0))
                        if on_connect:
                            on_connect()
                        continue
                    await _handled(api, outbox, cursor_name, handle, message)
            why = "the server closed the connection"
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException, ApiError, ValueError) as exc:
            if give_up_on_refused_token and _token_refused(exc):
                renewed = enrolled_token() if enrolled_token else None
                if renewed is None or renewed == api.config.token:
                    raise TokenRefused() from exc
                await api.use_token(renewed)
                why = ENROLLED_AGAIN
            else:
                why, refused = _why_lost(exc), _token_refused(exc)
        failures += 1
        if refused and on_token_refused:
            on_token_refused()
        elif on_disconnect:
            on_disconnect(why)
        log.info("live connection lost (%s); reconnecting", why)
        await asyncio.sleep(backoff.delay(failures - 1, base_delay, max_delay))
