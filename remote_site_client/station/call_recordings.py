"""A call recorded in the station's page, made into what the server keeps: an mp4 with H.264 and AAC.

The page records with the browser's MediaRecorder, which in Chromium writes WebM (VP8 or VP9 with
Opus) and cannot write H.264 in Debian's build; the server takes a consultation's recording as mp4
only. The station re-encodes it (PyAV, off the event loop) at the size the kiosk records (640x480),
then the outbox keeps it, fsynced, until the server has it, as for `tp-site consult --record`.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

# Matroska/WebM starts with the EBML magic.
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
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
    if video.codec_context.name not in VIDEO_CODECS:
        raise RecordingRefused(f"The recording's video is {video.codec_context.name}, not a browser codec.")
    if audio is not None and audio.codec_context.name not in AUDIO_CODECS:
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
