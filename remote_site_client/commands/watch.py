"""tp-site watch: print decisions as they arrive (a fill's, and a prescription's data-entry verification or
return), and run a program for each fill's."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from remote_site_client.api import ApiError, SiteApi
from remote_site_client.commands.common import EXIT_OK, load_config, out, say, until_stopped
from remote_site_client.config import SiteConfig
from remote_site_client.live import Decisions, listen, run_hook
from remote_site_client.outbox import Outbox, short_id


def _hook_argv(args: argparse.Namespace) -> list[str] | None:
    if not args.run:
        return None
    return [args.run, *(args.run_arg or [])]


class LinkNotes:
    """What `watch` says of its link: each connection, and each outage once rather than at every retry
    (up to every 30 s), again only if the reason changes (a token refused, say)."""

    def __init__(self) -> None:
        self.why: str | None = None

    def connected(self) -> None:
        self.why = None
        say("Connected; waiting for decisions.")

    def lost(self, why: str) -> None:
        if why != self.why:
            self.why = why
            say(f"Link lost ({why}); reconnecting...")


async def _watch(cfg: SiteConfig, outbox: Outbox, args: argparse.Namespace) -> int:
    hook = _hook_argv(args)
    seen = 0
    done = asyncio.Event()
    async with SiteApi(cfg) as api:
        decisions = Decisions(api, outbox)

        async def handle(event: dict[str, Any]) -> None:
            nonlocal seen
            kind = str(event.get("type"))
            if kind in PV1_OUTCOMES:
                out(await pv1_notice(api, event))
                seen += 1
                if args.exit_after and seen >= args.exit_after:
                    done.set()
                return
            if kind.startswith("prescription."):
                if args.all:
                    rx_id, state = event.get("prescription_id"), event.get("verification_state")
                    out(f"{kind}  prescription {rx_id}  {state}")
                return
            if event.get("type") != "fill.decided":
                if args.all:
                    fill = short_id(str(event.get("fill_id")))
                    out(f"{event.get('type')}  fill {fill}  {event.get('state')}")
                return
            notice = await decisions.notice(str(event["fill_id"]))
            out(notice.text())
            if hook:
                code = await run_hook(hook, notice)
                if code:
                    say(f"{hook[0]} exited with status {code} for fill {short_id(notice.fill_id)}")
            seen += 1
            if args.exit_after and seen >= args.exit_after:
                done.set()

        link = LinkNotes()
        task = asyncio.create_task(
            listen(
                api,
                outbox,
                "watch",
                handle,
                on_connect=link.connected,
                on_disconnect=link.lost,
                give_up_on_refused_token=True,
                # Enrolled again while watching (`tp-site enroll`): the new token is in the settings file.
                enrolled_token=lambda: load_config(args).token,
            )
        )
        await until_stopped(done, task)
    return EXIT_OK


# A pharmacist's data-entry verification (PV1) of a prescription: its two outcomes.
PV1_OUTCOMES = ("prescription.returned", "prescription.verified")


async def pv1_notice(api: SiteApi, event: dict[str, Any]) -> str:
    """What the technician reads when a prescription is verified or returned (the reasons and the
    pharmacist's note come from the prescription itself: events carry no patient data)."""
    rx_id = event.get("prescription_id")
    try:
        _, view = await api.call("GET", f"/prescriptions/{rx_id}")
    except ApiError as exc:
        return f"{event.get('type')}  prescription {rx_id} ({exc.message})"
    rx = view["prescription"]
    if event.get("type") == "prescription.verified":
        return f"Rx {rx['rx_number']}: VERIFIED (data entry); it can be filled."
    last = view["verifications"][-1] if view.get("verifications") else {}
    reasons = ", ".join(last.get("reason_codes", [])) or "no reason given"
    note = f" - {last['note']}" if last.get("note") else ""
    return (
        f"Rx {rx['rx_number']}: RETURNED by the pharmacist: {reasons}{note}\n"
        f"  Correct it with: tp-site rx edit {rx['rx_number']} --FIELD VALUE"
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        return asyncio.run(_watch(cfg, outbox, args))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="print decisions as they arrive")
    p.add_argument(
        "--run", metavar="PROGRAM", help="run this program for each decision (data in TP_* variables)"
    )
    p.add_argument("--run-arg", action="append", metavar="ARG", help="an argument for --run (repeatable)")
    p.add_argument("--all", action="store_true", help="also print queued/claimed/released events")
    p.add_argument("--exit-after", type=int, metavar="N", help="stop after N decisions")
    p.set_defaults(func=run)
