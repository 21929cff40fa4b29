"""Typed server configuration: built in code by tests, from the command line or environment in production."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

# Named with the evidence rules, which the site shares.
from server.evidence.kinds import DEFAULT_REQUIRED_MEDIA as DEFAULT_REQUIRED_MEDIA


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """ICE servers from JSON: [{"urls": [...], "username": ..., "credential": ...}]."""
    items = json.loads(text)
    if not isinstance(items, list):
        raise ValueError("TP_ICE_SERVERS must be a JSON list")
    out = []
    for item in items:
        urls = item["urls"]
        out.append(
            IceServer(
                urls=tuple([urls] if isinstance(urls, str) else urls),
                username=item.get("username"),
                credential=item.get("credential"),
            )
        )
    return tuple(out)


def _bounded(name: str, text: str | None, default: float, maximum: float) -> float:
    """A number setting from 0 to maximum; a bad value stops the server at start, naming the setting."""
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not 0 <= value <= maximum:
        raise ValueError(f"{name}: {text!r} must be from 0 to {maximum:g}")
    return value


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    # Origins allowed to open a websocket with a session cookie; empty means the server's own origin.
    allowed_origins: tuple[str, ...] = ()
    # The session cookie's Secure flag; None: set when the client reached us over HTTPS.
    secure_cookies: bool | None = None
    # Reverse proxies (addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto are believed.
    trusted_proxies: tuple[str, ...] = ()
    session_hours: int = 12
    lease_seconds: int = 120
    lease_sweep_seconds: float = 5.0
    # How often the audit chain's head is anchored outside the database (and at start and shutdown).
    audit_anchor_seconds: float = 3600.0
    # A refill whose patient's last approved fill of the drug has used up less than this share of its
    # days supply is flagged refill_too_soon.
    refill_too_soon_percent: float = 75.0
    # The console holds a decision this long, with Undo, before sending it.
    decision_undo_seconds: float = 4.0
    required_media_kinds: tuple[str, ...] = DEFAULT_REQUIRED_MEDIA
    max_image_bytes: int = 30 * 1024 * 1024
    max_video_bytes: int = 200 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_video_seconds: float = 60.0
    # A consultation's recording (mp4, with its audio): a 10-minute call is tens of MB; an hour at
    # aiortc's highest video rate is under 1 GB.
    max_recording_bytes: int = 1024 * 1024 * 1024
    max_recording_seconds: float = 3600.0
    # An account's wrong passwords beyond login_attempts each delay its next sign-in, doubling from one
    # second up to login_max_delay_seconds; an address with login_address_attempts wrong passwords
    # waits login_window_seconds. Counts are forgotten a window after their last failure.
    login_attempts: int = 5
    login_address_attempts: int = 10
    login_window_seconds: int = 300
    login_max_delay_seconds: int = 60
    event_queue_size: int = 1000
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    # Password hashes computed at once (0: half the cores) and sign-ins that may wait for a turn;
    # beyond that a sign-in is answered 429 at once.
    password_hash_slots: int = 0
    password_hash_queue: int = 16
    media_workers: int = 2
    # Below this many free bytes on a data path /healthz says degraded, and abandoned uploads are
    # purged sooner than their day.
    min_free_bytes: int = 1024 * 1024 * 1024
    # Empty by default: on one network host candidates suffice; set TURN for sites behind NAT.
    ice_servers: tuple[IceServer, ...] = ()

    def __post_init__(self) -> None:
        for proxy in self.trusted_proxies:
            # A mistyped proxy fails at start, not at the first request.
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"TP_TRUSTED_PROXIES: {proxy!r} is neither an IP address nor a network such as 10.0.0.0/8"
                ) from None

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'telepharmacy.sqlite3'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def with_(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, data_dir: Path | None = None, **overrides: object) -> Config:
        """Config from TP_* environment variables; explicit overrides win."""
        env = os.environ
        base = cls(
            data_dir=Path(env.get("TP_DATA_DIR", str(data_dir or Path(".tp-data")))),
            database_url=env.get("TP_DATABASE_URL", ""),
            host=env.get("TP_HOST", "127.0.0.1"),
            port=int(env.get("TP_PORT", "8080")),
            allowed_origins=tuple(o for o in env.get("TP_ALLOWED_ORIGINS", "").split(",") if o),
            min_free_bytes=int(env.get("TP_MIN_FREE_BYTES", str(cls.min_free_bytes))),
            audit_anchor_seconds=float(env.get("TP_AUDIT_ANCHOR_SECONDS", str(cls.audit_anchor_seconds))),
            refill_too_soon_percent=_bounded(
                "TP_REFILL_TOO_SOON_PERCENT",
                env.get("TP_REFILL_TOO_SOON_PERCENT"),
                cls.refill_too_soon_percent,
                100,
            ),
            decision_undo_seconds=_bounded(
                "TP_DECISION_UNDO_SECONDS", env.get("TP_DECISION_UNDO_SECONDS"), cls.decision_undo_seconds, 30
            ),
            trusted_proxies=tuple(
                p.strip() for p in env.get("TP_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
        )
        if env.get("TP_ICE_SERVERS"):
            base = base.with_(ice_servers=parse_ice_servers(env["TP_ICE_SERVERS"]))
        clean = {k: v for k, v in overrides.items() if v is not None}
        return base.with_(**clean) if clean else base
