"""A year of history: builds one (bench/history_build.py), then measures what users feel on top of it.

With the server in its own process (`tp-server serve`, the production code) on the built database:
the queue page and claim-next for 20 pharmacists at once (p50/p99 ms), a fill's detail and a decision,
the dashboard of the last 30 days, a console reconnecting one day behind (to the live point), then
`tp-server audit verify` (rows/s) and `audit export` of one month, bench/ingest.py's fills/s on an
empty database and on the history (one run each, empty first), the database's bytes per fill and the
build's time. Prints JSON.

    .venv/bin/python -m bench.history [--database sqlite|postgresql] [--fills N] [--keep]

`--fills` defaults to 2,000,000 on PostgreSQL (a new database on 127.0.0.1:5432, dropped after unless
--keep) and 500,000 on SQLite. `--fills 20000` is a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.harness import calibrate, emit, free_port, serve_command, start_server, stop_server
from bench.history_build import DAY_US, EPOCH, PASSWORD, History, Roster, build, top_up_queue

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
# Claim-next answered with the fill as a queue row, the record left to the read that follows.
RETURN_MINIMAL = {"Prefer": "return=minimal"}
TARGETS = {
    "claim_next_p99_ms": 15,
    "queue_page_p99_ms": 25,
    "dashboard_30_days_ms": 250,
    "reconnect_day_behind_s": 1,
    "audit_verify_rows_per_s": 200_000,
    "ingest_ratio_history_vs_empty": 0.9,
}


def save_history(history: History) -> None:
    """Writes what was built beside it, for a later run with --reuse."""
    body = dataclasses.asdict(history)
    body["data_dir"] = str(history.data_dir)
    (history.data_dir / "history.json").write_text(json.dumps(body))


def load_history(data_dir: Path) -> History:
    body = json.loads((data_dir / "history.json").read_text())
    r = body.pop("roster")
    roster = Roster(
        [tuple(x) for x in r["sites"]], r["technicians"], [tuple(x) for x in r["pharmacists"]], r["admin"]
    )
    return History(**{**body, "data_dir": Path(body["data_dir"]), "roster": roster})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ms(values: list[float]) -> dict[str, float | int | None]:
    """p50 and p99 of durations in seconds, as ms."""
    if not values:
        return {"n": 0, "p50": None, "p99": None}
    data = sorted(values)
    return {
        "n": len(data),
        "p50": round(statistics.median(data) * 1000, 2),
        "p99": round(data[min(len(data) - 1, int(len(data) * 0.99))] * 1000, 2),
    }


# -- databases -------------------------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


async def database_bytes(history: History) -> int:
    """Tables and their indexes (TOAST included), in bytes; SQLite: the file."""
    if history.url.startswith("postgresql"):
        import asyncpg
        from sqlalchemy.engine import make_url

        conn = await asyncpg.connect(
            make_url(history.url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            return int(
                await conn.fetchval(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind = 'r'"
                )
            )
        finally:
            await conn.close()
    path = history.data_dir / "telepharmacy.sqlite3"
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def cursor_a_day_back(history: History) -> int:
    """The last event id before the events of the last 24 hours: a console that saw it is a day behind."""
    from sqlalchemy import func, select

    from server.db.engine import Database
    from server.db.models import Event

    db = Database(history.url or f"sqlite+aiosqlite:///{history.data_dir / 'telepharmacy.sqlite3'}")
    try:
        async with db.read() as s:
            since = EPOCH + dt.timedelta(microseconds=history.now_us - DAY_US)
            first = (await s.execute(select(func.min(Event.id)).where(Event.at >= since))).scalar()
    finally:
        await db.dispose()
    return int(first or 1) - 1


# -- the server, as users see it -------------------------------------------------------------------


class Console:
    """A pharmacist's (or administrator's) signed-in console session."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.username = username
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.headers: dict[str, str] = {"Origin": base}

    async def sign_in(self) -> None:
        async with self.session.post(
            f"{self.base}/api/v1/session", json={"username": self.username, "password": PASSWORD}
        ) as r:
            body = await r.json()
            assert r.status == 200, body
            self.headers["X-CSRF-Token"] = body["csrf_token"]

    async def timed(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[float, Any]:
        t0 = time.perf_counter()
        sent = {**self.headers, **(headers or {})}
        async with self.session.request(method, self.base + path, json=body, headers=sent) as r:
            data = await r.json()
            elapsed = time.perf_counter() - t0
            assert r.status < 400, (path, r.status, data)
        return elapsed, data

    async def close(self) -> None:
        await self.session.close()


def approval(fill: dict[str, Any]) -> dict[str, Any]:
    """Approval as the console sends it once every photo was on screen (the history has no flags)."""
    return {
        "version": fill["version"],
        "outcome": "approve",
        "views_seen": [{"media_id": m["id"], "seconds": 3.0, "max_zoom": 1.0} for m in fill["media"]],
        "acknowledgements": [{"flag": f["code"], "reason": "verified_visually"} for f in fill["flags"]],
    }


async def pharmacists_at_work(
    consoles: list[Console], pages: int, claims: int, think: float
) -> dict[str, Any]:
    """Every pharmacist at once: queue pages, then claim-next, the fill's detail and an approval, each
    pharmacist pausing a random 0 to 2 x `think` seconds between requests (a person reads a fill for
    seconds): without a pause the figures measure 20 requests queued behind one another."""
    rng = random.Random(7)

    async def pause() -> None:
        await asyncio.sleep(rng.uniform(0, 2 * think))

    queue: list[float] = []
    claim: list[float] = []
    detail: list[float] = []
    decide: list[float] = []
    empty = 0

    async def read_queue(c: Console) -> None:
        for _ in range(pages):
            await pause()
            t, _ = await c.timed("GET", "/api/v1/queue")
            queue.append(t)

    async def work(c: Console) -> None:
        nonlocal empty
        for _ in range(claims):
            await pause()
            # The fill's record is read next (below), so the claim need not answer it too.
            t, body = await c.timed("POST", "/api/v1/queue/claim-next", headers=RETURN_MINIMAL)
            claim.append(t)
            if body["fill"] is None:
                empty += 1
                continue
            await pause()
            t, body = await c.timed("GET", f"/api/v1/fills/{body['fill']['id']}")
            detail.append(t)
            fill = body.get("fill", body)
            await pause()
            t, _ = await c.timed("POST", f"/api/v1/fills/{fill['id']}/decision", approval(fill))
            decide.append(t)

    await asyncio.gather(*(read_queue(c) for c in consoles))
    await asyncio.gather(*(work(c) for c in consoles))
    return {
        "queue_page_ms": ms(queue),
        "claim_next_ms": ms(claim),
        "fill_detail_ms": ms(detail),
        "decision_ms": ms(decide),
        "claim_next_found_nothing": empty,
    }


async def dashboard(admin: Console, pharmacist: Console, rounds: int) -> dict[str, Any]:
    """The dashboard of the last 30 days, one request at a time, as an administrator and a pharmacist."""
    out: dict[str, Any] = {}
    for who, c in (("admin", admin), ("pharmacist", pharmacist)):
        # The first request of a scope makes the summaries of the period's closed hours.
        first, body = await c.timed("GET", "/api/v1/dashboard?days=30")
        times = []
        decided = body["totals"]["decided"]
        for _ in range(rounds):
            t, body = await c.timed("GET", "/api/v1/dashboard?days=30")
            times.append(t)
        out[who] = {
            "first_ms": round(first * 1000, 1),
            "median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1),
            "decided_in_period": decided,
        }
    return out


async def reconnect(c: Console, cursor: int, patience: float = 120) -> dict[str, Any]:
    """A console a day behind opens its websocket with its cursor: seconds until it has every event of
    the day (the hello's cursor, the live point), and how many it received."""
    t0 = time.perf_counter()
    received = 0
    last_at = t0
    async with c.session.ws_connect(f"{c.base}/api/v1/ws?cursor={cursor}", headers={"Origin": c.base}) as ws:
        hello = await ws.receive_json()
        live = int(hello["cursor"])
        while True:
            try:
                msg = await ws.receive_json(timeout=2 if received else patience)
            except TimeoutError:
                # The live point's own event was not for this pharmacist: the day ended with the last one.
                break
            received += 1
            last_at = time.perf_counter()
            if int(msg.get("id", 0)) >= live:
                break
    return {"events": received, "seconds_to_live": round(last_at - t0, 3), "live_cursor": live}


async def measure(
    base: str, history: History, pages: int, claims: int, think: float, cursor: int
) -> dict[str, Any]:
    consoles = [Console(base, name) for _, name in history.roster.pharmacists]
    admin = Console(base, history.roster.admin)
    try:
        for c in [*consoles, admin]:
            await c.sign_in()
        # Warm: the first request of a session pays for things no later one does.
        await admin.timed("GET", "/api/v1/queue")
        behind = await reconnect(consoles[0], cursor)
        # One pharmacist alone: what each request costs the server, with nothing queued before it.
        alone = await pharmacists_at_work(consoles[:1], pages, claims, 0)
        work = await pharmacists_at_work(consoles, pages, claims, think)
        board = await dashboard(admin, consoles[0], 5)
    finally:
        for c in [*consoles, admin]:
            await c.close()
    return {
        **work,
        "one_pharmacist_alone": alone,
        "dashboard_30_days": board,
        "reconnect_day_behind": behind,
    }


# -- the command line's work -----------------------------------------------------------------------


def cli(history: History, *args: str) -> tuple[float, str, str]:
    """Runs `tp-server ARGS` on the history's database: seconds, standard output and error."""
    url = ["--database-url", history.url] if history.url.startswith("postgresql") else []
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        *args[:1],
        "--data-dir",
        str(history.data_dir),
        *url,
        *args[1:],
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout, done.stderr


def _intact(out: str) -> int:
    return int(out.split("intact:")[1].split()[0])


def audit_verify(history: History) -> dict[str, Any]:
    """`tp-server audit verify --full` over the whole chain (rows/s is what the figure is for; the
    command's start is in it), then the daily run, resumed from the checkpoint the first one left."""
    seconds, out, _ = cli(history, "audit", "verify", "--full")
    rows = _intact(out)
    daily_s, daily_out, _ = cli(history, "audit", "verify")
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": int(rows / seconds),
        "whole": True,
        "daily_run": {"rows": _intact(daily_out), "seconds": round(daily_s, 2)},
    }


