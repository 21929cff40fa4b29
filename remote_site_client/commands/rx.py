"""tp-site rx: list the site's prescriptions, or enter one."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from remote_site_client.api import ApiError, SiteApi
from remote_site_client.checks import ndc_label
from remote_site_client.commands import rx_import
from remote_site_client.commands.common import EXIT_OK, load_config, number, out, say
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import Outbox

RX_FIELDS = (
    "rx_number",
    "patient_name",
    "patient_dob",
    "prescriber",
    "drug",
    "strength",
    "dosage_form",
    "ndc",
    "quantity",
    "days_supply",
    "directions",
)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with Outbox(cfg.data_dir) as outbox:
        if args.rx_command == "create":
            body: dict[str, Any] = {name: getattr(args, name) for name in RX_FIELDS}
            body["dea_schedule"] = args.dea_schedule
            body["fill_type"] = args.fill_type
            rx = asyncio.run(_create_rx(cfg, body))
            outbox.cache_prescriptions([rx])
            out(
                f"Prescription Rx {rx['rx_number']} entered: {rx['drug']} {rx['strength']}, "
                f"NDC {ndc_label(rx['expected_ndc'])}."
            )
            return EXIT_OK
        try:
            items = asyncio.run(_list_rx(cfg))
            outbox.cache_prescriptions(items)
        except ApiError as exc:
            if not exc.transient:
                raise
            say(f"Offline ({exc.message}); showing the prescriptions kept on this computer.")
            items = outbox.cached_prescriptions()
        for rx in items:
            out(
                f"Rx {rx['rx_number']:<12} {rx['drug']} {rx['strength']}  qty {number(rx['quantity'])}  "
                f"NDC {ndc_label(rx['expected_ndc'], billing=False)}  {rx['patient_name']}"
            )
        if not items:
            out("No prescriptions yet.")
    return EXIT_OK


async def _create_rx(cfg: SiteConfig, body: dict[str, Any]) -> dict[str, Any]:
    async with SiteApi(cfg) as api:
        return await api.create_prescription(body)


async def _list_rx(cfg: SiteConfig) -> list[dict[str, Any]]:
    async with SiteApi(cfg) as api:
        return await api.prescriptions()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rx", help="prescriptions of this site")
    rx_sub = p.add_subparsers(dest="rx_command", required=True)
    rx_sub.add_parser("list", help="list the site's prescriptions")
    c = rx_sub.add_parser("create", help="enter a prescription")
    # The server takes numbers as JSON numbers.
    types: dict[str, type] = {"quantity": float, "days_supply": int}
    for name in RX_FIELDS:
        c.add_argument("--" + name.replace("_", "-"), dest=name, required=True, type=types.get(name, str))
    c.add_argument("--dea-schedule", choices=["CII", "CIII", "CIV", "CV"])
    c.add_argument("--fill-type", choices=["new", "refill"], default="new")
    p.set_defaults(func=run)
    rx_import.add_parser(rx_sub)
