"""The station's early word on a photo or count video, and the views a rejection's reasons ask to retake."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from unittest import mock

import aiohttp
import av
import pytest
from PIL import Image

from remote_site_client.station.captures import CaptureRefused, Captures, check_video
from remote_site_client.station.worklist import views_to_retake
from server.evidence import media
from server.evidence.photo_quality import QualityThresholds


def _webm(path: Path, seconds: float, fps: int = 10) -> Path:
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_image(Image.new("RGB", (160, 120), (i * 7 % 255, 90, 140)))
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_count_video_that_plays_passes_and_one_too_long_is_named(tmp_path: Path) -> None:
    video = _webm(tmp_path / "count.webm", 2.0)
    assert check_video(video) == []
    [too_long] = check_video(video, max_seconds=1.0)
    assert too_long.code == "too_long" and "at most 1 s" in too_long.message


def test_what_is_not_a_whole_video_is_refused_with_what_to_do(tmp_path: Path) -> None:
    junk = tmp_path / "junk.webm"
    junk.write_bytes(b"not a video at all" * 10)
    assert [p.code for p in check_video(junk)] == ["not_a_video"]
    whole = _webm(tmp_path / "whole.webm", 2.0).read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(whole[:120])
    [problem] = check_video(cut)
    assert problem.code == "corrupt" and "Record it again" in problem.message


def test_rejection_reasons_name_the_views_to_retake() -> None:
    assert views_to_retake(["wrong_quantity"]) == ["pills"]
    assert views_to_retake(["label_error", "barcode_mismatch"]) == ["stock_bottle", "vial_label"]
    assert views_to_retake(["image_unclear", "other"]) == []


async def _sent(data: bytes) -> aiohttp.StreamReader:
    """What the page sent, as the station's handler reads it."""
    content = aiohttp.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    content.feed_data(data)
    content.feed_eof()
    return content


async def test_a_file_over_the_servers_byte_limit_stops_at_the_station_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's limit, made small here so that a test file need not be 30 MB: the station follows it.
    monkeypatch.setattr(media, "MAX_PHOTO_BYTES", 1024 * 1024)
    captures = Captures(tmp_path / "captures")
    photo = b"\xff\xd8\xff" + b"\0" * (1024 * 1024)
    with pytest.raises(CaptureRefused) as refused:
        await captures.receive(
            "pills", 1, await _sent(photo), expected_ndc=None, thresholds=QualityThresholds()
        )
    assert refused.value.status == 413
    assert refused.value.message == "That file is larger than the 1 MB the server takes."
    assert list((tmp_path / "captures").iterdir()) == []  # nothing half-written is kept
