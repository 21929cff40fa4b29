"""Media store latency: the local folder against an S3 bucket on moto's server (in its own process).

Prints JSON: per store, milliseconds (p50 and p99) to put a photo variant from a worker's blocking call,
to ask whether an object exists, to read it whole, and to read a 1 MiB range of a video as a seeking
console does. moto keeps objects in memory and shares this machine's two cores with the benchmark:
its figures are the protocol's cost (a request, its signing and parsing), not a real bucket's network.

    .venv/bin/python -m bench.object_storage [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import emit
from server.media.s3 import S3MediaStore
from server.media.store import Handover, LocalMediaStore, MediaStore

PHOTO_BYTES = 400 * 1024  # a 2048 px JPEG variant
VIDEO_BYTES = 32 * 1024 * 1024  # a count video
RANGE = 1024 * 1024


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def timed(rounds: int, step: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        await step(i)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


async def measure(store: MediaStore, work: Path, rounds: int) -> dict[str, Any]:
    await store.open()
    try:
        files = []
        for i in range(rounds):
            path = work / f"variant-{i}.jpg"
            path.write_bytes(os.urandom(PHOTO_BYTES))
            files.append(path)
        digests: list[str] = []

        async def put(i: int) -> None:
            digests.append(
                await asyncio.to_thread(store.put_file_blocking, files[i], handover=Handover.KEEPS)
            )

        video = await store.put_bytes(os.urandom(VIDEO_BYTES))
        result = {
            "put_photo_variant": await timed(rounds, put),
            "exists": await timed(rounds, lambda i: store.exists(digests[i])),
            "read_photo_whole": await timed(rounds, lambda i: store.read(digests[i])),
            "read_video_1mib_range": await timed(
                rounds, lambda i: store.read(video, (i * RANGE * 7) % (VIDEO_BYTES - RANGE), RANGE)
            ),
        }
        return result
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    from tests.object_storage import moto_server, new_bucket

    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        work = Path(tmp) / "work"
        work.mkdir()
        local = asyncio.run(measure(LocalMediaStore(Path(tmp) / "media"), work, args.rounds))
        s3 = asyncio.run(measure(S3MediaStore(new_bucket(endpoint)), work, args.rounds))
    emit(
        {
            "rounds": args.rounds,
            "photo_variant_bytes": PHOTO_BYTES,
            "range_bytes": RANGE,
            "local": local,
            "s3_on_moto": s3,
        }
    )


if __name__ == "__main__":
    main()
