"""The station's early word on a count video, and the views a rejection's reasons ask to retake."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from remote_site_client.station.captures import check_video
from remote_site_client.station.worklist import views_to_retake


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
