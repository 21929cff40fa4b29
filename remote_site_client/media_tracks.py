"""The consultation's media tracks: what the site sends (a test pattern, a camera, a file) and what
the recorder is fed (one size, one continuous clock across reconnections)."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from PIL import Image, ImageDraw

VIDEO_CLOCK = 90000


class TestPattern(VideoStreamTrack):
    """A generated 640x480 picture with a moving bar and a frame counter, at a fixed rate (no numpy)."""

    kind = "video"
    __test__ = False  # not a pytest class, despite the name

    def __init__(self, width: int = 640, height: int = 480, fps: int = 20) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._frames = [self._picture(i) for i in range(fps)]
        self._count = 0
        self._origin: float | None = None

    def _picture(self, i: int) -> Image.Image:
        img = Image.new("RGB", (self.width, self.height), (30, 60, 90))
        draw = ImageDraw.Draw(img)
        x = int(i * self.width / self.fps)
        draw.rectangle((x, 0, x + self.width // 10, self.height), fill=(240, 200, 40))
        draw.text((10, 10), f"tp-site test pattern {i:02d}", fill=(255, 255, 255))
        return img

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        due = self._origin + self._count / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        frame: av.VideoFrame = av.VideoFrame.from_image(self._frames[self._count % self.fps])  # type: ignore[no-untyped-call]
        frame.pts = int(self._count * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


class CountingTrack(MediaStreamTrack):
    """Wraps a source track and counts what it hands to the encoder."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.count = 0

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.count += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class FixedSizeTrack(MediaStreamTrack):
    """Hands the recorder every video frame at one size: the browser changes its sending resolution as
    its bandwidth estimate ramps up, and an encoder opened at one size refuses another (silently, in a
    task nobody awaits), which would leave the recording without video."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.source, self.width, self.height = source, width, height

    async def recv(self) -> Any:
        frame = await self.source.recv()
        assert isinstance(frame, av.VideoFrame)
        if (frame.width, frame.height) == (self.width, self.height) and frame.format.name == "yuv420p":
            return frame
        scaled = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        scaled.pts, scaled.time_base = frame.pts, frame.time_base
        return scaled


class ContinuousTrack(MediaStreamTrack):
    """One track made of several in turn, for the recorder: after a reconnection the new peer
    connection's track takes over, its timestamps shifted to follow on from the last frame written
    (an encoder refuses time going backwards, and each connection starts its own clock)."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self._switched = asyncio.Event()
        self._offset: int | None = 0
        self._last_pts: int | None = None
        self._step = 1

    def switch(self, source: MediaStreamTrack) -> None:
        self.source = source
        self._offset = None
        self._switched.set()

    async def recv(self) -> Any:
        while True:
            source = self.source
            try:
                frame = await source.recv()
            except MediaStreamError:
                if source is self.source:  # ended, and no successor yet: wait for one
                    self._switched.clear()
                    await self._switched.wait()
                continue
            if source is not self.source or frame.pts is None:
                continue
            pts: int = frame.pts
            if self._offset is None:
                self._offset = 0 if self._last_pts is None else self._last_pts + self._step - pts
            pts += self._offset
            if self._last_pts is not None and pts > self._last_pts:
                self._step = pts - self._last_pts
            self._last_pts = frame.pts = pts
            return frame


def open_source(camera: str) -> tuple[MediaStreamTrack | None, MediaStreamTrack | None, MediaPlayer | None]:
    """'test' for the generated pattern, a device like /dev/video0, or a media file."""
    if camera == "test":
        return TestPattern(), None, None
    if camera.startswith("/dev/video"):
        player = MediaPlayer(camera, format="v4l2", options={"video_size": "640x480", "framerate": "20"})
    else:
        player = MediaPlayer(camera, loop=True)
    return player.video, player.audio, player
