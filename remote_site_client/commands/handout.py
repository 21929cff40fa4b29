"""tp-site hand-out and tp-site decline: the end of a fill at the counter.

`hand-out` records that an approved fill was handed to the patient; the server refuses it while the
patient's counselling is due (the state requires it and it is not recorded yet). `decline` records that
the patient, or their agent, declined counselling, where the state's rules let them.
"""

from __future__ import annotations

import argparse
import asyncio

from remote_site_client.api import SiteApi
from remote_site_client.commands.common import EXIT_OK, load_config, out
from remote_site_client.commands.status import COUNSELLING_WORDS, resolve_on_server
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import Outbox, short_id

# Who declined counselling, as the server records it: a role, never a name.
DECLINED_BY = ("patient", "agent")


async def _hand_out(cfg: SiteConfig, outbox: Outbox, fill_text: str) -> None:
    async with SiteApi(cfg) as api:
        fill_id = await resolve_on_server(api, outbox, fill_text)
        fill = await api.hand_out(fill_id)
        outbox.set_fill_state(fill_id, fill["state"])
        counselling = COUNSELLING_WORDS.get(fill.get("counselling") or "", "no counselling required")
        out(f"Fill {short_id(fill_id)} handed out ({counselling}).")


async def _decline(cfg: SiteConfig, outbox: Outbox, fill_text: str, who: str, note: str | None) -> None:
    async with SiteApi(cfg) as api:
        fill_id = await resolve_on_server(api, outbox, fill_text)
        await api.decline_counselling(fill_id, who, note)
        out(f"Fill {short_id(fill_id)}: counselling declined by the {who}, recorded.")
        out(f"Hand it to the patient, then: tp-site hand-out {short_id(fill_id)}")


def run_hand_out(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        asyncio.run(_hand_out(cfg, outbox, args.fill_id))
    return EXIT_OK


def run_decline(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        asyncio.run(_decline(cfg, outbox, args.fill_id, args.by, args.note))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "hand-out",
        help="record that an approved fill was handed to the patient (after counselling, where due)",
    )
    p.add_argument("fill_id", help="the fill's short id (8 characters, as shown) or its whole id")
    p.set_defaults(func=run_hand_out)
    d = sub.add_parser(
        "decline", help="record that the patient declined counselling (only where the state allows it)"
    )
    d.add_argument("fill_id", help="the fill's short id (8 characters, as shown) or its whole id")
    d.add_argument("--by", choices=DECLINED_BY, default="patient", help="who declined (default: patient)")
    d.add_argument("--note", help="why, in a few words (kept with the record)")
    d.set_defaults(func=run_decline)
