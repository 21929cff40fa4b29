"""The site's configuration: server, device token, data folder and tuning; a file only its owner reads."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.evidence.photo_quality import DEFAULT, QualityThresholds

CONFIG_ENV = "TP_SITE_CONFIG"


class ConfigError(Exception):
    """The configuration is missing, unreadable or unsafe; the message says what to do."""


def server_address(text: str) -> str:
    """The server's address as the administrator gives it (http(s)://host[:port], and the path it is
    served under, if any), without a trailing slash; ConfigError when it is not one."""
    address = text.strip().rstrip("/")
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"The server's address starts with https:// (or http://), e.g. https://verify.example.org: "
            f"{text.strip()!r} is not one."
        )
    return address


@dataclass(frozen=True)
class SiteConfig:
    server_url: str
    token: str
    data_dir: Path
    # Images are re-encoded to this long edge (pixels) before upload; 0 sends the originals untouched.
    long_edge: int = 2048
    jpeg_quality: int = 82
    # Smallest photo accepted (pixels); None keeps the shared rule's default (server.evidence.photo_quality).
    min_long_edge: int | None = None
    min_short_edge: int | None = None
    # Originals of an approved fill are pruned this many days after approval.
    retention_days: float = 7.0
    # 0: the rest of a file goes in one PATCH (the server keeps the bytes of an interrupted one).
    chunk_bytes: int = 0
    parallel_uploads: int = 3
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    request_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        """Refuses a setting the client cannot work with, naming it: given to `tp-site enroll` or
        edited into the file (a negative retention would prune originals at once)."""
        bounds: dict[str, tuple[float, float]] = {
            "long_edge": (0, 20_000),
            "jpeg_quality": (1, 100),
            "retention_days": (0, 3650),
            "chunk_bytes": (0, 2**31),
            "parallel_uploads": (1, 16),
            "retry_base_seconds": (0.01, 3600),
            "retry_max_seconds": (0.01, 86_400),
            "request_timeout_seconds": (1, 3600),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(
                    f"The setting {name} must be a number from {low:g} to {high:g}, not {value!r}."
                )
        for name in ("min_long_edge", "min_short_edge"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"The setting {name} must be a number of pixels, not {value!r}.")

    def thresholds(self) -> QualityThresholds:
        """The photo-quality limits: the shared defaults, with this site's resolution minimum if set."""
        changes = {
            k: v
            for k, v in (("min_long_edge", self.min_long_edge), ("min_short_edge", self.min_short_edge))
            if v
        }
        return replace(DEFAULT, **changes)

    def with_(self, **changes: Any) -> SiteConfig:
        return replace(self, **changes)

    @property
    def api_url(self) -> str:
        return self.server_url.rstrip("/") + "/api/v1"

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite3"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["data_dir"] = str(self.data_dir)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["data_dir"] = Path(values["data_dir"])
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"The configuration is incomplete ({exc}); run `tp-site enroll` again."
            ) from exc


def default_config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "tp-site" / "config.json"


def default_data_dir() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "tp-site"


def save(config: SiteConfig, path: Path) -> None:
    """Writes the file atomically with mode 0600: it holds the device token."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(config.to_json(), fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path) -> SiteConfig:
    """Reads the configuration; refuses a file others can read, as ssh does with keys."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"This site is not enrolled yet ({path} is missing): run `tp-site enroll --server URL`."
        ) from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} can be read by other users and holds the device token: run `chmod 600 {path}`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable configuration: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a readable configuration.")
    try:
        return SiteConfig.from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


_TOKEN_WORD = re.compile(r"[A-Za-z0-9_-]{32,}")


def token_from_text(text: str) -> str:
    """The device token in what an administrator handed over: the token alone (as `tp-server admin
    token` prints it and the demo writes its device-tokens/ files), or a line that names it, such as
    `TP_SITE_TOKEN=...`, `token: ...` or `7 tech1 ...` (an id and a label before it). Comment lines
    (#) and blank lines are skipped; the token is the one long word of letters, digits, - and _."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    words = [w for ln in lines for w in re.split(r"[\s=:,;\"']+", ln) if _TOKEN_WORD.fullmatch(w)]
    if len(set(words)) == 1:
        return words[0]
    if not words:
        if len(lines) == 1 and len(lines[0].split()) == 1:
            return lines[0]
        raise ConfigError("No device token found there: it is one long word of letters and digits.")
    raise ConfigError(
        f"{len(set(words))} different device tokens found there: give the one for this computer alone."
    )
