"""The station turns the page's WebM recording into the mp4 the server keeps, and refuses what is not one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

from remote_site_client.outbox import PENDING, Outbox
from remote_site_client.station.call_recordings import (
    RecordingRefused,
    prepare_received,
    receive,
    received_path,
    to_mp4,
)


def browser_like_webm(
    path: Path, seconds: float, size: tuple[int, int] = (320, 240), encoder: str = "libvpx"
) -> Path:
    """A WebM as Chromium's MediaRecorder writes it: VP8 video (or `encoder`'s) and Opus sound,
    millisecond times."""
    with av.open(str(path), mode="w", format="webm") as out:
        video = out.add_stream(encoder, rate=20)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("libopus", rate=48000)
        for i in range(int(seconds * 20)):
            shade = (i * 8) % 256
            frame = av.VideoFrame.from_image(Image.new("RGB", size, (shade, 80, 160)))
            frame.pts, frame.time_base = i * 50, Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = 960
        for i in range(int(seconds * 48000 / samples)):
            sound = av.AudioFrame(format="s16", layout="mono", samples=samples)
            sound.planes[0].update(bytes(samples * 2))
            sound.sample_rate, sound.pts = 48000, i * samples
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
    return path


def test_a_page_recording_becomes_an_h264_aac_mp4_at_one_size(tmp_path: Path) -> None:
    src = browser_like_webm(tmp_path / "call.webm", 2.0)
    dest = tmp_path / "call.mp4"
    seconds = to_mp4(src, dest, max_seconds=60)
    assert 1.8 <= seconds <= 2.1
    with av.open(str(dest)) as made:
        assert made.format.name.startswith("mov,mp4")
        v = made.streams.video[0]
        assert v.codec_context.name == "h264" and (v.codec_context.width, v.codec_context.height) == (
            640,
            480,
        )
        assert made.streams.audio[0].codec_context.name == "aac"


def test_a_recording_in_av1_is_kept_as_one_in_vp8_is(tmp_path: Path) -> None:
    """A browser may record AV1, which PyAV decodes with a decoder of another name (libdav1d)."""
    src = browser_like_webm(tmp_path / "call.webm", 1.0, encoder="libsvtav1")
    assert 0.8 <= to_mp4(src, tmp_path / "call.mp4", max_seconds=60) <= 1.1
    with av.open(str(tmp_path / "call.mp4")) as made:
        assert made.streams.video[0].codec_context.name == "h264"


def test_what_is_not_a_call_recording_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.webm"
    Image.new("RGB", (64, 64)).save(jpeg, format="JPEG")
    with pytest.raises(RecordingRefused, match="not a WebM"):
        to_mp4(jpeg, tmp_path / "out.mp4", max_seconds=60)

    truncated = tmp_path / "cut.webm"
    truncated.write_bytes(browser_like_webm(tmp_path / "whole.webm", 1.0).read_bytes()[:200])
    with pytest.raises(RecordingRefused):
        to_mp4(truncated, tmp_path / "out.mp4", max_seconds=60)

    with pytest.raises(RecordingRefused, match="longer than"):
        to_mp4(browser_like_webm(tmp_path / "long.webm", 2.0), tmp_path / "out.mp4", max_seconds=1)
    assert not (tmp_path / "out.mp4").exists()


async def chunks_of(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_received_recording_is_kept_then_prepared_into_the_outbox(tmp_path: Path) -> None:
    data_dir, folder = tmp_path / "site", tmp_path / "site" / "call-recordings"
    webm = browser_like_webm(tmp_path / "call.webm", 1.0).read_bytes()
    assert await receive(chunks_of(webm), folder, 41, limit=len(webm)) == len(webm)
    assert received_path(folder, 41).read_bytes() == webm
    # Not WebM, or too large: refused, and nothing is left behind.
    with pytest.raises(RecordingRefused):
        await receive(chunks_of(b"\xff\xd8\xff\xe0 a JPEG"), folder, 42, limit=len(webm))
    with pytest.raises(OverflowError):
        await receive(chunks_of(webm), folder, 43, limit=len(webm) - 1)
    assert sorted(p.name for p in folder.iterdir()) == ["41.webm"]

    # A recording that cannot be read is set aside, not retried; the good one goes into the outbox.
    received_path(folder, 44).write_bytes(webm[:300])
    assert prepare_received(folder, data_dir, max_seconds=60) == [41]
    assert sorted(p.name for p in folder.iterdir()) == ["44.refused.webm"]
    with Outbox(data_dir) as outbox:
        kept = outbox.recording(41)
        assert kept is not None and kept.state == PENDING and kept.path.suffix == ".mp4"
        assert outbox.recording(44) is None
