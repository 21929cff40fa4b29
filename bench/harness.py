"""What the benchmarks share: a free port, the server in a process of its own, the memory and CPU of a
process and its children, the machine's speed at the time, and the JSON a benchmark prints.

Benchmarks run from the repository root as modules: `.venv/bin/python -m bench.NAME`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def prescription_row(rx_id: int, site_id: int, rx_number: str, **over: Any) -> dict[str, Any]:
    """A plain prescription as a row to insert: the benches that seed rows directly need one per site
    or per fill, and only its ids (and sometimes its creation time) matter to them."""
    return {
        "id": rx_id,
        "site_id": site_id,
        "rx_number": rx_number,
        "patient_name": "P",
        "patient_dob": dt.date(1950, 1, 1),
        "prescriber": "Dr",
        "drug": "Drug",
        "strength": "1 mg",
        "dosage_form": "tablet",
        "expected_ndc": "00000000000",
        "quantity": Decimal(30),
        "days_supply": 30,
        "directions": "d",
        "fill_type": "new",
        **over,
    }


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new PostgreSQL database beside the one `admin_dsn` (postgresql://...) names, dropped on exit;
    yields its SQLAlchemy URL."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(data_dir: Path, port: int, *extra: str) -> list[str]:
    """`tp-server serve` on loopback, as a benchmark starts it."""
    return [
        sys.executable, "-m", "server.cli", "serve",
        "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port), *extra,
    ]  # fmt: skip


def start_server(args: list[str], port: int, log: Path, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Starts `args` and returns once something listens on `port` (the app has started by then)."""
    # Logs go to a file: a pipe nobody reads fills up and stalls the server.
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError("server did not start: " + log.read_text()[-2000:])


def stop_server(proc: subprocess.Popen[bytes], patience: float = 15) -> None:
    """Asks the server to stop as Ctrl-C does; kills it if it is still there after `patience` seconds."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(patience)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- memory and CPU --------------------------------------------------------------------------------


def family(proc: psutil.Process) -> list[psutil.Process]:
    """A process and its children (the media workers)."""
    return [proc, *proc.children(recursive=True)]


def high_water_mark(pid: int | str = "self") -> int:
    """A process's peak resident size in bytes (the kernel's VmHWM); 0 once the process is gone.

    Not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss(procs: list[psutil.Process]) -> int:
    """The sum of each process's own peak resident size: exact, with no sampling, and never below the
    peak of the sum."""
    return sum(high_water_mark(p.pid) for p in procs)


class MemoryWatch(threading.Thread):
    """Samples the memory of a process and its children (the media workers), twice a second.

    RSS summed over processes counts pages the forkserver workers share more than once; PSS divides
    shared pages among the processes sharing them, so its sum is what the server really holds. The
    peak RSS comes from the kernel (see peak_rss); sampling smaps more often would take CPU from the
    server measured on the same two cores.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_pss = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                procs = family(self.proc)
                self.peak_pss = max(self.peak_pss, sum(p.memory_full_info().pss for p in procs))
                self.peak_rss = max(self.peak_rss, peak_rss(procs))
            except psutil.Error:
                pass
            time.sleep(0.5)

    def stop(self) -> None:
        """Stops sampling and takes the kernel's final peaks of the processes still there."""
        self.running = False
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, peak_rss(family(self.proc)))


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of one process, every thread of it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


# -- the machine's speed ---------------------------------------------------------------------------


def calibrate(photo: bytes) -> dict[str, float]:
    """How fast this machine runs right now, in the two kinds of work a fill costs: a photo's reduced
    JPEG decode (the media workers) and plain Python (the event loop). The same fixed work every time,
    best of several tries, so runs on a machine whose speed drifts can be compared."""
    from PIL import Image

    record = {
        "id": str(uuid.UUID(int=1)),
        "state": "queued",
        "version": 3,
        "site_id": 7,
        "media": list(range(20)),
    }

    def decode() -> None:
        with Image.open(io.BytesIO(photo)) as im:
            im.draft("RGB", (im.width // 4, im.height // 4))
            im.load()

    def python() -> None:
        for _ in range(2000):
            json.loads(json.dumps(record))

    def best(work: Callable[[], None]) -> float:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return round(min(times) * 1000, 2)

    return {"jpeg_quarter_decode_ms": best(decode), "python_json_2000_ms": best(python)}


# -- output ----------------------------------------------------------------------------------------


def emit(result: dict[str, Any]) -> None:
    """Prints a benchmark's result: one JSON document on standard output."""
    print(json.dumps(result, indent=2))
