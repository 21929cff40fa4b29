"""tp-site: enroll, station, rx, submit, status, outbox, watch, consult and sync, for a site's technician.

Each command is a module of remote_site_client/commands/; this one builds the parser from them and
turns the errors a technician can act on into a message and an exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from remote_site_client import config as site_config
from remote_site_client.api import ApiError, TokenRefused
from remote_site_client.commands import (
    consult,
    enroll,
    handout,
    outbox,
    rx,
    station,
    status,
    submit,
    sync,
    watch,
)
from remote_site_client.commands.common import (
    EXIT_PENDING,
    EXIT_REFUSED,
    EXIT_USAGE,
    OutputClosed,
    UsageError,
    say,
)
from remote_site_client.config import ConfigError

# In the order `tp-site --help` lists them.
COMMANDS = (enroll, station, rx, submit, status, handout, outbox, watch, consult, sync)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tp-site", description="Telepharmacy remote site: submit fills for verification"
    )
    ap.add_argument(
        "--config", help=f"settings file (default ${site_config.CONFIG_ENV} or ~/.config/tp-site/config.json)"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except TokenRefused as exc:
        # Trying again cannot help until the computer is enrolled again; what the outbox holds stays.
        say(f"error: {exc.message}")
        return EXIT_REFUSED
    except ApiError as exc:
        say(f"error: {exc.message}")
        return EXIT_PENDING if exc.transient else EXIT_REFUSED
    except OutputClosed:
        # As Unix tools do when the reader went away (`| head`): no traceback, no message. Later
        # writes (the interpreter's last flush) go nowhere rather than fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        say("Stopped. Anything stored in the outbox is safe and will be sent by `tp-site sync`.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
