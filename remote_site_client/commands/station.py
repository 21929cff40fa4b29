"""tp-site station: the technician's page, the outbox's sender and the live connection, in one process."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
from pathlib import Path

from aiohttp import web

from remote_site_client.commands.common import (
    EXIT_OK,
    UsageError,
    config_path,
    say,
    until_stopped,
    whole_number,
)
from remote_site_client.station.app import StationSettings, create_app
from remote_site_client.station.guard import is_loopback_name

DEFAULT_PORT = 8765


def _listen(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(
            f"--listen takes this computer's address on the pharmacy's network, e.g. 192.168.1.20 "
            f"(not {text!r})."
        ) from None
    return text


async def _serve(settings: StationSettings) -> int:
    app = create_app(settings, announce=say)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    hosts = ["127.0.0.1"]
    if settings.listen and not is_loopback_name(settings.listen):
        hosts.append(settings.listen)
    try:
        for host in hosts:
            await web.TCPSite(runner, host, settings.port, reuse_address=True).start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"{host} is not an address of this computer: --listen takes its address on the pharmacy's "
                "network (`ip -brief address` lists them)."
            ) from exc
        raise UsageError(
            f"Port {settings.port} cannot be used ({exc.strerror}): choose another with --port."
        ) from exc
    say(f"Station open: http://127.0.0.1:{settings.port}/ (stop with Ctrl-C).")
    if len(hosts) > 1:
        say(f"A tablet on the pharmacy's network opens http://{settings.listen}:{settings.port}/ and pairs.")
    try:
        await until_stopped(asyncio.Event())
    finally:
        await runner.cleanup()
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    settings = StationSettings(
        config_path=config_path(args),
        port=args.port,
        listen=_listen(args.listen),
        data_dir=Path(args.data_dir) if args.data_dir else None,
    )
    return asyncio.run(_serve(settings))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "station",
        help="the technician's page in a browser: capture, save, work list (runs the outbox and decisions)",
    )
    p.add_argument(
        "--port",
        type=whole_number(0, 65535, "a port"),
        default=DEFAULT_PORT,
        help=f"the page's port (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--listen",
        metavar="ADDRESS",
        help="also serve this address on the pharmacy's network (a tablet then pairs with a code)",
    )
    p.add_argument("--data-dir", help="where the outbox lives when the page enrols this computer")
    p.set_defaults(func=run)
