"""What a fill's photo may be, the same on the site (before it is kept) and on the server.

The pixel limit is Pillow's own guard against decompression bombs, which the server decodes under: a
photo above it is refused there whatever else it is, so the site says so before it keeps the photo,
with the number, rather than calling it damaged. A 108-megapixel phone camera's full resolution is
above it; its default (12 megapixels, pixels binned) is far below.
"""

from __future__ import annotations

# Pillow's Image.MAX_IMAGE_PIXELS (1 GiB of 24-bit pixels / 4): opening a larger photo warns of a
# decompression bomb, and twice as large is refused outright.
MAX_PHOTO_PIXELS = 89_478_485
