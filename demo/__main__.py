"""`python -m demo`: the server with the demo network, seeded on the first start (`make demo` runs this).

The data folder keeps what a newcomer needs next to the database: each site computer's device token
(`device-tokens/<technician>`, readable by its owner only) and photos for the prescription waiting for
its first fill (`sample-photos/`). A second start keeps the data and serves it again.

Imports happen in the functions: the media worker processes import this module again as they start,
and kept light it costs them no memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from demo.world import SimClock
    from server.config import Config

TOKENS = "device-tokens"
SAMPLES = "sample-photos"


def _logins(config: Config) -> list[str]:
    from demo import world

    lines = [f"  {'admin':<10} admin"]
    lines += [f"  {u:<10} pharmacist, licensed in {', '.join(st)}" for u, _, st in world.PHARMACISTS]
    lines += [
        f"  {u:<10} technician at {code}; device token in {config.data_dir / TOKENS / u}"
        for code, _, _, u, _ in world.SITES
    ]
    rx = world.UNFILLED
    return [
        f"Demo logins (password for all: {world.PASSWORD}):",
        *lines,
        f"Photos for Rx {rx.rx} ({rx.drug} {rx.strength}, quantity {rx.qty}, at {rx.site}, not filled yet):",
        f"  {config.data_dir / SAMPLES}/",
    ]


async def _write_tokens(app: web.Application, folder: Path) -> None:
    """One file per site computer holding only its token, as `tp-site enroll --token-file` reads it."""
    import os

    from demo import world
    from server.services import SERVICES

    folder.mkdir(mode=0o700, exist_ok=True)
    for code, _, _, username, _ in world.SITES:
        token = await app[SERVICES].auth.issue_device_token(None, username, f"{code} counter")
        fd = os.open(folder / username, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")


def demo_app(config: Config, clock: SimClock) -> web.Application:
    """The server; on its first start, with an empty database, it seeds the demo before taking requests."""
    import datetime as dt

    from demo import world
    from server.app import create_app
    from server.services import SERVICES

    app = create_app(config, clock=clock)

    async def seed(app: web.Application) -> None:
        services = app[SERVICES]
        if await services.directory.users():
            return
        print("Seeding the demo network (first start only; it takes a little while)...", flush=True)
        with world.temporary_work_dir(config.data_dir) as work:
            await world.build(services, clock, Path(work))
        await _write_tokens(app, config.data_dir / TOKENS)
        world.sample_photos(config.data_dir / SAMPLES, dt.date.today())

    # Runs after create_app's own startup, which opens the database and builds the services.
    app.on_startup.append(seed)
    return app


def main(argv: list[str] | None = None) -> int:
    import logging

    from aiohttp import web

    from demo.world import SimClock
    from server.cli import claim_sqlite, run_or_say_why, unlistenable
    from server.config import Config
    from server.operations import logs
    from server.operations.logs import AccessLog

    ap = argparse.ArgumentParser(prog="python -m demo", description="the server with the demo network")
    ap.add_argument("--data-dir", default=".demo-data", help="the demo's database, media, tokens and photos")
    ap.add_argument("--host", default=None)
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args(argv)
    logs.configure(logging.INFO)

    def serve(config: Config) -> int:
        if why := unlistenable(config) or claim_sqlite(config):
            print(f"python -m demo: {why}", file=sys.stderr)
            return 2

        def announce(_: str) -> None:
            """Once the server listens: who may sign in, and where."""
            lines = ["", *_logins(config), "", f"Console: http://{config.host}:{config.port}/"]
            print("\n".join(lines), flush=True)

        app = demo_app(config, SimClock())
        web.run_app(app, host=config.host, port=config.port, print=announce, access_log_class=AccessLog)
        return 0

    def settings() -> Config:
        return Config.from_env(data_dir=Path(args.data_dir), host=args.host, port=args.port)

    return run_or_say_why("python -m demo", settings, serve)


if __name__ == "__main__":
    sys.exit(main())
