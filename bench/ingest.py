"""Ingest benchmark: 20 sites submit fills of three ~1 MB photos end to end to `queued`.

Prints JSON: fills/s and MB/s through the real server (a separate process, SQLite, every image
validated and its variants made before the fill can be queued), the same run's baseline (a bare
aiohttp handler that receives the same bytes and fsyncs them) and the ratio of the tus upload path
to it (the two measured in alternate rounds, both servers up), the latency of
events from commit to a console websocket with 500 more idle websocket clients attached, and the
server's peak resident memory (its media workers included).

    .venv/bin/python -m bench.ingest [--fills 240] [--sites 20] [--idle 500]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import io
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from PIL import Image, ImageDraw

from bench.harness import (
    MemoryWatch,
    calibrate,
    emit,
    free_port,
    serve_command,
    start_server,
    stop_server,
)

KINDS = ("stock_bottle", "pills", "vial_label")
PHOTO_SIZE = (2000, 1500)  # 3 megapixels: what the site client sends (long edge at most 2048)
PHOTO_QUALITY = 97
SCENES = 60  # scenes drawn; every photo of a run is one of them with its own number on it
PASSWORD = "bench-password-1"


def base_photo(seed: int) -> Image.Image:
    """A 3-megapixel scene with enough texture to cost what a phone photo costs to decode."""
    from demo import photos

    kind = seed % 3
    size = PHOTO_SIZE
    if kind == 0:
        return photos.stock_bottle_photo(
            "0093-1048-01", "Metformin HCl", "500 mg", "L1", dt.date(2028, 1, 31), size=size, seed=seed
        )
    if kind == 1:
        return photos.pills_photo(30, seed=seed, size=size)
    return photos.vial_label_photo(
        "600123", "Pat Bench", "Metformin HCl", "500 mg", "Take 1 twice daily", 60, seed=seed, size=size
    )


def make_photos(scene: int, seeds: list[int]) -> list[bytes]:
    """~1 MB JPEGs of one scene, each with its own number drawn on it: different pixels, bytes and
    digest, as every photo a site takes is, so the store keeps each one (nothing is already stored)."""
    base = base_photo(scene)
    out = []
    for seed in seeds:
        im = base.copy()
        ImageDraw.Draw(im).text((10, 10), f"bench {seed}", fill=(0, 0, 0))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=PHOTO_QUALITY)
        out.append(buf.getvalue())
    return out


def prepare_photos(count: int, scenes: int = SCENES) -> list[bytes]:
    """`count` distinct photos; photo i shows scene i % scenes, whose kind is i % 3 (as KINDS)."""
    groups = [list(range(scene, count, scenes)) for scene in range(scenes)]
    photos: list[bytes] = [b""] * count
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        for seeds, made in zip(groups, pool.map(make_photos, range(scenes), groups), strict=True):
            for seed, data in zip(seeds, made, strict=True):
                photos[seed] = data
    return photos


def seed_database(data_dir: Path, sites: int, database_url: str = "") -> list[str]:
    """Sites, one technician each with a device token, and one pharmacist licensed in ND."""
    from server.config import Config
    from server.db.engine import Database
    from server.db.migrate import upgrade
    from server.directory import Directory
    from server.errors import Conflict
    from server.security.auth import Auth
    from server.security.passwords import Passwords

    data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        config = Config(data_dir=data_dir, password_time_cost=1, database_url=database_url)
        db = Database(config.effective_database_url)
        await upgrade(db)
        directory = Directory(db, Passwords(1))
        auth = Auth(db, config, Passwords(1))
        # A database seeded by an earlier run (bench/history.py --reuse) keeps its users and sites;
        # each run issues its own device tokens.
        with contextlib.suppress(Conflict):
            await directory.create_user(None, "rph", "Bench Pharmacist", "pharmacist", PASSWORD)
            await directory.add_license(None, "rph", "ND", "ND-1", dt.date.today() + dt.timedelta(days=90))
        tokens = []
        for i in range(sites):
            with contextlib.suppress(Conflict):
                # Fills are measured here: the prescriptions need no data-entry verification first.
                await directory.create_site(None, f"S{i}", f"Site {i}", "ND", requires_pv1=False)
            with contextlib.suppress(Conflict):
                await directory.create_user(
                    None, f"tech{i}", f"Tech {i}", "technician", PASSWORD, site_code=f"S{i}"
                )
            tokens.append(await auth.issue_device_token(None, f"tech{i}", "bench"))
        await db.dispose()
        return tokens

    return asyncio.run(run())


def cpu_seconds(proc: psutil.Process) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server's main process (and of its event loop's thread,
    a part of it), of its media workers (and the multiprocessing helpers), of this process, which is the
    load-generating client (the console's process is not counted: it stands for other machines), and of
    the whole machine."""
    main = proc.cpu_times()
    # The event loop runs on the main process's first thread, whose id is the process id.
    loop = next((t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid), 0.0)
    workers = 0.0
    for child in proc.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        workers += t.user + t.system
    me = psutil.Process().cpu_times()
    # Everything the two cores did, the kernel's own threads and the console's process included: what a
    # fill costs this machine in all, and so what bounds fills/s.
    machine = psutil.cpu_times()
    return {
        "server_main": main.user + main.system,
        "server_event_loop": loop,
        "media_workers": workers,
        "client": me.user + me.system,
        "machine": machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
    }


