"""A call recorded in the station's page, made into what the server keeps: an mp4 with H.264 and AAC.

The page records with the browser's MediaRecorder, which in Chromium writes WebM (VP8 or VP9 with
Opus) and cannot write H.264 in Debian's build; the server takes a consultation's recording as mp4
only. The station re-encodes it (PyAV, in a thread) at the size the kiosk records (640x480), then the
outbox keeps it, fsynced, until the server has it, as for `tp-site consult --record`.

Re-encoding costs about 7 % of the call's length in CPU on this machine kind (docs/performance.md), so
minutes for a long call: the page is answered once the WebM is received and fsynced in the station's
folder, and the station prepares it after. A WebM left there by a station that stopped meanwhile is
prepared the next time the folder is looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av

from remote_site_client.outbox import Outbox
from remote_site_client.outbox.store import fsync_dir
from server.evidence.media import video_codec

log = logging.getLogger(__name__)

# Matroska/WebM starts with the EBML magic.
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
# What a browser's MediaRecorder writes, by the codecs' canonical names (server.evidence.media's
# video_codec: AV1 is "av1" whichever decoder reads it).
VIDEO_CODECS = frozenset({"vp8", "vp9", "h264", "av1"})
AUDIO_CODECS = frozenset({"opus", "vorbis", "aac"})
SIZE = (640, 480)
MS = Fraction(1, 1000)


class RecordingRefused(Exception):
    """The page's recording is not a call recording the station can keep; the message says why."""


def looks_like_webm(head: bytes) -> bool:
    return head.startswith(EBML_MAGIC)


def _streams(container: Any) -> tuple[Any, Any]:
    video = next(iter(container.streams.video), None)
    audio = next(iter(container.streams.audio), None)
    if video is None:
        raise RecordingRefused("The recording holds no video.")
    if (codec := video_codec(video)) not in VIDEO_CODECS:
        raise RecordingRefused(f"The recording's video is {codec}, not a browser codec.")
    if audio is not None and audio.codec_context.codec.canonical_name not in AUDIO_CODECS:
        audio = None  # an unknown sound track is left out rather than the whole recording
    return video, audio


def _write(mux: Any, packets: Any) -> None:
    for packet in packets:
        mux.mux(packet)


def to_mp4(src: Path, dest: Path, *, max_seconds: float) -> float:
    """Re-encodes a WebM recording as mp4 (H.264 640x480, AAC); returns its length in seconds.

    Raises RecordingRefused for a file that is not a WebM call recording, or that runs longer than
    max_seconds. Frames whose time does not move forward (a stream resumed after a reconnection) are
    dropped rather than refused; every frame is scaled to one size, since the encoder cannot change it.
    """
    with src.open("rb") as f:
        if not looks_like_webm(f.read(4)):
            raise RecordingRefused("The recording is not a WebM file.")
    try:
        with av.open(str(src), format="matroska") as container:
            video, audio = _streams(container)
            with av.open(str(dest), mode="w", format="mp4") as out:
                vout: Any = out.add_stream("libx264", rate=30)
                vout.width, vout.height = SIZE
                vout.pix_fmt = "yuv420p"
                vout.codec_context.time_base = MS
                aout: Any = out.add_stream("aac", rate=48000) if audio is not None else None
                last = {"video": -1, "audio": -1}
                end = 0.0
                wanted = [video] + ([audio] if audio is not None else [])
                for frame in container.decode(*wanted):
                    if frame.pts is None or frame.time_base is None:
                        continue
                    at = float(frame.pts * frame.time_base)
                    if at > max_seconds:
                        raise RecordingRefused(f"The recording runs longer than {max_seconds:g} s.")
                    ms = int(at * 1000)
                    kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
                    if ms <= last[kind]:
                        continue
                    last[kind] = ms
                    end = max(end, at)
                    if kind == "video":
                        scaled = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
                        scaled.pts, scaled.time_base = ms, MS
                        _write(out, vout.encode(scaled))
                    else:
                        frame.pts = None  # the encoder numbers its own 1024-sample frames
                        _write(out, aout.encode(frame))
                if last["video"] < 0:
                    raise RecordingRefused("The recording holds no video frame.")
                _write(out, vout.encode(None))
                if aout is not None:
                    _write(out, aout.encode(None))
                return end
    except RecordingRefused:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise RecordingRefused(f"The recording could not be read ({type(exc).__name__}).") from exc


# -- the station's folder of recordings received from the page ------------------------------------------


def received_path(folder: Path, consultation_id: int) -> Path:
    return folder / f"{consultation_id}.webm"


async def receive(chunks: AsyncIterator[bytes], folder: Path, consultation_id: int, *, limit: int) -> int:
    """Writes the page's upload to the folder, durably (temporary name, fsync, rename); its size.

    Raises RecordingRefused for what is not WebM, and OverflowError past `limit` bytes; nothing is left
    behind then."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True, mode=0o700)
    part = folder / f"{consultation_id}.webm.part"
    size = 0
    try:
        with part.open("wb") as f:
            async for chunk in chunks:
                if size == 0 and not looks_like_webm(chunk[:4]):
                    raise RecordingRefused("The recording must be the page's WebM file.")
                size += len(chunk)
                if size > limit:
                    raise OverflowError(limit)
                f.write(chunk)
            if size == 0:
                raise RecordingRefused("The recording is empty.")
            await asyncio.to_thread(_settle, f, part, received_path(folder, consultation_id))
    finally:
        part.unlink(missing_ok=True)
    return size


def _settle(f: BinaryIO, part: Path, dest: Path) -> None:
    """The received file on disk under its name, and its name in the folder, both fsynced."""
    f.flush()
    os.fsync(f.fileno())
    part.replace(dest)
    fsync_dir(dest.parent)


def prepare_received(folder: Path, data_dir: Path, *, max_seconds: float) -> list[int]:
    """Every received recording made mp4 and put in the outbox; the consultations whose recording went
    in. One that cannot be read is set aside as `ID.refused.webm` and logged, not retried for ever."""
    kept: list[int] = []
    for webm in sorted(folder.glob("*.webm")):
        stem = webm.name.removesuffix(".webm")
        if not stem.isdigit():
            continue
        cid = int(stem)
        mp4 = folder / f"{cid}.mp4"
        try:
            to_mp4(webm, mp4, max_seconds=max_seconds)
        except RecordingRefused as exc:
            log.warning("the recording of consultation %s was set aside: %s", cid, exc)
            webm.replace(folder / f"{cid}.refused.webm")
            continue
        try:
            # A connection of its own: the station's recording sender hears of the new entry as it
            # hears of `tp-site consult`'s, and delivers it.
            with Outbox(data_dir) as outbox:
                outbox.add_recording(cid, mp4)
            webm.unlink()
            kept.append(cid)
        finally:
            mp4.unlink(missing_ok=True)
    return kept
