"""The original of a paper prescription as pages: a photo or scan (JPEG, PNG), a fax (TIFF, often
several pages) or a PDF (each page rendered with PDFium).

Every page becomes an image of its own, made from decoded pixels only, so nothing of the file's
metadata (a fax header's TIFF tags, a PDF's author and title, XMP) is kept; each page then takes the
same path as a fill's photo (server.media.images: size limits, variants, thumbnail). A file is refused
before any page is decoded when it declares more pages than allowed, or a page larger than the pixel
limit; a PDF's page is rendered at fax resolution, and never above the pixel limit whatever size it
declares.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageSequence, UnidentifiedImageError

from server.media.errors import MediaRejected
from server.media.images import ProcessedImage, process_image, sniff_image_format
from server.media.workfiles import WorkFiles

TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
PDF_MAGIC = b"%PDF-"
# A fax is 200 dpi at most (fine mode); a letter page at 200 dpi is 1700 x 2200 pixels.
PDF_RENDER_DPI = 200
PDF_POINTS_PER_INCH = 72
# The largest page PDF allows (14,400 units, 200 inches); a larger declared page is a malformed file.
PDF_MAX_PAGE_POINTS = 14_400
# PDFium keeps global state: one rendering at a time in a process (the tests run media work in threads).
_PDFIUM = threading.Lock()


@dataclass(frozen=True)
class OriginalPage:
    """One page: its number from 1, and the page as a processed, metadata-free image."""

    number: int
    image: ProcessedImage
    # The SHA-256 of the page's own image file (a page of a TIFF or PDF), or None for a one-image file.
    page_sha256: str | None


def original_format(head: bytes) -> str | None:
    """JPEG, PNG, TIFF or PDF as named by a file's first bytes; None for anything else."""
    fmt = sniff_image_format(head)
    if fmt in ("JPEG", "PNG"):
        return fmt
    if head[:4] in TIFF_MAGIC:
        return "TIFF"
    if head.startswith(PDF_MAGIC):
        return "PDF"
    return None


def process_original(
    src: Path, work_dir: Path, *, data: bytes, data_sha256: str, max_pixels: int, max_pages: int
) -> tuple[str, list[OriginalPage]]:
    """The original's format and its pages; MediaRejected for a file that cannot be a prescription's
    original. Each page's files are written in `work_dir` under names of their own."""
    fmt = original_format(data[:32])
    if fmt is None:
        raise MediaRejected(
            "unsupported_format",
            "An original is a photo or scan (JPEG, PNG), a fax (TIFF) or a PDF.",
        )
    if fmt in ("JPEG", "PNG"):
        work = WorkFiles(work_dir)
        return fmt, [
            OriginalPage(
                1, process_image(src, work, max_pixels=max_pixels, data=data, data_sha256=data_sha256), None
            )
        ]
    rendered = (
        _tiff_pages(data, max_pixels, max_pages) if fmt == "TIFF" else _pdf_pages(data, max_pixels, max_pages)
    )
    pages = []
    for number, pixels in enumerate(rendered, 1):
        buffer = io.BytesIO()
        pixels.save(buffer, "PNG", compress_level=6)
        encoded = buffer.getvalue()
        digest = hashlib.sha256(encoded).hexdigest()
        work = WorkFiles(work_dir)
        path = work.path(f"page-{number}.png")
        path.write_bytes(encoded)
        image = process_image(path, work, max_pixels=max_pixels, data=encoded, data_sha256=digest)
        pages.append(OriginalPage(number, image, digest))
    return fmt, pages


def _too_many_pages(pages: int, max_pages: int) -> MediaRejected:
    return MediaRejected(
        "too_many_pages", f"The original has {pages} pages; at most {max_pages} are taken. Send it in parts."
    )


def _too_large(pixels: int, max_pixels: int) -> MediaRejected:
    return MediaRejected(
        "too_many_pixels",
        f"A page is {pixels / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:.1f}. Scan it at a lower "
        "resolution.",
    )


def _corrupt(what: str) -> MediaRejected:
    return MediaRejected("corrupt", f"The {what} is damaged and cannot be read. Scan or send it again.")


def _tiff_pages(data: bytes, max_pixels: int, max_pages: int) -> list[Image.Image]:
    """Each page of a TIFF as plain pixels (bilevel fax pages as greyscale), its tags left behind."""
    try:
        with Image.open(io.BytesIO(data), formats=["TIFF"]) as im:
            count = getattr(im, "n_frames", 1)
            if count > max_pages:
                raise _too_many_pages(count, max_pages)
            return [_page_pixels(frame, max_pixels) for frame in _frames(im)]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaRejected("decompression_bomb", "The fax declares an implausibly large page.") from None
    except UnidentifiedImageError:
        raise _corrupt("fax") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError):
        raise _corrupt("fax") from None


def _frames(im: Image.Image) -> Iterator[Image.Image]:
    yield from ImageSequence.Iterator(im)


def _page_pixels(frame: Image.Image, max_pixels: int) -> Image.Image:
    """A decoded copy of one page, pixels only: checked for size before it is decoded."""
    pixels = frame.width * frame.height
    if pixels > max_pixels:
        raise _too_large(pixels, max_pixels)
    frame.load()
    mode = "L" if frame.mode in ("1", "L", "I;16", "I;16B", "I", "F") else "RGB"
    copy = frame.convert(mode)
    out = Image.new(mode, copy.size)
    out.paste(copy)
    return out


def _pdf_pages(data: bytes, max_pixels: int, max_pages: int) -> list[Image.Image]:
    """Each page of a PDF rendered at fax resolution (never above the pixel limit), without scripts,
    forms or annotations run or drawn."""
    import pypdfium2 as pdfium  # the worker loads PDFium only when a PDF comes

    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            raise _corrupt("PDF (or it is password-protected)") from None
        try:
            count = len(pdf)
            if count == 0:
                raise _corrupt("PDF")
            if count > max_pages:
                raise _too_many_pages(count, max_pages)
            pages = []
            for index in range(count):
                page = pdf[index]
                try:
                    width, height = page.get_size()
                    if not (0 < width <= PDF_MAX_PAGE_POINTS and 0 < height <= PDF_MAX_PAGE_POINTS):
                        raise _corrupt("PDF")
                    scale = PDF_RENDER_DPI / PDF_POINTS_PER_INCH
                    if width * height * scale * scale > max_pixels:
                        scale = math.sqrt(max_pixels / (width * height)) * 0.99
                    bitmap = page.render(scale=scale, may_draw_forms=False, draw_annots=False)
                    try:
                        rendered = bitmap.to_pil()
                        out = Image.new("RGB", rendered.size)
                        out.paste(rendered.convert("RGB"))
                    finally:
                        bitmap.close()
                    pages.append(out)
                except pdfium.PdfiumError:
                    raise _corrupt("PDF") from None
                finally:
                    page.close()
            return pages
        finally:
            pdf.close()
