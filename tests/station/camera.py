"""A file Chromium plays as its camera: one Y4M frame (Chromium loops it), drawn by the test."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def write_y4m(image: Image.Image, path: Path) -> Path:
    """Writes `image` as a one-frame 4:2:0 Y4M, the format `--use-file-for-fake-video-capture` reads."""
    w, h = image.size
    w, h = w - w % 2, h - h % 2
    ycbcr = image.convert("RGB").crop((0, 0, w, h)).convert("YCbCr")
    # Chromium reads the planes as limited range (Y 16-235, Cb and Cr 16-240): Pillow's full-range
    # values are squeezed into it, or every light pixel comes back blown out (glare to the checks).
    y, cb, cr = ycbcr.split()
    y = y.point(lambda v: 16 + round(v * 219 / 255))
    cb, cr = (c.point(lambda v: 128 + round((v - 128) * 224 / 255)) for c in (cb, cr))
    half = (w // 2, h // 2)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        f.write(b"FRAME\n")
        f.write(y.tobytes())
        f.write(cb.resize(half, Image.Resampling.BOX).tobytes())
        f.write(cr.resize(half, Image.Resampling.BOX).tobytes())
    return path
