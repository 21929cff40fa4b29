"""How a photo is turned upright from its EXIF orientation: the same on the site and on the server."""

from __future__ import annotations

from PIL import Image

# The EXIF tag that says how the camera was held.
EXIF_ORIENTATION = 0x0112
# How to turn a photo upright for each EXIF orientation (1, upright already, needs nothing).
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
