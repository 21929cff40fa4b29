"""Media kinds are named once (server/evidence/kinds.py) and every list of them agrees with it."""

from __future__ import annotations

from server.config import DEFAULT_REQUIRED_MEDIA
from server.evidence.kinds import KIND_NAMES, MEDIA_KINDS, PHOTO_KINDS, VIDEO_KINDS
from server.evidence.photo_quality import kind_label


def test_every_kind_is_a_photo_or_a_video_and_has_a_name_for_the_technician() -> None:
    assert set(MEDIA_KINDS) == PHOTO_KINDS | VIDEO_KINDS and not PHOTO_KINDS & VIDEO_KINDS
    assert set(KIND_NAMES) == set(MEDIA_KINDS)
    assert all(kind_label(k) for k in PHOTO_KINDS)


def test_the_photos_a_fill_needs_by_default_are_known_kinds() -> None:
    assert set(DEFAULT_REQUIRED_MEDIA) <= PHOTO_KINDS
