"""The station's long-running work: the outbox, its sender, and the live connection, in one process.

What `tp-site sync` and `tp-site watch` do, with what happens pushed to the open pages (PageHub):
the uplink going up or down, each fill's bytes sent, each fill's state, each decision. The station can
start before the site is enrolled: the page enrols it, and the work starts then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_site_client import config as site_config
from remote_site_client.api import ApiError, SiteApi, TokenRefused
from remote_site_client.config import ConfigError, SiteConfig
from remote_site_client.delivery import wake_on_other_writers
from remote_site_client.live import Decisions, listen
from remote_site_client.outbox import OPEN_STATES, Outbox
from remote_site_client.progress import FileProgress
from remote_site_client.recordings import RecordingSender
from remote_site_client.sender import Attempt, Sender
from remote_site_client.station.captures import Captures
from remote_site_client.station.errors import TOKEN_REFUSED
from remote_site_client.station.hub import PageHub
from server.evidence.kinds import DEFAULT_REQUIRED_MEDIA

log = logging.getLogger(__name__)

ServerEventListener = Callable[[dict[str, Any]], Awaitable[None]]
# Progress goes to the pages at most this often per file (seconds).
PROGRESS_EVERY = 0.2

NOT_ENROLLED, CONNECTING, UP, DOWN = "not_enrolled", "connecting", "up", "down"
# The server answers but refuses the device token: nothing goes until the station is enrolled again.
REFUSED = TokenRefused.CODE


@dataclass
class FillProgress:
    """The bytes of one fill's files sent in the current attempt, by file."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    sent_at: float = 0.0

    @property
    def sent(self) -> int:
        return sum(done for done, _ in self.files.values())

    @property
    def total(self) -> int:
        return sum(total for _, total in self.files.values())


class _FileBar:
    """One file's progress, reported to the pages as its fill's total."""

    def __init__(self, station: Station, fill_id: str | None, label: str, total: int) -> None:
        self.station = station
        self.fill_id = fill_id
        self.label = label
        self.total = total

    def update(self, done: int) -> None:
        if self.fill_id is not None:
            self.station.progressed(self.fill_id, self.label, done, self.total)

    def finish(self, note: str = "") -> None:
        if self.fill_id is not None and note.startswith("stored"):
            self.station.progressed(self.fill_id, self.label, self.total, self.total, force=True)


class StationSender(Sender):
    """The sender, telling the station which fill it works and how each attempt ended."""

    def __init__(self, station: Station, config: SiteConfig, outbox: Outbox, api: SiteApi) -> None:
        super().__init__(config, outbox, api, progress=self._bar)
        self.station = station
        self.current: str | None = None

    def _bar(self, label: str, total: int) -> FileProgress:
        return _FileBar(self.station, self.current, label, total)

    async def attempt(self, fill_id: str) -> Attempt | None:
        self.current = fill_id
        try:
            result = await super().attempt(fill_id)
        finally:
            self.current = None
        if result is not None:
            await self.station.attempted(result)
        return result


