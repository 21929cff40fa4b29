"""The kinds of media a site sends, named once for the site and the server."""

from __future__ import annotations

import enum


class MediaKind(enum.StrEnum):
    """What one photo or video of a fill shows."""

    STOCK_BOTTLE = "stock_bottle"
    PILLS = "pills"
    VIAL_LABEL = "vial_label"
    # A liquid's views: the measured volume (in the graduate or oral syringe) and the labelled bottle.
    MEASURED_VOLUME = "measured_volume"
    BOTTLE_LABEL = "bottle_label"
    FINAL_PACKAGE = "final_package"
    COUNT_VIDEO = "count_video"
    OTHER = "other"


# A fill's media kinds, in the order a technician takes them and messages list them.
MEDIA_KINDS = tuple(MediaKind)
VIDEO_KINDS = frozenset({MediaKind.COUNT_VIDEO})
PHOTO_KINDS = frozenset(MEDIA_KINDS) - VIDEO_KINDS
# A consultation's recording travels the same upload path as a fill's media, but belongs to no fill.
CONSULTATION_RECORDING = "consultation_recording"

# The views a fill needs when its site names none (a site's `required_media_kinds`): the server refuses to
# queue a fill without them, and the site's station asks for them before saving.
DEFAULT_REQUIRED_MEDIA = (MediaKind.STOCK_BOTTLE.value, MediaKind.PILLS.value, MediaKind.VIAL_LABEL.value)

# How the site and the server name each kind to the technician.
KIND_NAMES: dict[str, str] = {
    MediaKind.STOCK_BOTTLE: "stock bottle photo",
    MediaKind.PILLS: "pills photo",
    MediaKind.VIAL_LABEL: "vial label photo",
    MediaKind.MEASURED_VOLUME: "measured volume photo",
    MediaKind.BOTTLE_LABEL: "bottle label photo",
    MediaKind.FINAL_PACKAGE: "final package photo",
    MediaKind.COUNT_VIDEO: "count video",
    MediaKind.OTHER: "extra photo",
}
