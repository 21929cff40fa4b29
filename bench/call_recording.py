"""Call recording benchmark: what the station spends making the page's WebM recording an mp4.

The page records a counselling call with the browser's MediaRecorder (WebM: VP8 at about 600 kbps and
Opus); the station re-encodes it to H.264 640x480 + AAC for the server (remote_site_client/station/
call_recordings.py). This makes a recording of that kind (a moving picture, 20 frames a second, a tone)
of `--seconds` and times `to_mp4` on it `--runs` times: wall and CPU seconds, and both as a share of the
call's length. Prints JSON.

    .venv/bin/python -m bench.call_recording [--seconds 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageDraw

from bench.harness import emit
from remote_site_client.station.call_recordings import to_mp4

FPS = 20
RATE = 48000
SIZE = (640, 480)


def page_like_recording(path: Path, seconds: float) -> Path:
    """A WebM as the page records it: VP8 at about 600 kbps with millisecond times, and Opus sound."""
    with av.open(str(path), mode="w", format="webm") as out:
        video = out.add_stream("libvpx", rate=FPS)
        video.width, video.height = SIZE
        video.pix_fmt = "yuv420p"
        video.bit_rate = 600_000
        audio = out.add_stream("libopus", rate=RATE)
        for i in range(int(seconds * FPS)):
            picture = Image.new("RGB", SIZE, (30 + i % 60, 60, 90))
            draw = ImageDraw.Draw(picture)
            x = int(320 + 250 * math.sin(i / 15))
            draw.ellipse((x - 60, 180, x + 60, 300), fill=(230, 200, 120))
            draw.text((20, 20), f"frame {i}", fill=(255, 255, 255))
            frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            frame.pts, frame.time_base = i * 1000 // FPS, Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = 960
        for i in range(int(seconds * RATE / samples)):
            tone = bytearray()
            for n in range(samples):
                value = int(8000 * math.sin(2 * math.pi * 440 * (i * samples + n) / RATE))
                tone += value.to_bytes(2, "little", signed=True)
            sound = av.AudioFrame(format="s16", layout="mono", samples=samples)
            sound.planes[0].update(bytes(tone))
            sound.sample_rate, sound.pts = RATE, i * samples
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = page_like_recording(Path(tmp) / "call.webm", args.seconds)
        walls, cpus = [], []
        for _ in range(args.runs):
            dest = Path(tmp) / "call.mp4"
            wall, cpu = time.perf_counter(), time.process_time()
            length = to_mp4(src, dest, max_seconds=args.seconds + 10)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            size = dest.stat().st_size
            dest.unlink()
        emit(
            {
                "benchmark": "call_recording",
                "recording_seconds": round(length, 2),
                "webm_bytes": src.stat().st_size,
                "mp4_bytes": size,
                "wall_seconds": [round(w, 2) for w in walls],
                "cpu_seconds": [round(c, 2) for c in cpus],
                "cpu_share_of_call": round(statistics.median(cpus) / length, 3),
                "wall_share_of_call": round(statistics.median(walls) / length, 3),
            }
        )


if __name__ == "__main__":
    main()