def audit_work(history: History, tmp: Path) -> dict[str, Any]:
    now = EPOCH + dt.timedelta(microseconds=history.now_us)
    first = (now - dt.timedelta(days=31)).date()
    last = (now - dt.timedelta(days=2)).date()
    export_s, _, err = cli(
        history, "audit", "export", "--from", str(first), "--to", str(last), "--out", str(tmp / "month.csv")
    )
    exported = int(err.strip().splitlines()[-1].split()[0])
    return {
        "verify": audit_verify(history),
        "export_one_month": {
            "from": str(first),
            "to": str(last),
            "rows": exported,
            "seconds": round(export_s, 1),
            "mb": round((tmp / "month.csv").stat().st_size / 1e6, 1),
        },
    }


def ingest_on(
    data_dir: Path, url: str, photos: list[bytes], fills: int, idle: int, tmp: Path
) -> dict[str, Any]:
    """bench/ingest.py's run (20 sites, fills end to end to `queued`) against the database at url."""
    from bench.ingest import run_ingest, seed_database

    tokens = seed_database(data_dir, 20, url if url.startswith("postgresql") else "")
    port = free_port()
    extra = ["--database-url", url] if url.startswith("postgresql") else []
    server = start_server(serve_command(data_dir, port, *extra), port, tmp / f"ingest-{port}.log")
    proc = psutil.Process(server.pid)

    def cpu() -> dict[str, float]:
        t = proc.cpu_times()
        return {"server_main": t.user + t.system}

    try:
        result = asyncio.run(run_ingest(f"http://127.0.0.1:{port}", tokens, photos, fills, idle, cpu))
    finally:
        stop_server(server)
    return {
        k: result[k] for k in ("fills", "seconds", "fills_per_s", "event_latency_ms_p99", "cpu_ms_per_fill")
    }


