"""Benchmark process_image on generated phone-like JPEGs; prints JSON (add --profile for a cProfile table).

.venv/bin/python -m bench.media_images [--images 6] [--rounds 5] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, ImageDraw, ImageFilter

from bench.harness import emit
from server.media.images import process_image
from server.media.workfiles import WorkFiles

MAX_PIXELS = 50_000_000


def make_jpeg(width: int, height: int, orientation: int, quality: int = 90) -> bytes:
    """A photo-like JPEG (gradient, shapes, sensor noise) with GPS EXIF and a comment, as phones add."""
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(base)
    for i in range(12):
        x, y = (i * 397) % width, (i * 211) % height
        draw.ellipse((x, y, x + width // 6, y + height // 6), fill=(40 + i * 17, 200 - i * 11, 90 + i * 7))
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    im = Image.blend(base, noise, 0.35).filter(ImageFilter.GaussianBlur(0.6))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "Bench"
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.0)}
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, exif=exif, comment=b"bench comment")
    return buf.getvalue()


def _one(src: str, workdir: str) -> None:
    work = WorkFiles(Path(workdir))
    try:
        process_image(Path(src), work, max_pixels=MAX_PIXELS)
    finally:
        work.remove()


def run_case(files: list[Path], rounds: int, workdir: Path) -> dict[str, Any]:
    """Single-threaded wall and CPU time per image over `rounds` passes."""
    _one(str(files[0]), str(workdir))  # warm up imports and caches
    times: list[float] = []
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    for _ in range(rounds):
        for f in files:
            t = time.perf_counter()
            _one(str(f), str(workdir))
            times.append(time.perf_counter() - t)
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    n = len(times)
    return {
        "images": n,
        "mean_bytes": round(statistics.mean(f.stat().st_size for f in files)),
        "ms_per_image": round(1000 * wall / n, 2),
        "cpu_ms_per_image": round(1000 * cpu / n, 2),
        "p50_ms": round(1000 * statistics.median(times), 2),
        "p95_ms": round(1000 * sorted(times)[int(0.95 * (n - 1))], 2),
        "images_per_s_single_thread": round(n / wall, 1),
    }


def run_parallel(files: list[Path], rounds: int, workdir: Path, workers: int) -> dict[str, Any]:
    """Throughput with a process pool, as the server runs it."""
    jobs = [
        (str(f), str(workdir / f"w{i % workers}-{j}")) for j in range(rounds) for i, f in enumerate(files)
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_one, *zip(*jobs[:workers], strict=True)))  # start the workers
        t = time.perf_counter()
        list(pool.map(_one, *zip(*jobs, strict=True), chunksize=4))
        wall = time.perf_counter() - t
    return {"workers": workers, "images": len(jobs), "images_per_s": round(len(jobs) / wall, 1)}


def profile(files: list[Path], rounds: int, workdir: Path, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(rounds):
        for f in files:
            _one(str(f), str(workdir))
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    """Generate the images, time each case, print JSON to stdout (and a profile to stderr)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6, help="distinct images per case")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the images")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true", help="print a cProfile table to stderr")
    parser.add_argument("--quick", action="store_true", help="only the 3 MP upright case")
    args = parser.parse_args()

    cases = {"3mp_upright": (2048, 1536, 1)}
    if not args.quick:
        cases |= {"3mp_orientation_6": (2048, 1536, 6), "12mp_upright": (4032, 3024, 1)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-media-"))
    try:
        results: dict[str, Any] = {}
        for name, (w, h, orientation) in cases.items():
            files = []
            for i in range(args.images):
                path = tmp / f"{name}-{i}.jpg"
                path.write_bytes(make_jpeg(w, h, orientation))
                files.append(path)
            rounds = args.rounds if w * h < 5_000_000 else max(1, args.rounds // 2)
            results[name] = {"size": [w, h], "orientation": orientation, **run_case(files, rounds, tmp / "w")}
            if name == "3mp_upright":
                results[name]["parallel"] = run_parallel(files, args.rounds, tmp, args.workers)
                if args.profile:
                    print(profile(files, args.rounds, tmp / "p", 25), file=sys.stderr)
        emit({"cpu_count": os.cpu_count(), "cases": results})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
