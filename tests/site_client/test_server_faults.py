"""A real server process under faults an operator meets: killed outright, its disk full."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from tests.site_client.world import ServerProcess, copy_data, free_port, make_site, rx_body, site_api


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                running.append(p)
        except psutil.NoSuchProcess:
            pass
    return running


async def test_a_killed_server_leaves_no_process_of_its_run(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    status, _ = await site_api(server.url, token, "POST", "/api/v1/prescriptions", rx_body("300001"))
    assert status == 201
    assert server.proc is not None
    helpers = psutil.Process(server.proc.pid).children(recursive=True)
    # Two media workers, the forkserver that starts them and multiprocessing's resource tracker.
    assert len(helpers) >= 4, helpers
    workers = [p for p in helpers if p.nice() > 0]
    assert len(workers) == 2
    busy_from = sum(p.cpu_times().user for p in workers)

    site = make_site(tmp_path, server.url, token)
    photos = ["--stock-bottle", "stock_bottle.jpg", "--pills", "pills.jpg", "--vial-label", "vial_label.jpg"]
    submit = await site.start(
        "submit", "--rx", "300001", *[a if a.startswith("--") else str(photo_dir / a) for a in photos]
    )
    try:
        deadline = time.monotonic() + 30
        while sum(p.cpu_times().user for p in workers) <= busy_from + 0.02:  # a photo is being decoded
            assert time.monotonic() < deadline, "the media workers never started on the photos"
            await asyncio.sleep(0.01)
        await server.kill()
        deadline = time.monotonic() + 5
        while still_running(helpers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = [(p, " ".join(p.cmdline())[:120]) for p in still_running(helpers)]
        for p, _ in left:  # never leave them to the next test
            p.kill()
        assert [cmd for _, cmd in left] == []
    finally:
        if submit.returncode is None:
            submit.kill()
        await submit.wait()


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A file system of its own, `megabytes` large (a tmpfs: mounting needs root, which CI has)."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill_up(disk: Path, leave: int) -> Path:
    """Takes all of the disk's room but `leave` bytes."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as f:
        f.truncate(0)
        os.posix_fallocate(f.fileno(), 0, max(0, free - leave))
    return filler


async def health(server: ServerProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
        assert resp.status == 200
        return dict(await resp.json())


async def test_a_full_disk_is_answered_507_keeps_nothing_and_the_fill_goes_once_there_is_room(
    seeded_template: tuple[Path, str], photo_dir: Path, tmp_path: Path
) -> None:
    template, token = seeded_template
    with small_disk(tmp_path / "disk", 48) as disk:
        data = copy_data(template, disk / "data")
        server = ServerProcess(
            data, free_port(), tmp_path / "server.log", env={"TP_MIN_FREE_BYTES": str(8 * 1024 * 1024)}
        )
        await server.start()
        try:
            status, _ = await site_api(server.url, token, "POST", "/api/v1/prescriptions", rx_body("500001"))
            assert status == 201
            assert (await health(server))["status"] == "ok"
            filler = fill_up(disk, leave=64 * 1024)  # room for a database page or two, not for a photo

            health_now = await health(server)
            assert health_now["status"] == "degraded"
            assert {"media", "uploads", "database"} <= set(health_now["low_on_space"])
            site = make_site(tmp_path, server.url, token)
            code, out, err = await site.run(
                "submit", "--rx", "500001",
                "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
                "--pills", str(photo_dir / "pills.jpg"),
                "--vial-label", str(photo_dir / "vial_label.jpg"),
                "--wait", "1",
            )  # fmt: skip
            assert code == 3, out + err  # kept in the outbox, to be sent later
            assert "The server is out of storage; your fill is safe at the site and will be sent later." in (
                out + err
            )
            log = (tmp_path / "server.log").read_text()
            assert "the uploads path failed to write: no space left (errno 28)" in log
            assert "Traceback" not in log
            # Nothing of the failed attempts stays on the full disk.
            assert sorted(p.name for p in (data / "uploads").iterdir() if p.is_file()) == []

            filler.unlink()
            assert (await health(server))["status"] == "ok"
            code, out, err = await site.run("sync", "--once")
            assert code == 0 and "delivered" in out, out + err
            status, body = await site_api(server.url, token, "GET", "/api/v1/fills")
            assert [f["state"] for f in body["fills"]] == ["queued"]
        finally:
            await server.stop()
