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
from server.config import Config
from server.evidence import media
from server.evidence.photo_quality import QualityThresholds
from server.media.errors import MediaRejected
from server.media.video import probe_video
from server.media.workfiles import WorkFiles
from tests.unit.test_media_video import make_video


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


@pytest.mark.parametrize(
    ("fmt", "codec", "seconds", "fps", "taken"),
    [
        ("webm", "libvpx", 2, 10, True),  # VP8, as the page records it
        ("webm", "libsvtav1", 2, 10, True),  # AV1, which PyAV decodes with libdav1d
        ("mp4", "libx264", 2, 10, True),
        ("mp4", "mpeg4", 2, 10, False),  # MPEG-4 Part 2: not a codec the server takes
        ("webm", "libvpx", 62, 1, False),  # longer than the server takes
    ],
)
def test_the_station_passes_a_count_video_exactly_when_the_server_takes_it(
    tmp_path: Path, fmt: str, codec: str, seconds: int, fps: int, taken: bool
) -> None:
    video = make_video(tmp_path / f"count.{fmt}", fmt=fmt, codec=codec, seconds=seconds, fps=fps)
    limit = Config(data_dir=tmp_path).max_video_seconds
    try:
        probe_video(video, WorkFiles(tmp_path / "work"), max_seconds=limit)
    except MediaRejected as exc:
        assert not taken, exc.message
    else:
        assert taken
    problems = check_video(video)
    assert (problems == []) is taken, problems


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
