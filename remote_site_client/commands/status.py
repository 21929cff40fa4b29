"""tp-site status: the site's fills, or one fill with its decision (what is known here when offline)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from remote_site_client.api import ApiError, SiteApi
from remote_site_client.commands.common import EXIT_OK, entry_line, load_config, out, say
from remote_site_client.config import SiteConfig
from remote_site_client.live import Decisions
from remote_site_client.outbox import FAILED, OPEN_STATES, Outbox
from remote_site_client.progress import human_bytes
from server.evidence.kinds import KIND_NAMES


def _print_fill(fill: dict[str, Any], labels: dict[str, str]) -> None:
    rx = fill.get("prescription") or {}
    out(f"Fill {fill['id']}: {fill['state']}")
    out(f"  Rx {rx.get('rx_number')}  {rx.get('drug')} {rx.get('strength')}  qty {rx.get('quantity')}")
    out(f"  product check: {fill.get('product_check')}")
    for m in fill.get("media", []):
        out(
            f"  {KIND_NAMES.get(m['kind'], m['kind']):<20} {m.get('width')}x{m.get('height')}  "
            f"{human_bytes(m['bytes'])}"
        )
    if fill.get("override_reason"):
        out(f"  override: {fill['override_reason']}")
    decision = fill.get("decision")
    if decision:
        verdict = "APPROVED" if decision["outcome"] == "approve" else "REJECTED"
        out(
            f"  {verdict} by {(decision.get('pharmacist') or {}).get('name')} at {decision.get('decided_at')}"
        )
        if decision.get("reason_codes"):
            out("  reasons: " + "; ".join(labels.get(c, c) for c in decision["reason_codes"]))
        if decision.get("note"):
            out(f"  note: {decision['note']}")


async def _status(cfg: SiteConfig, outbox: Outbox, fill_id: str | None) -> None:
    async with SiteApi(cfg) as api:
        if fill_id:
            fill = await api.fill(fill_id)
            decisions = Decisions(api, outbox)
            if fill.get("decision"):
                await decisions.notice_from(fill)
            else:
                outbox.set_fill_state(fill_id, fill["state"])
            _print_fill(fill, await decisions.labels() if fill.get("decision") else {})
            return
        for fill in await api.fills():
            decision = fill.get("decision") or {}
            extra = ""
            if decision.get("reason_codes"):
                extra = "  reasons: " + ",".join(decision["reason_codes"])
            out(
                f"{fill['id']}  {fill['state']:<10} {fill['priority']:<9} "
                f"submitted {fill.get('submitted_at') or '-'}{extra}"
            )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        pending = outbox.entries([*OPEN_STATES, FAILED])
        if pending:
            out(f"{len(pending)} fill(s) in the outbox not delivered yet (see `tp-site outbox`).")
        try:
            asyncio.run(_status(cfg, outbox, args.fill_id))
        except ApiError as exc:
            if not exc.transient:
                raise
            say(f"The server cannot be reached ({exc.message}); what this computer knows:")
            entry = outbox.get(args.fill_id) if args.fill_id else None
            for e in [entry] if entry else outbox.entries():
                out(entry_line(e))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="the site's fills, or one fill with its decision")
    p.add_argument("fill_id", nargs="?")
    p.set_defaults(func=run)
