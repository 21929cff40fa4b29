"""Typed server configuration: built in code by tests, from the command line or environment in production."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

# Named with the evidence rules, which the site shares.
from server.evidence.kinds import DEFAULT_REQUIRED_MEDIA as DEFAULT_REQUIRED_MEDIA
from server.evidence.media import MAX_PHOTO_BYTES, MAX_VIDEO_BYTES, MAX_VIDEO_SECONDS


class SettingError(ValueError):
    """A setting the server cannot run with; the message names it (`TP_PORT: 'x' is not a whole number`)."""


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """ICE servers from JSON: [{"urls": [...], "username": ..., "credential": ...}]."""
    try:
        items = json.loads(text)
    except ValueError:
        raise SettingError("TP_ICE_SERVERS: not JSON") from None
    if not isinstance(items, list):
        raise SettingError("TP_ICE_SERVERS must be a JSON list")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("urls"), str | list):
            raise SettingError('TP_ICE_SERVERS: each server is an object with its "urls"')
        urls = item["urls"]
        out.append(
            IceServer(
                urls=tuple([urls] if isinstance(urls, str) else urls),
                username=item.get("username"),
                credential=item.get("credential"),
            )
        )
    return tuple(out)


def _bounded(name: str, text: str | None, default: float, maximum: float, minimum: float = 0) -> float:
    """A number setting from minimum to maximum; a bad value stops the server at start, naming it."""
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingError(f"{name}: {text!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise SettingError(f"{name}: {text!r} must be from {minimum:g} to {maximum:g}")
    return value


# The daily retention run's UTC hour unless TP_RETENTION_HOUR says otherwise: a quiet hour in US time.
RETENTION_HOUR = 3


def _whole(name: str, text: str | None, default: int, low: int, high: int) -> int:
    """A whole-number setting from low to high; a bad value stops the server at start, naming it."""
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingError(f"{name}: {text!r} must be from {low} to {high}")
    return value


def _retention_hour(text: str | None) -> int | None:
    """TP_RETENTION_HOUR: the UTC hour of the daily retention run, or `off`."""
    if text is not None and text.strip().lower() == "off":
        return None
    return _whole("TP_RETENTION_HOUR", text, RETENTION_HOUR, 0, 23)


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(name: str, text: str | None) -> bool:
    """An on/off setting, off when unset; anything but the usual words for on and off stops the server at
    start: a switch for a safeguard must not be off because it was misspelt."""
    word = (text or "").strip().lower()
    if word in _ON:
        return True
    if not word or word in _OFF:
        return False
    raise SettingError(f"{name}: {text!r} is neither on ({', '.join(_ON)}) nor off ({', '.join(_OFF)})")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origins(text: str | None) -> tuple[str, ...]:
    """TP_ALLOWED_ORIGINS: comma-separated origins, each as a browser sends it (scheme and host in lower
    case, no default port, no path), so that a space, a capital or a trailing slash cannot make one
    silently match nothing."""
    found = []
    for entry in (text or "").split(","):
        if not (entry := entry.strip()):
            continue
        parts = urlsplit(entry)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme.lower() not in _DEFAULT_PORTS
            or not parts.hostname
            or port == -1
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise SettingError(
                f"TP_ALLOWED_ORIGINS: {entry!r} is not an origin such as https://console.example.org or"
                " http://10.0.0.5:8080 (a scheme, a host and a port if not the default, no path)"
            )
        scheme, host = parts.scheme.lower(), parts.hostname.lower()
        host = f"[{host}]" if ":" in host else host
        found.append(
            f"{scheme}://{host}" + (f":{port}" if port not in (None, _DEFAULT_PORTS[scheme]) else "")
        )
    return tuple(found)


# The databases the server opens, by the drivers it is installed with (`pip install '.[server]'`): a URL
# without one (postgresql://) would ask SQLAlchemy for a driver that is not there.
DATABASE_URL_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")


def _database_url(url: str) -> str:
    """TP_DATABASE_URL or --database-url: empty (SQLite in the data folder), or a URL of a database the
    server opens. Refused naming its scheme only, as the rest may hold a password."""
    scheme, has_scheme, _ = url.partition("://")
    if not url or (has_scheme and scheme in DATABASE_URL_SCHEMES):
        return url
    given = f"{scheme}://" if has_scheme else ("the URL given" if "@" in url else repr(url))
    raise SettingError(
        f"--database-url (or TP_DATABASE_URL): {given} is not a database URL tp-server opens; give"
        " postgresql+asyncpg://USER@HOST/DATABASE or sqlite+aiosqlite:///PATH"
    )


# Server-side encryption an object store is asked for: its own keys (SSE-S3), or a KMS key.
OBJECT_ENCRYPTION = ("AES256", "aws:kms")


@dataclass(frozen=True)
class ObjectStorage:
    """Media in an S3-compatible bucket instead of the data dir's media folder, shared by every server
    instance. Credentials left out come from the AWS chain (environment, shared files, instance role)."""

    bucket: str
    # Object keys begin with it: several deployments may share one bucket.
    prefix: str = ""
    # None: AWS itself; otherwise an S3-compatible server (MinIO, Ceph), addressed by path.
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    encryption: str = "AES256"
    kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket.strip():
            raise SettingError("TP_S3_BUCKET: a bucket name is required")
        if self.prefix.startswith("/"):
            raise SettingError(f"TP_S3_PREFIX: {self.prefix!r} must not start with '/'")
        if self.encryption not in OBJECT_ENCRYPTION:
            raise SettingError(
                f"TP_S3_SSE: {self.encryption!r} must be one of {', '.join(OBJECT_ENCRYPTION)}"
            )
        if self.kms_key_id and self.encryption != "aws:kms":
            raise SettingError("TP_S3_KMS_KEY_ID is given, so TP_S3_SSE must be aws:kms")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise SettingError("TP_S3_ACCESS_KEY_ID and TP_S3_SECRET_ACCESS_KEY go together (or neither)")

    @property
    def key_prefix(self) -> str:
        """The prefix as the start of a key: empty, or ending in one '/'."""
        return self.prefix.rstrip("/") + "/" if self.prefix.strip("/") else ""

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str]) -> ObjectStorage | None:
        """From TP_S3_*; None when TP_S3_BUCKET is unset (media stay in the data dir)."""
        bucket = env.get("TP_S3_BUCKET", "").strip()
        if not bucket:
            return None
        kms = env.get("TP_S3_KMS_KEY_ID") or None
        return cls(
            bucket=bucket,
            prefix=env.get("TP_S3_PREFIX", ""),
            endpoint_url=env.get("TP_S3_ENDPOINT_URL") or None,
            region=env.get("TP_S3_REGION") or None,
            access_key_id=env.get("TP_S3_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("TP_S3_SECRET_ACCESS_KEY") or None,
            encryption=env.get("TP_S3_SSE") or ("aws:kms" if kms else "AES256"),
            kms_key_id=kms,
        )


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
    # Pharmacists and admins must enrol a second factor before they work (a site may require it of the
    # pharmacists deciding its fills either way: sites.require_second_factor).
    second_factor_required: bool = False
    # A console untouched this long locks: patient data hidden, the claim released, the server refusing
    # the session (423) until the password or the second factor unlocks it. 0: never.
    idle_lock_seconds: float = 600.0
    # A decision made this long after the session's last proof of identity asks for it again.
    step_up_after_seconds: float = 3600.0
    # The WebAuthn relying party: the console's host name when empty (security keys are bound to it).
    webauthn_rp_id: str = ""
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
    max_image_bytes: int = MAX_PHOTO_BYTES
    max_video_bytes: int = MAX_VIDEO_BYTES
    max_image_pixels: int = 50_000_000
    # Pages of a prescription's original (a fax's TIFF, a PDF) taken at most.
    max_original_pages: int = 20
    max_video_seconds: float = MAX_VIDEO_SECONDS
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
    # The state telepharmacy rules (None: the reviewed file shipped with the server) and each site's own
    # stricter rules (None: none); a bad file stops the server at start.
    compliance_rules: Path | None = None
    site_rules: Path | None = None
    # After deciding a fill a pharmacist still supervises its site this long (see server.compliance).
    supervision_minutes: float = 30.0
    # Empty by default: on one network host candidates suffice; set TURN for sites behind NAT.
    ice_servers: tuple[IceServer, ...] = ()
    # None: media in the data dir's media folder (shared by instances only through a shared volume).
    object_storage: ObjectStorage | None = None
    # Retention (server/compliance/retention.py): realtime events older than this many days are deleted
    # (a delivery record, not a compliance record), and the daily run starts at this UTC hour (None: no
    # daily run; `tp-server retention run` still works).
    event_journal_days: int = 7
    retention_hour: int | None = RETENTION_HOUR

    def __post_init__(self) -> None:
        _database_url(self.database_url)
        for proxy in self.trusted_proxies:
            # A mistyped proxy fails at start, not at the first request.
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingError(
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
            # The flag's, when given: the variable's is not checked then.
            database_url=str(overrides.get("database_url") or env.get("TP_DATABASE_URL", "")),
            host=env.get("TP_HOST", "127.0.0.1"),
            port=_whole("TP_PORT", env.get("TP_PORT"), 8080, 0, 65535),
            allowed_origins=_origins(env.get("TP_ALLOWED_ORIGINS")),
            min_free_bytes=_whole(
                "TP_MIN_FREE_BYTES", env.get("TP_MIN_FREE_BYTES"), cls.min_free_bytes, 0, 2**63 - 1
            ),
            # At least a second: the anchoring loop would otherwise spin.
            audit_anchor_seconds=_bounded(
                "TP_AUDIT_ANCHOR_SECONDS",
                env.get("TP_AUDIT_ANCHOR_SECONDS"),
                cls.audit_anchor_seconds,
                7 * 86400,
                1,
            ),
            refill_too_soon_percent=_bounded(
                "TP_REFILL_TOO_SOON_PERCENT",
                env.get("TP_REFILL_TOO_SOON_PERCENT"),
                cls.refill_too_soon_percent,
                100,
            ),
            # At most 30 s: a proof of identity asked for before a decision is held is good for five
            # minutes (server/security/step_up.py), so it still is when the decision is sent.
            decision_undo_seconds=_bounded(
                "TP_DECISION_UNDO_SECONDS", env.get("TP_DECISION_UNDO_SECONDS"), cls.decision_undo_seconds, 30
            ),
            compliance_rules=Path(env["TP_COMPLIANCE_RULES"]) if env.get("TP_COMPLIANCE_RULES") else None,
            site_rules=Path(env["TP_SITE_RULES"]) if env.get("TP_SITE_RULES") else None,
            supervision_minutes=_bounded(
                "TP_SUPERVISION_MINUTES", env.get("TP_SUPERVISION_MINUTES"), cls.supervision_minutes, 24 * 60
            ),
            second_factor_required=_switch("TP_SECOND_FACTOR_REQUIRED", env.get("TP_SECOND_FACTOR_REQUIRED")),
            idle_lock_seconds=60
            * _bounded(
                "TP_IDLE_LOCK_MINUTES", env.get("TP_IDLE_LOCK_MINUTES"), cls.idle_lock_seconds / 60, 24 * 60
            ),
            step_up_after_seconds=60
            * _bounded(
                "TP_STEP_UP_AFTER_MINUTES",
                env.get("TP_STEP_UP_AFTER_MINUTES"),
                cls.step_up_after_seconds / 60,
                24 * 60,
            ),
            webauthn_rp_id=env.get("TP_WEBAUTHN_RP_ID", ""),
            trusted_proxies=tuple(
                p.strip() for p in env.get("TP_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            object_storage=ObjectStorage.from_env(env),
            event_journal_days=_whole(
                "TP_EVENT_JOURNAL_DAYS", env.get("TP_EVENT_JOURNAL_DAYS"), cls.event_journal_days, 1, 3650
            ),
            retention_hour=_retention_hour(env.get("TP_RETENTION_HOUR")),
        )
        if env.get("TP_ICE_SERVERS"):
            base = base.with_(ice_servers=parse_ice_servers(env["TP_ICE_SERVERS"]))
        clean = {k: v for k, v in overrides.items() if v is not None}
        return base.with_(**clean) if clean else base
