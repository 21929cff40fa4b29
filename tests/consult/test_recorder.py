"""The site's call recorder: whatever a frame does, the file is closed and readable."""

from __future__ import annotations

import asyncio
import fractions
from pathlib import Path

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from PIL import Image

from remote_site_client.recorder import Mp4Recorder


class Frames(MediaStreamTrack):
    """Video frames with the timestamps given, then the end of the stream."""

    kind = "video"

    def __init__(self, timestamps: list[int]) -> None:
        super().__init__()
        self.timestamps = list(timestamps)

    async def recv(self) -> av.VideoFrame:
        if not self.timestamps:
            raise MediaStreamError
        await asyncio.sleep(0)
        frame = av.VideoFrame.from_image(Image.new("RGB", (640, 480), (40, 120, 200)))
        frame.pts = self.timestamps.pop(0)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


async def test_a_frame_the_muxer_refuses_costs_that_frame_and_the_file_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "call.mp4"
    recorder = Mp4Recorder(str(path))
    # Ten frames, then one stamped before the last (as around a reconnection), then ten more.
    step = 3000
    stamps = [i * step for i in range(10)] + [5 * step] + [(10 + i) * step for i in range(10)]
    frames = Frames(stamps)
    recorder.addTrack(frames)
    await recorder.start()
    async with asyncio.timeout(20):
        while frames.timestamps:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the last frame encoded
    await recorder.stop()
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= 19 and recorder.dropped >= 1