def cpu_per_fill(before: dict[str, float], after: dict[str, float], fills: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) / fills * 1000, 1) for k in before}


_DIGESTS: dict[int, str] = {}


def digest(data: bytes) -> str:
    """A photo's SHA-256, computed once: a site hashes a photo when it takes it, not per request."""
    key = id(data)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(data).hexdigest()
    return _DIGESTS[key]


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def submit_fill(
    session: aiohttp.ClientSession, base: str, token: str, rx_id: int, images: list[bytes]
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    fill_id = str(uuid.uuid4())
    async with session.post(
        f"{base}/api/v1/fills", json={"id": fill_id, "prescription_id": rx_id}, headers=auth
    ) as r:
        assert r.status == 201, await r.text()
    for kind, data in zip(KINDS, images, strict=True):
        # As the site client sends a photo: whole, in the creation request (creation-with-upload).
        headers = {
            **auth,
            "Tus-Resumable": "1.0.0",
            "Content-Type": "application/offset+octet-stream",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(fill_id=fill_id, kind=kind, filename=f"{kind}.jpg", sha256=digest(data)),
        }
        async with session.post(f"{base}/api/v1/uploads", data=data, headers=headers) as r:
            assert r.status == 201 and "Tp-Media-Id" in r.headers, await r.text()
    async with session.post(f"{base}/api/v1/fills/{fill_id}/submit", headers=auth) as r:
        body = await r.json()
        assert r.status == 200 and body["state"] == "queued", body


async def make_prescriptions(
    session: aiohttp.ClientSession, base: str, tokens: list[str], prefix: str = "B"
) -> list[int]:
    ids = []
    for i, token in enumerate(tokens):
        body = {
            "rx_number": f"{prefix}{i}",
            "patient_name": "Bench Patient",
            "patient_dob": "1950-01-01",
            "prescriber": "Dr. Bench",
            "drug": "Metformin HCl",
            "strength": "500 mg",
            "dosage_form": "tablet",
            "ndc": "0093-1048-01",
            "quantity": 60,
            "days_supply": 30,
            "directions": "Take 1 twice daily",
            # Every fill of a site is of its one prescription: the most refills a prescription carries.
            "refills_authorized": 99,
        }
        async with session.post(
            f"{base}/api/v1/prescriptions", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as r:
            ids.append((await r.json())["id"])
    return ids


async def console_listener(
    base: str, idle: int, latencies: list[float], ready: asyncio.Event, done: asyncio.Event, tokens: list[str]
) -> None:
    """One measuring console (a pharmacist) plus idle clients (site devices) on the same hub."""
    # unsafe=True: keep the session cookie of a server addressed by IP (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(
            f"{base}/api/v1/session", json={"username": "rph", "password": PASSWORD}
        ) as r:
            assert r.status == 200
        idle_ws = []
        idle_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for i in range(idle):
            idle_ws.append(
                await idle_session.ws_connect(
                    f"{base}/api/v1/ws", headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                )
            )
        ws = await session.ws_connect(f"{base}/api/v1/ws", headers={"Origin": base})
        await ws.receive_json()
        ready.set()
        while not done.is_set():
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") == "fill.queued":
                at = dt.datetime.fromisoformat(data["at"])
                latencies.append((dt.datetime.now(dt.UTC) - at).total_seconds() * 1000)
        await ws.close()
        for w in idle_ws:
            await w.close()
        await idle_session.close()


def console_process(base: str, idle: int, tokens: list[str], ready: Any, done: Any, results: Any) -> None:
    """The console and the idle clients in a process of their own, as on other machines: sharing the
    sites' event loop, the console would measure the load generator's own delays."""

    async def run() -> list[float]:
        latencies: list[float] = []
        up, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(console_listener(base, idle, latencies, up, stop, tokens))
        await asyncio.wait_for(up.wait(), 120)
        ready.set()
        await asyncio.to_thread(done.wait)
        stop.set()
        await task
        return latencies

    results.put(asyncio.run(run()))


async def run_ingest(
    base: str,
    tokens: list[str],
    photos: list[bytes],
    fills: int,
    idle: int,
    cpu: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    listener = ctx.Process(target=console_process, args=(base, idle, tokens, ready, done, results))
    listener.start()
    if not await asyncio.to_thread(ready.wait, 120):
        raise RuntimeError("the console did not connect")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Numbers of this run's own: a database seeded by an earlier run has that run's prescriptions.
        rx_ids = await make_prescriptions(session, base, tokens, prefix=f"B{uuid.uuid4().hex[:8]}-")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(fills):
            queue.put_nowait(n)
        total_bytes = 0

        async def site(i: int) -> None:
            nonlocal total_bytes
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                images = [photos[(n * 3 + k) % len(photos)] for k in range(3)]
                await submit_fill(session, base, tokens[i], rx_ids[i], images)
                total_bytes += sum(len(x) for x in images)

        cpu_before = cpu()
        start = time.perf_counter()
        await asyncio.gather(*(site(i) for i in range(len(tokens))))
        elapsed = time.perf_counter() - start
        cpu_after = cpu()
    await asyncio.sleep(0.5)
    done.set()
    lat = sorted(await asyncio.to_thread(results.get, True, 60))
    listener.join(30)
    return {
        "fills": fills,
        "seconds": round(elapsed, 2),
        "fills_per_s": round(fills / elapsed, 2),
        "mb_per_s": round(total_bytes / elapsed / 1e6, 2),
        "events_seen": len(lat),
        "event_latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "event_latency_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
        "cpu_ms_per_fill": cpu_per_fill(cpu_before, cpu_after, fills),
    }


async def run_upload_path(
    base: str, tokens: list[str], photos: list[bytes], files: int, prefix: str = "U"
) -> dict[str, Any]:
    """The tus path alone (auth, creation with upload, streaming to disk, fsync): every byte but the
    last, so no completion and no image work. The uploads are terminated after the clock stops, as the
    baseline's files are left in place: cleaning up is not part of receiving."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        fills = []
        rx_ids = await make_prescriptions(session, base, tokens, prefix=prefix)
        for i, token in enumerate(tokens):
            fill_id = str(uuid.uuid4())
            async with session.post(
                f"{base}/api/v1/fills",
                json={"id": fill_id, "prescription_id": rx_ids[i]},
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status == 201, await r.text()
            fills.append(fill_id)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(files):
            queue.put_nowait(n)
        total = 0
        created: list[tuple[str, dict[str, str]]] = []

        async def site(i: int) -> None:
            nonlocal total
            auth = {"Authorization": f"Bearer {tokens[i]}"}
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                data = photos[n % len(photos)]
                headers = {
                    **auth,
                    "Tus-Resumable": "1.0.0",
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Length": str(len(data)),
                    "Upload-Metadata": meta(
                        fill_id=fills[i],
                        kind="pills",
                        filename="p.jpg",
                        # A digest of its own per upload: the photos repeat, and the server would find
                        # an unfinished upload of the same file again instead of writing it. Never
                        # completed, the digest is never checked.
                        sha256=hashlib.sha256(f"upload path {n}".encode()).hexdigest(),
                    ),
                }
                async with session.post(f"{base}/api/v1/uploads", data=data[:-1], headers=headers) as r:
                    assert r.status == 201, await r.text()
                    location = r.headers["Location"]
                total += len(data) - 1
                created.append((location, auth))

        start = time.perf_counter()
        await asyncio.gather(*(site(i) for i in range(len(tokens))))
        elapsed = time.perf_counter() - start
        for location, auth in created:
            async with session.delete(f"{base}{location}", headers={**auth, "Tus-Resumable": "1.0.0"}) as r:
                assert r.status == 204
    return {"files": files, "bytes": total, "seconds": elapsed}


BASELINE = """
import os, sys, tempfile
from aiohttp import web
root = sys.argv[2]
async def upload(request):
    fd, tmp = tempfile.mkstemp(dir=root)
    with os.fdopen(fd, "wb") as fh:
        async for chunk in request.content.iter_chunked(256 * 1024):
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, tmp + ".done")
    return web.Response(status=204)
app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/upload", upload)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def run_baseline(base: str, photos: list[bytes], files: int, sites: int) -> dict[str, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(files):
        queue.put_nowait(n)
    total = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def site() -> None:
            nonlocal total
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                data = photos[n % len(photos)]
                async with session.post(f"{base}/upload", data=data) as r:
                    assert r.status == 204
                total += len(data)

        start = time.perf_counter()
        await asyncio.gather(*(site() for _ in range(sites)))
        elapsed = time.perf_counter() - start
    return {"files": files, "bytes": total, "seconds": elapsed}


def compare_upload_paths(
    server: str, baseline: str, tokens: list[str], photos: list[bytes], files: int, rounds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tus path and the bare baseline in alternate rounds (ABBA), both servers up throughout: a
    machine whose speed drifts during the comparison slows both alike."""
    totals: dict[str, dict[str, float]] = {
        side: {"files": 0, "bytes": 0, "seconds": 0.0} for side in ("tus", "bare")
    }
    share = max(1, files // rounds)
    for r in range(rounds):
        order = ("tus", "bare") if r % 2 == 0 else ("bare", "tus")
        for side in order:
            if side == "tus":
                part = asyncio.run(run_upload_path(server, tokens, photos, share, prefix=f"U{r}-"))
            else:
                part = asyncio.run(run_baseline(baseline, photos, share, len(tokens)))
            for key in totals[side]:
                totals[side][key] += part[key]

    def summary(t: dict[str, float]) -> dict[str, Any]:
        return {
            "files": int(t["files"]),
            "rounds": rounds,
            "seconds": round(t["seconds"], 2),
            "mb_per_s": round(t["bytes"] / t["seconds"] / 1e6, 2),
        }

    return summary(totals["tus"]), summary(totals["bare"])


def hashing_cost(photos: list[bytes], sample: int = 30) -> dict[str, float]:
    """What the perceptual hash adds to each photo in a media worker, in ms: timed alone (best of five
    tries per photo) on greyscale thumbnails made as process_image makes them, before the run starts.
    The greyscale conversion is not counted: the quality measures made it before the hash existed."""
    from server.evidence.photo_hash import perceptual_hash
    from server.media.images import THUMB_EDGE

    per_photo = []
    for data in photos[:sample]:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (THUMB_EDGE, THUMB_EDGE))
            im.load()
            im.thumbnail((THUMB_EDGE, THUMB_EDGE), Image.Resampling.BOX)
            gray = im.convert("L")
        tries = []
        for _ in range(5):
            t0 = time.perf_counter()
            perceptual_hash(gray)
            tries.append(time.perf_counter() - t0)
        per_photo.append(min(tries) * 1000)
    return {"median": round(statistics.median(per_photo), 3), "max": round(max(per_photo), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fills", type=int, default=240)
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument(
        "--photos", type=int, default=0, help="distinct photos to cycle through (default: one per photo sent)"
    )
    ap.add_argument(
        "--rounds", type=int, default=4, help="alternate rounds of the upload path and the baseline"
    )
    ap.add_argument("--database-url", default="", help="PostgreSQL (an empty database) instead of SQLite")
    ap.add_argument(
        "--profile", help="write a py-spy profile (raw stacks) of the server and its workers here"
    )
    args = ap.parse_args()

    photos = prepare_photos(args.photos or args.fills * len(KINDS))
    for photo in photos:
        digest(photo)
    hashing = hashing_cost(photos)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "server"
        tokens = seed_database(data_dir, args.sites, args.database_url)
        port = free_port()
        server = start_server(
            serve_command(
                data_dir, port, *(["--database-url", args.database_url] if args.database_url else [])
            ),
            port,
            Path(tmp) / "server.log",
        )
        watch = MemoryWatch(server.pid)
        watch.start()
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--subprocesses",
                    "-r",
                    "200",
                    "-f",
                    "raw",
                    "-o",
                    args.profile,
                    "-p",
                    str(server.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        before = calibrate(photos[0])
        try:
            ingest = asyncio.run(
                run_ingest(
                    f"http://127.0.0.1:{port}",
                    tokens,
                    photos,
                    args.fills,
                    args.idle,
                    lambda: cpu_seconds(watch.proc),
                )
            )
            after = calibrate(photos[0])
            base_dir = Path(tmp) / "baseline"
            base_dir.mkdir()
            bport = free_port()
            baseline_proc = start_server(
                [sys.executable, "-c", BASELINE, str(bport), str(base_dir)], bport, Path(tmp) / "baseline.log"
            )
            try:
                upload_path, baseline = compare_upload_paths(
                    f"http://127.0.0.1:{port}",
                    f"http://127.0.0.1:{bport}",
                    tokens,
                    photos,
                    args.fills * 3,
                    args.rounds,
                )
            finally:
                stop_server(baseline_proc)
        finally:
            watch.stop()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            stop_server(server)
    mean_photo = sum(len(p) for p in photos) / len(photos)
    emit(
        {
            "bench": "ingest",
            "sites": args.sites,
            "idle_websockets": args.idle,
            "photo_mean_bytes": int(mean_photo),
            "photos_distinct": len(set(photos)),
            "photo_pixels": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}",
            "server": ingest,
            # The perceptual hash's share of a photo's work in the media workers (server/media/images.py).
            "perceptual_hash_ms_per_photo": hashing,
            # The machine's speed just before and after the run: lower is faster.
            "calibration": {k: [before[k], after[k]] for k in before},
            "baseline_bare_fsync": baseline,
            "upload_path": upload_path,
            "upload_path_ratio_vs_baseline": round(upload_path["mb_per_s"] / baseline["mb_per_s"], 3),
            "end_to_end_ratio_vs_baseline": round(ingest["mb_per_s"] / baseline["mb_per_s"], 3),
            "server_peak_rss_mb_summed": round(watch.peak_rss / 1e6, 1),
            "server_peak_pss_mb": round(watch.peak_pss / 1e6, 1),
            "targets": {"fills_per_s": 20, "ratio": 0.7, "event_p99_ms": 50, "peak_rss_mb": 400},
        }
    )


if __name__ == "__main__":
    main()
