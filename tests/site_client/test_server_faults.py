"""A real server process under faults an operator meets: killed outright."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil

from tests.site_client.world import ServerProcess, make_site, rx_body, site_api


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
