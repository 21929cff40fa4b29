"""Rural link benchmark: one standard fill (three 12-megapixel phone photos) from `tp-site submit` to `queued`
through a link shaped to 2 Mbit/s up and 150 ms round trip, the client as built (photos re-encoded to
2048 px) against the same client sending the originals.

Prints JSON: seconds from submit to queued for both, the ratio (target >= 5), whether the server still
read the stock bottle's barcode from the re-encoded photo, and the client's peak resident memory while it
checks and prepares the three photos (target <= 250 MB).

    .venv/bin/python -m bench.rural_link [--up-mbit 2] [--rtt-ms 150]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    emit,
    free_port,
    high_water_mark,
    serve_command,
    start_server,
    stop_server,
)
from demo.photos import pills_photo, stock_bottle_photo, to_jpeg_bytes, vial_label_photo
from tests.site_client.proxy import LinkProxy
from tests.site_client.world import NDC, make_site, rx_body, seed, site_api

PHONE_SIZE = (4000, 3000)
PHONE_QUALITY = 95  # what phone cameras write; a 12-megapixel photo is then about 3 MB
FILL_ID = re.compile(r"Stored in the outbox as fill ([0-9a-f-]{36})")


def phone_photos(folder: Path) -> dict[str, Path]:
    """Three 12-megapixel photos of one fill, as a phone would save them."""
    expiry = dt.date.today().replace(year=dt.date.today().year + 2)
    images = {
        "stock_bottle": stock_bottle_photo(
            NDC, "Metformin HCl", "500 mg", "LOT42A", expiry, size=PHONE_SIZE, module_px=14, seed=11
        ),
        "pills": pills_photo(60, imprint="M 30", seed=12, size=PHONE_SIZE),
        "vial_label": vial_label_photo(
            "100234", "Jane Q. Patient", "Metformin HCl", "500 mg", "Take one tablet twice daily", 60,
            seed=13, size=PHONE_SIZE,
        ),
    }  # fmt: skip
    out = {}
    for kind, image in images.items():
        path = folder / f"IMG_{kind}.jpg"
        path.write_bytes(to_jpeg_bytes(image, PHONE_QUALITY, exif_gps=True, orientation=1))
        out[kind] = path
    return out


def child_main(rss_file: str, argv: list[str]) -> int:
    """Runs tp-site in this process and records its peak resident memory."""
    from remote_site_client.cli import main

    code = main(argv)
    Path(rss_file).write_text(str(high_water_mark() // 1024))
    return code


async def submit_through(
    label: str,
    server_url: str,
    proxy: LinkProxy,
    token: str,
    photos: dict[str, Path],
    work: Path,
    **tuning: Any,
) -> dict[str, Any]:
    rx_number = f"RX-{label}"
    status, rx = await site_api(server_url, token, "POST", "/api/v1/prescriptions", rx_body(rx_number))
    assert status == 201, rx
    site = make_site(work / label, proxy.url, token, **tuning)
    rss_file = work / f"{label}.rss"
    argv = [
        sys.executable, "-m", "bench.rural_link", "--child-rss-file", str(rss_file), "--",
        "submit", "--rx", rx_number,
        "--stock-bottle", str(photos["stock_bottle"]), "--pills", str(photos["pills"]),
        "--vial-label", str(photos["vial_label"]),
    ]  # fmt: skip
    proxy.reset_counts()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=site.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    seconds = time.monotonic() - started
    text = out.decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: tp-site submit failed ({proc.returncode}): {text} {err.decode()}")
    match = FILL_ID.search(text)
    assert match, text
    status, fill = await site_api(server_url, token, "GET", f"/api/v1/fills/{match.group(1)}")
    detail = fill.get("product_check_detail") or {}
    scanned = len(fill.get("barcodes") or [])
    # The server adds what it read from the stored stock-bottle photo to what the site sent.
    read_by_server = [b for b in detail.get("barcodes", [])[scanned:] if b.get("matches")]
    return {
        "seconds_submit_to_queued": round(seconds, 2),
        "state": fill["state"],
        "bytes_up": proxy.stats.up_bytes,
        "photo_bytes_sent": sum(m["bytes"] for m in fill["media"]),
        "photo_sizes_sent": sorted(f"{m['width']}x{m['height']}" for m in fill["media"]),
        "product_check": fill["product_check"],
        "server_decoded_barcode": bool(read_by_server),
        "client_peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1),
    }


async def run(up_mbit: float, rtt_ms: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tp-rural-") as tmp:
        work = Path(tmp)
        photos = phone_photos(work)
        token = await seed(work / "server-data")
        port = free_port()
        server = await asyncio.to_thread(
            start_server, serve_command(work / "server-data", port), port, work / "server.log"
        )
        url = f"http://127.0.0.1:{port}"
        proxy = LinkProxy("127.0.0.1", port, up_rate=up_mbit * 1e6 / 8, down_rate=20e6 / 8, rtt=rtt_ms / 1000)
        await proxy.start()
        try:
            built = await submit_through("built", url, proxy, token, photos, work)
            originals = await submit_through("originals", url, proxy, token, photos, work, long_edge=0)
        finally:
            await proxy.stop()
            await asyncio.to_thread(stop_server, server)
    return {
        "link": {"up_mbit_per_s": up_mbit, "rtt_ms": rtt_ms},
        "photos": {
            "count": len(photos),
            "megapixels": PHONE_SIZE[0] * PHONE_SIZE[1] / 1e6,
            "original_bytes": originals["photo_bytes_sent"],
        },
        "as_built": built,
        "originals": originals,
        "speedup": round(originals["seconds_submit_to_queued"] / built["seconds_submit_to_queued"], 2),
        "speedup_target": 5,
        "barcode_decoded_on_server_from_reencoded_photo": built["server_decoded_barcode"],
        "client_peak_rss_mb_preparing": built["client_peak_rss_mb"],
        "client_peak_rss_target_mb": 250,
    }


def main() -> int:
    if "--child-rss-file" in sys.argv:
        i = sys.argv.index("--child-rss-file")
        rest = sys.argv[i + 3 :] if sys.argv[i + 2] == "--" else sys.argv[i + 2 :]
        return child_main(sys.argv[i + 1], rest)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--up-mbit", type=float, default=2.0)
    ap.add_argument("--rtt-ms", type=float, default=150.0)
    args = ap.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    emit(asyncio.run(run(args.up_mbit, args.rtt_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
