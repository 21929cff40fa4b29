"""tp-site rx import FILE.csv: the pharmacy system's export, line by line."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from remote_site_client.api import ApiError, SiteApi, TokenRefused
from remote_site_client.commands.common import (
    EXIT_CHECKS,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REFUSED,
    UsageError,
    load_config,
    no_answer,
    out,
)
from remote_site_client.config import SiteConfig
from remote_site_client.rx_import import ImportFileError, Line, read_export
from server.evidence.text import WINDOWS_1252


async def _send(cfg: SiteConfig, lines: list[Line]) -> int:
    taken = again = refused = 0
    async with SiteApi(cfg) as api:
        for i, line in enumerate(lines):
            if line.body is None:
                out(f"  line {line.number}: not imported: {line.problem}.")
                refused += 1
                continue
            try:
                status, rx = await api.call("POST", "/prescriptions", line.body)
            except TokenRefused as exc:
                out(f"{exc.message} Line {line.number} and the {len(lines) - i - 1} after it were not sent: "
                    "import again once enrolled (lines already imported are recognised).")  # fmt: skip
                _summary(taken, again, refused)
                return EXIT_REFUSED
            except ApiError as exc:
                if exc.transient:
                    out(f"{no_answer(exc)}; line {line.number} and the "
                        f"{len(lines) - i - 1} after it were not sent. Run the import again: lines already "
                        "imported are recognised.")  # fmt: skip
                    _summary(taken, again, refused)
                    return EXIT_PENDING
                out(f"  line {line.number}: refused: {exc.message}")
                refused += 1
                continue
            if status == 201:
                taken += 1
            else:
                again += 1
                out(f"  line {line.number}: Rx {rx['rx_number']} was imported before.")
    _summary(taken, again, refused)
    return EXIT_CHECKS if refused else EXIT_OK


def _summary(taken: int, again: int, refused: int) -> None:
    out(f"{taken} prescription(s) imported, {again} already here, {refused} line(s) not imported.")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        export = read_export(Path(args.file))
    except ImportFileError as exc:
        raise UsageError(str(exc)) from exc
    lines = export.lines
    if export.encoding == WINDOWS_1252:
        out(f"{args.file} is not UTF-8: read as Windows-1252, as Windows programs export CSV.")
    if not lines:
        out("The file has a header and no prescriptions.")
        return EXIT_OK
    out(f"Importing {len(lines)} line(s) from {args.file}...")
    return asyncio.run(_send(cfg, lines))


def add_parser(rx_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = rx_sub.add_parser(
        "import",
        help="import prescriptions from the pharmacy system's CSV export (columns named in its first line)",
    )
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=run)