class Station:
    """The site's process: config, outbox, server API, sender and live connection."""

    def __init__(self, config_path: Path, hub: PageHub, *, data_dir: Path | None = None) -> None:
        self.config_path = config_path
        self.default_data_dir = data_dir
        self.hub = hub
        self.config: SiteConfig | None = None
        self.api: SiteApi | None = None
        self.outbox: Outbox | None = None
        self.sender: StationSender | None = None
        self.decisions: Decisions | None = None
        self.captures: Captures | None = None
        self.uplink = NOT_ENROLLED
        self.uplink_why = ""
        self.me: dict[str, Any] = {}
        self.site: dict[str, Any] = {}
        self.progress: dict[str, FillProgress] = {}
        self.server_listeners: list[ServerEventListener] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._wake_recordings = asyncio.Event()

    # -- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the work when this computer is enrolled; otherwise waits for the page to enrol it."""
        try:
            cfg = site_config.load(self.config_path)
        except ConfigError as exc:
            self.uplink_why = str(exc)
            log.warning("not enrolled yet: %s", exc)
            return
        await self._begin(cfg)

    async def _begin(self, cfg: SiteConfig) -> None:
        self.config = cfg
        self.outbox = Outbox(cfg.data_dir)
        self.api = SiteApi(cfg)
        self.sender = StationSender(self, cfg, self.outbox, self.api)
        self.decisions = Decisions(self.api, self.outbox)
        self.captures = Captures(cfg.data_dir / "captures")
        self._load_site()
        self._stop.clear()
        recordings = RecordingSender(cfg, self.outbox, self.api)
        self.uplink = CONNECTING
        self._tasks = [
            asyncio.create_task(self.sender.run(self._stop, self._wake), name="station-sender"),
            asyncio.create_task(recordings.run(self._stop, self._wake_recordings), name="station-recordings"),
            asyncio.create_task(
                listen(
                    self.api,
                    self.outbox,
                    "station",
                    self._server_event,
                    on_connect=self._connected,
                    on_disconnect=self._disconnected,
                    on_token_refused=self._token_refused,
                ),
                name="station-live",
            ),
            asyncio.create_task(
                wake_on_other_writers(self.outbox.data_version, self._wake, self._wake_recordings),
                name="station-other-writers",
            ),
        ]

    async def close(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.api is not None:
            await self.api.close()
        if self.outbox is not None:
            self.outbox.close()

    @property
    def enrolled(self) -> bool:
        return self.config is not None

    async def enroll(self, server_url: str, token_text: str) -> dict[str, Any]:
        """Checks the token with the server, saves the settings (mode 0600) and starts the work."""
        token = site_config.token_from_text(token_text)
        previous: SiteConfig | None = None
        with contextlib.suppress(ConfigError):
            previous = site_config.load(self.config_path)
        data_dir = (
            previous.data_dir if previous else (self.default_data_dir or site_config.default_data_dir())
        )
        cfg = SiteConfig(
            server_url=site_config.server_address(server_url), token=token, data_dir=data_dir.resolve()
        )
        if previous is not None:
            cfg = previous.with_(server_url=cfg.server_url, token=token)
        async with SiteApi(cfg) as api:
            me = await api.whoami()
        user = me["user"]
        if user["role"] != "technician":
            raise ConfigError(
                f"This token belongs to {user['display_name']}, who is not a technician: a site needs a "
                "technician's token."
            )
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        site_config.save(cfg, self.config_path)
        await self.close()
        await self._begin(cfg)
        await self.refresh_site()
        await self.announce_status()
        return dict(user)

    # -- the site ----------------------------------------------------------------------------------

    @property
    def _site_file(self) -> Path:
        assert self.config is not None
        return self.config.data_dir / "station-site.json"

    def _load_site(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._site_file.read_text(encoding="utf-8"))
            self.me, self.site = dict(data.get("me") or {}), dict(data.get("site") or {})

    async def refresh_site(self) -> None:
        """Who this device is and its site's settings (the views it requires), kept for offline starts."""
        if self.api is None:
            return
        me = await self.api.whoami()
        _, body = await self.api.call("GET", "/sites")
        site_id = me["user"].get("site_id")
        site: dict[str, Any] = next((s for s in body.get("sites", []) if s.get("id") == site_id), {})
        self.me, self.site = dict(me["user"]), dict(site)
        tmp = self._site_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"me": self.me, "site": self.site}), encoding="utf-8")
        tmp.replace(self._site_file)

    @property
    def required_views(self) -> list[str]:
        """The photos this site requires, in order: the site's own list, else the server's default."""
        return list(self.site.get("required_media_kinds") or DEFAULT_REQUIRED_MEDIA)

    # -- what happens --------------------------------------------------------------------------

    def waiting(self) -> int:
        return len(self.outbox.entries(list(OPEN_STATES))) if self.outbox else 0

    def status(self) -> dict[str, Any]:
        return {
            "type": "status",
            "enrolled": self.enrolled,
            "uplink": self.uplink,
            "why": self.uplink_why,
            "waiting": self.waiting(),
        }

    async def announce_status(self) -> None:
        await self.hub.broadcast(self.status())

    def _connected(self) -> None:
        assert self.outbox is not None
        self.uplink, self.uplink_why = UP, ""
        # The link is back: whatever waits for a retry goes now.
        self.outbox.wake_all()
        self._wake.set()
        self._wake_recordings.set()
        self.hub.post(self.status())
        if not self.site:
            task = asyncio.get_running_loop().create_task(self.refresh_site())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _disconnected(self, why: str) -> None:
        self.uplink, self.uplink_why = DOWN, why
        self.hub.post(self.status())

    def _token_refused(self) -> None:
        # Said in the page's words: enrolling again is done on the page.
        self.uplink, self.uplink_why = REFUSED, TOKEN_REFUSED
        self.hub.post(self.status())

    def wake(self) -> None:
        """A fill was stored or fixed: send it now."""
        self._wake.set()
        self.hub.post(self.status())

    def progressed(self, fill_id: str, label: str, done: int, total: int, *, force: bool = False) -> None:
        p = self.progress.setdefault(fill_id, FillProgress())
        p.files[label] = (done, total)
        now = time.monotonic()
        if force or now - p.sent_at >= PROGRESS_EVERY:
            p.sent_at = now
            self.hub.post({"type": "progress", "fill_id": fill_id, "sent": p.sent, "total": p.total})

    async def attempted(self, result: Attempt) -> None:
        self.progress.pop(result.fill_id, None)
        if result.token_refused:  # the sender may hear it before the live connection does (announced below)
            self.uplink, self.uplink_why = REFUSED, TOKEN_REFUSED
        await self.hub.broadcast(
            {"type": "outbox", "fill_id": result.fill_id, "state": result.state, "error": result.error}
        )
        await self.announce_status()

    async def _server_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type") or "")
        if kind.startswith("fill.") and event.get("fill_id"):
            fill_id = str(event["fill_id"])
            if kind == "fill.decided" and self.decisions is not None:
                try:
                    notice = await self.decisions.notice(fill_id)
                except ApiError as exc:
                    if exc.transient:
                        raise  # the event comes again after the reconnect
                    return
                await self.hub.broadcast(
                    {"type": "decision", "fill_id": fill_id, "outcome": notice.outcome, "state": notice.state}
                )
                self._wake.set()
            else:
                await self.hub.broadcast({"type": "fill", "fill_id": fill_id, "state": event.get("state")})
        elif kind.startswith("consultation."):
            for listener in list(self.server_listeners):
                await listener(event)
            await self.hub.broadcast({"type": "server_event", "event": event})

    def on_server_event(self, listener: ServerEventListener) -> None:
        """Calls `listener` with each live event of the server that is not about a fill (consultations)."""
        self.server_listeners.append(listener)