def ingest_ratio(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The history's fills/s against the empty database's: the ratio of their medians over the rounds
    (one round of 90 fills a side moves by a fifth or more from run to run), and each round's."""
    rates = {side: [run["fills_per_s"] for run in runs] for side, runs in rounds.items()}
    medians = {side: statistics.median(values) for side, values in rates.items()}
    return {
        "ratio_history_vs_empty": round(medians["history"] / medians["empty"], 3),
        "ratio_by_round": [round(h / e, 3) for h, e in zip(rates["history"], rates["empty"], strict=True)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    ap.add_argument(
        "--fills", type=int, help="final fills in the year (default 2,000,000; 500,000 on SQLite)"
    )
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--pharmacists", type=int, default=20)
    ap.add_argument("--queued", type=int, default=1000, help="fills waiting in the live queue")
    ap.add_argument("--pages", type=int, default=10, help="queue pages each pharmacist reads")
    ap.add_argument("--claims", type=int, default=10, help="fills each pharmacist claims and approves")
    ap.add_argument("--think", type=float, default=1.0, help="mean pause between a pharmacist's requests")
    ap.add_argument("--ingest-fills", type=int, default=90, help="0: no ingest comparison")
    ap.add_argument("--ingest-idle", type=int, default=50, help="idle websockets during ingest")
    ap.add_argument(
        "--ingest-rounds", type=int, default=3, help="ingest runs a side, alternated (the ratio of medians)"
    )
    ap.add_argument(
        "--reuse", help="measure a history kept by an earlier --keep run (its data dir) instead of building"
    )
    ap.add_argument("--keep", action="store_true", help="keep the database (and print where it is)")
    args = ap.parse_args()
    fills = args.fills or (2_000_000 if args.database == "postgresql" else 500_000)

    tmp = Path(tempfile.mkdtemp(prefix="tp-history-"))
    names: list[str] = []
    scratch: list[str] = []
    result: dict[str, Any] = {"bench": "history", "database": args.database, "fills": fills}
    try:
        url = ""
        if args.database == "postgresql" and not args.reuse:
            name = f"tp_history_{os.getpid()}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
            names.append(name)
            url = pg_url(name)
        data_dir = tmp / "server"
        if args.reuse:
            history = load_history(Path(args.reuse))
            data_dir, url, fills = history.data_dir, history.url, history.fills
            names.clear()
            result["fills"] = fills
            result["reused"] = True
            # The queue as the build left it: the last run's pharmacists approved some of it.
            result["queue_topped_up"] = asyncio.run(top_up_queue(history))
        else:
            history = asyncio.run(
                build(
                    url, data_dir, fills=fills, sites=args.sites, pharmacists=args.pharmacists,
                    queued=args.queued, log=log,
                )
            )  # fmt: skip
            save_history(history)
        result["rows"] = history.rows
        result["build_seconds"] = history.seconds
        size = asyncio.run(database_bytes(history))
        result["database_bytes_per_fill"] = int(size / (fills + history.queued))
        result["database_gb"] = round(size / 1e9, 2)
        log("history built; measuring")
        from bench.ingest import prepare_photos

        # How fast the machine ran, before the server's figures and after the audit's: its speed can
        # halve from one day to the next, or within minutes, and every figure moves with it.
        photo = prepare_photos(1)[0]
        before = calibrate(photo)
        cursor = asyncio.run(cursor_a_day_back(history))
        port = free_port()
        extra = ["--database-url", url] if url else []
        server = start_server(serve_command(data_dir, port, *extra), port, tmp / "server.log")
        try:
            result["server"] = asyncio.run(
                measure(f"http://127.0.0.1:{port}", history, args.pages, args.claims, args.think, cursor)
            )
            result["server"]["think_seconds"] = args.think
        finally:
            stop_server(server)
        log("audit verify and export")
        result["audit"] = audit_work(history, tmp)
        after = calibrate(photo)
        result["calibration"] = {k: [before[k], after[k]] for k in before}
        if args.ingest_fills:
            from bench.ingest import KINDS

            log(f"ingest: empty database, then the history, {args.ingest_rounds} times")
            # Each round its own photos (a photo sent again would be found as reused).
            per_round = args.ingest_fills * len(KINDS)
            photos = prepare_photos(per_round * args.ingest_rounds)
            empty_url = ""
            if url:
                empty = f"tp_history_empty_{os.getpid()}"
                asyncio.run(_pg_admin(f'CREATE DATABASE "{empty}"'))
                scratch.append(empty)
                empty_url = pg_url(empty)
            rounds: dict[str, list[dict[str, Any]]] = {"empty": [], "history": []}
            for r in range(args.ingest_rounds):
                batch = photos[r * per_round : (r + 1) * per_round]
                for side, where, at in (("empty", tmp / "empty", empty_url), ("history", data_dir, url)):
                    rounds[side].append(ingest_on(where, at, batch, args.ingest_fills, args.ingest_idle, tmp))
            result["ingest"] = {**rounds, **ingest_ratio(rounds)}
        result["targets"] = TARGETS
        if args.keep and not args.reuse:
            result["kept"] = {"data_dir": str(data_dir), "database_url": url or None}
    finally:
        # The empty database of the ingest comparison goes in any case; the history only without --keep.
        for name in scratch if args.keep else [*names, *scratch]:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    emit(result)


if __name__ == "__main__":
    main()
