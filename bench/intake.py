"""FHIR intake under load: 20 pharmacy systems (one per site) sending transaction Bundles at once to a
server in its own process, each bundle one new MedicationRequest with its Patient, Practitioner and
Medication. Prints bundles per second and the latency's p50/p99: sent back to back (each sender waits
for its answer: the most the server takes), or at an offered rate (`--rate`, bundles/s in all, spread
evenly over the senders, whether or not answers have come: the latency a pharmacy system sees then).

    .venv/bin/python -m bench.intake [--bundles 2000] [--senders 20] [--rate 200] [--database-url ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import emit, free_port, serve_command, start_server, stop_server


def bundle(site: int, n: int) -> dict[str, Any]:
    """One prescription of a site's n-th patient as a transaction Bundle referencing its entries."""
    pat, doc, med = (f"urn:uuid:00000000-0000-4000-8000-{site:04d}{n:08d}", "urn:uuid:doc", "urn:uuid:med")
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pat,
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": f"Patient{n}", "given": ["Bench"]}],
                    "birthDate": "1950-04-30",
                },
            },
            {
                "fullUrl": doc,
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
                    "name": [{"text": "Dr. Bench Prescriber"}],
                },
            },
            {
                "fullUrl": med,
                "resource": {
                    "resourceType": "Medication",
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0378-1805-01"}],
                             "text": "Metformin HCl"},
                    "form": {"text": "tablet"},
                    "ingredient": [{"itemCodeableConcept": {"text": "metformin"},
                                    "strength": {"numerator": {"value": 500, "unit": "mg"},
                                                 "denominator": {"value": 1, "unit": "tablet"}}}],
                },
            },
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "identifier": [{"system": f"urn:site:{site}", "value": f"B{site}-{n}"}],
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": pat},
                    "requester": {"reference": doc},
                    "medicationReference": {"reference": med},
                    "dosageInstruction": [{"text": "Take 1 tablet by mouth twice daily"}],
                    "dispenseRequest": {
                        "quantity": {"value": 60},
                        "expectedSupplyDuration": {"value": 30, "code": "d"},
                        "numberOfRepeatsAllowed": 3,
                    },
                },
                "request": {"method": "POST", "url": "MedicationRequest"},
            },
        ],
    }  # fmt: skip


def seed(data_dir: Path, sites: int, database_url: str) -> list[str]:
    """Sites and one integration token each."""
    from server.config import Config
    from server.db.engine import Database
    from server.db.migrate import upgrade
    from server.directory import Directory
    from server.security.auth import Auth
    from server.security.passwords import Passwords

    data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        config = Config(data_dir=data_dir, password_time_cost=1, database_url=database_url)
        db = Database(config.effective_database_url)
        await upgrade(db)
        directory = Directory(db, Passwords(1))
        auth = Auth(db, config, Passwords(1))
        tokens = []
        for i in range(sites):
            await directory.create_site(None, f"S{i}", f"Site {i}", "ND")
            tokens.append(await auth.issue_integration_token(None, f"S{i}", "bench"))
        await db.dispose()
        return tokens

    return asyncio.run(run())


async def send_all(
    url: str, tokens: list[str], per_sender: int, first: int = 0, rate: float = 0.0
) -> tuple[list[float], float]:
    """Each sender's bundles back to back, or (rate > 0) one every len(tokens)/rate seconds."""
    latencies: list[float] = []
    every = len(tokens) / rate if rate > 0 else 0.0

    async def one(http: aiohttp.ClientSession, site: int, n: int) -> None:
        body = json.dumps(bundle(site, n)).encode()
        start = time.perf_counter()
        async with http.post(f"{url}/api/v1/fhir", data=body) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"bundle refused: {resp.status} {await resp.text()}")
        latencies.append(time.perf_counter() - start)

    async def sender(site: int, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        async with aiohttp.ClientSession(headers=headers) as http:
            if not every:
                for n in range(first, first + per_sender):
                    await one(http, site, n)
                return
            # Offered load: the senders' ticks staggered so that the bundles arrive evenly.
            begin = time.perf_counter() + every * site / len(tokens)
            sent = []
            for i, n in enumerate(range(first, first + per_sender)):
                await asyncio.sleep(max(0.0, begin + i * every - time.perf_counter()))
                sent.append(asyncio.create_task(one(http, site, n)))
            await asyncio.gather(*sent)

    start = time.perf_counter()
    await asyncio.gather(*(sender(i, t) for i, t in enumerate(tokens)))
    return latencies, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundles", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=20)
    ap.add_argument(
        "--rate", type=float, default=0.0, help="offered bundles/s in all (default: back to back)"
    )
    ap.add_argument("--database-url", default="", help="PostgreSQL (an empty database) instead of SQLite")
    args = ap.parse_args()
    per_sender = max(1, args.bundles // args.senders)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "server"
        tokens = seed(data_dir, args.senders, args.database_url)
        port = free_port()
        extra = ["--database-url", args.database_url] if args.database_url else []
        server = start_server(serve_command(data_dir, port, *extra), port, Path(tmp) / "server.log")
        try:
            url = f"http://127.0.0.1:{port}"
            # A first bundle per sender warms the server (the FHIR models load on first use).
            asyncio.run(send_all(url, tokens, 1, first=10**6))
            latencies, seconds = asyncio.run(send_all(url, tokens, per_sender, rate=args.rate))
        finally:
            stop_server(server)
    ms = sorted(x * 1000 for x in latencies)
    emit(
        {
            "benchmark": "intake",
            "database": "postgresql" if args.database_url else "sqlite",
            "senders": args.senders,
            "offered_per_s": args.rate or None,
            "bundles": len(ms),
            "bundles_per_s": round(len(ms) / seconds, 1),
            "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        }
    )


if __name__ == "__main__":
    main()
