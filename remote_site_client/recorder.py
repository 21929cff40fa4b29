"""The call written to an mp4 file; the call starts it only once the patient's consent is on record."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from remote_site_client.media_tracks import ContinuousTrack, FixedSizeTrack

log = logging.getLogger(__name__)


class Mp4Recorder:
    """Writes the call to an mp4 (H.264 at a fixed 640x480, AAC).

    aiortc's MediaRecorder sizes the video stream from its first frame; when audio reaches the muxer
    first, the header is written without a usable video stream and the file ends up audio only. Here
    the video stream is sized before anything is written. A reconnected call goes on in the same file.
    """

    def __init__(self, path: str, width: int = 640, height: int = 480) -> None:
        self.container = av.open(path, mode="w", format="mp4")
        self.size = (width, height)
        self.tracks: list[tuple[ContinuousTrack, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.dropped = 0  # frames or packets the encoder or muxer refused

    def addTrack(self, track: MediaStreamTrack) -> None:
        for feed, _ in self.tracks:
            if feed.kind == track.kind:
                feed.switch(FixedSizeTrack(track, *self.size) if track.kind == "video" else track)
                return
        if self.started:
            return  # a stream cannot join the file once writing began
        if track.kind == "video":
            stream = self.container.add_stream("libx264", rate=30)
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            self.tracks.append((ContinuousTrack(FixedSizeTrack(track, *self.size)), stream))
        else:
            self.tracks.append((ContinuousTrack(track), self.container.add_stream("aac")))

    async def start(self) -> None:
        self.started = True
        self.tasks = [asyncio.create_task(self._run(t, s)) for t, s in self.tracks]

    async def _run(self, track: MediaStreamTrack, stream: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self._encode(stream, frame)

    def _encode(self, stream: Any, frame: Any) -> None:
        """Encodes a frame (None: the rest the encoder holds) and writes its packets. A frame or packet
        refused (a timestamp out of order around a reconnection) costs itself, not the recording."""
        try:
            packets = stream.encode(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            self.dropped += 1
            log.warning("recording: a %s frame was dropped (%s)", stream.type, exc)
            return
        for packet in packets:
            try:
                self.container.mux(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                self.dropped += 1
                log.warning("recording: a %s packet was dropped (%s)", stream.type, exc)

    async def stop(self) -> None:
        """Ends the recording. The file is closed (its index written) whatever happened before: a file
        left open is unreadable, and the recording of the whole call would be lost."""
        try:
            for t in self.tasks:
                t.cancel()
            for t in self.tasks:
                try:
                    await t
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("recording: a track's writer failed")
            for _, stream in self.tracks:
                self._encode(stream, None)
        finally:
            self.container.close()
