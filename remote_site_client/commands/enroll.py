"""tp-site enroll: connect this computer to the server with a device token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from remote_site_client import config as site_config
from remote_site_client.api import SiteApi
from remote_site_client.commands.common import EXIT_OK, UsageError, config_path, out
from remote_site_client.config import ConfigError, SiteConfig
from remote_site_client.outbox import Outbox


def _read_token(args: argparse.Namespace) -> str:
    """The token from --token-file, TP_SITE_TOKEN, --token or what is typed, in any form the
    administrator's file or message gives it (see `token_from_text`)."""
    if args.token_file:
        try:
            text = Path(args.token_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"The token file {args.token_file} cannot be read: {exc.strerror}.") from exc
    elif os.environ.get("TP_SITE_TOKEN"):
        text = os.environ["TP_SITE_TOKEN"]
    elif args.token:
        text = str(args.token)
    elif sys.stdin.isatty():
        text = getpass.getpass("Device token (from the administrator): ")
    else:
        text = sys.stdin.readline()
    return site_config.token_from_text(text) if text.strip() else ""


def run(args: argparse.Namespace) -> int:
    token = _read_token(args)
    if not token:
        raise UsageError(
            "No device token given: pass --token-file FILE, TP_SITE_TOKEN, or type it when asked."
        )
    path = config_path(args)
    previous: SiteConfig | None = None
    with contextlib.suppress(ConfigError):
        previous = site_config.load(path)
    data_dir = (
        Path(args.data_dir)
        if args.data_dir
        else (previous.data_dir if previous else site_config.default_data_dir())
    )
    cfg = SiteConfig(
        server_url=site_config.server_address(args.server), token=token, data_dir=data_dir.resolve()
    )
    tuning = {
        "long_edge": args.long_edge,
        "jpeg_quality": args.jpeg_quality,
        "retention_days": args.retention_days,
        "min_long_edge": args.min_long_edge,
        "min_short_edge": args.min_short_edge,
        "chunk_bytes": args.chunk_bytes,
        "retry_base_seconds": args.retry_base_seconds,
    }
    cfg = cfg.with_(**{k: v for k, v in tuning.items() if v is not None})
    who = ""
    if not args.no_verify:
        me = asyncio.run(_whoami(cfg))
        user = me["user"]
        if user["role"] != "technician":
            raise UsageError(
                f"This token belongs to {user['username']}, a {user['role']}: "
                "a site needs a technician's token."
            )
        who = f" as {user['display_name']} (site {user['site_id']})"
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    site_config.save(cfg, path)
    Outbox(cfg.data_dir).close()
    out(f"Enrolled with {cfg.server_url}{who}. Settings in {path} (readable by you only).")
    return EXIT_OK


async def _whoami(cfg: SiteConfig) -> dict[str, Any]:
    async with SiteApi(cfg) as api:
        return await api.whoami()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("enroll", help="connect this computer to the server with a device token")
    p.add_argument("--server", required=True, help="the server's URL, e.g. https://verify.example.org")
    p.add_argument(
        "--token", help="the device token (prefer --token-file or TP_SITE_TOKEN: not in shell history)"
    )
    p.add_argument("--token-file", help="a file holding the device token")
    p.add_argument("--data-dir", help="where the outbox lives (default ~/.local/share/tp-site)")
    p.add_argument(
        "--long-edge", type=int, help="re-encode photos to this long edge in pixels (0: send originals)"
    )
    p.add_argument("--jpeg-quality", type=int)
    p.add_argument("--retention-days", type=float, help="keep originals this long after approval")
    p.add_argument("--min-long-edge", type=int, help="refuse photos whose long edge is smaller (pixels)")
    p.add_argument("--min-short-edge", type=int, help="refuse photos whose short edge is smaller (pixels)")
    p.add_argument("--chunk-bytes", type=int, help="upload in chunks of this size (0: one request per file)")
    p.add_argument("--retry-base-seconds", type=float)
    p.add_argument("--no-verify", action="store_true", help="do not contact the server now")
    p.set_defaults(func=run)
