"""Call recordings as the site writes them (mp4: H.264 video, AAC audio), generated with PyAV."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

# PyAV leaves from_image unannotated; one typed alias keeps strict mypy quiet.
frame_from_image: Any = av.VideoFrame.from_image

SECRET_TITLE = "PATIENT JANE DOE"


def recording_mp4(
    path: Path,
    *,
    seconds: float = 1.0,
    size: tuple[int, int] = (160, 120),
    noise: bool = False,
    metadata: dict[str, str] | None = None,
    fmt: str = "mp4",
    codec: str = "libx264",
) -> Path:
    """A short recording with a video and an audio track; `noise` makes frames that barely compress, so
    a few seconds weigh megabytes (an upload long enough to cut in the middle)."""
    fps = 10
    with av.open(str(path), "w", format=fmt) as out:
        out.metadata.update(metadata or {})
        video: Any = out.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio: Any = out.add_stream("aac" if fmt == "mp4" else "libopus", rate=48000, layout="mono")
        for i in range(int(seconds * fps)):
            if noise:
                im = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
            else:
                im = Image.new("RGB", size, (i * 25 % 255, 90, 160))
            out.mux(video.encode(frame_from_image(im)))
        out.mux(video.encode(None))
        samples = 960
        for i in range(int(seconds * 48000 / samples)):
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
            frame.planes[0].update(bytes(samples * 2))
            frame.sample_rate = 48000
            frame.pts = i * samples
            frame.time_base = Fraction(1, 48000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path
