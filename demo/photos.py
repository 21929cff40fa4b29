"""Generated evidence photos and videos for the demo and the tests: Pillow only, deterministic given a seed.

The scenes are drawn to pass for phone photos at a glance (textured counter, light falloff, shadows,
a slight camera tilt, sensor grain), while the parts a verifier reads (label text, the GS1 DataMatrix)
stay crisp enough to decode. Smooth things (counters, trays, shadows) are drawn at half size or less and
scaled up, which keeps a 12-megapixel scene to about a second.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import av
import zxingcpp
from PIL import ExifTags, Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from server.evidence.barcodes import normalize_ndc

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont

PILL_COLORS: dict[str, RGB] = {
    "white": (234, 232, 226),
    "yellow": (236, 205, 96),
    "pink": (232, 160, 170),
    "peach": (238, 186, 150),
    "orange": (232, 132, 58),
    "blue": (112, 150, 208),
    "green": (126, 176, 120),
    "red": (184, 58, 52),
    "brown": (150, 100, 70),
}
_BRANDS: tuple[tuple[str, RGB], ...] = (
    ("Northfield Generics", (22, 82, 150)),
    ("Prairie Labs USA", (152, 30, 46)),
    ("Bluestem Pharmaceuticals", (20, 110, 96)),
    ("Cedar Valley Pharma", (88, 48, 128)),
)
_COUNTERS: tuple[RGB, ...] = ((176, 168, 154), (150, 142, 132), (188, 178, 160), (132, 104, 80))
_WALLS: tuple[RGB, ...] = ((208, 204, 194), (196, 200, 204), (214, 204, 186))
_TRAYS: tuple[RGB, ...] = ((138, 178, 214), (214, 214, 208), (196, 214, 188))


# ---------------------------------------------------------------------------------------------------------
# Small helpers


@lru_cache(maxsize=64)
def _font(size: int) -> Font:
    # Pillow's bundled font: present wherever Pillow is, so the pictures do not depend on the host's fonts.
    font = ImageFont.load_default(size=max(6, size))
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("demo photos need Pillow built with FreeType")
    return font


def _gs1_check_digit(body: str) -> int:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gtin_for_ndc10(ndc10_hyphenated: str) -> str:
    """GTIN-14 (indicator 0, prefix 03, check digit) for a hyphenated NDC10 such as "1234-5678-90"."""
    normalize_ndc(ndc10_hyphenated)  # refuses anything that is not a well-formed NDC
    digits = ndc10_hyphenated.strip().replace("-", "")
    if len(digits) != 10:
        raise ValueError(f"{ndc10_hyphenated!r} is not a hyphenated 10-digit NDC")
    body = "003" + digits
    return body + str(_gs1_check_digit(body))


def _noise(rng: random.Random, size: tuple[int, int], amplitude: float) -> Image.Image:
    """Grey noise centred on 128 with the given peak amplitude, tiled from one random block."""
    tile_side = 384
    tile = Image.frombytes("L", (tile_side, tile_side), rng.randbytes(tile_side * tile_side))
    tile = tile.point(lambda v: round(128 + (v - 128) * amplitude / 128))
    out = Image.new("L", size, 128)
    for y in range(0, size[1], tile_side):
        for x in range(0, size[0], tile_side):
            out.paste(tile, (x, y))
    return out


def _add_grain(image: Image.Image, rng: random.Random, amplitude: float) -> Image.Image:
    grain = _noise(rng, image.size, amplitude)
    return ImageChops.add(image, Image.merge("RGB", (grain, grain, grain)), 1.0, -128)


def _blotches(
    rng: random.Random, size: tuple[int, int], cells: tuple[int, int], amplitude: float
) -> Image.Image:
    """Low-frequency grey variation centred on 128: stains, uneven laminate, wood figure."""
    small = Image.frombytes("L", cells, rng.randbytes(cells[0] * cells[1]))
    small = small.point(lambda v: round(128 + (v - 128) * amplitude / 128))
    return small.resize(size, Image.Resampling.BICUBIC)


def _lighter(color: RGB, amount: int) -> RGB:
    return (min(240, color[0] + amount), min(240, color[1] + amount), min(240, color[2] + amount))


def _shade(image: Image.Image, factor: Image.Image) -> Image.Image:
    """Multiply an RGB image by an L factor image (255 = unchanged)."""
    return ImageChops.multiply(image, Image.merge("RGB", (factor, factor, factor)))


def _profile(length: int, values: Sequence[float], across: int, *, vertical: bool = False) -> Image.Image:
    """An L image that varies along one axis by the given 0..1 profile and is constant across it."""
    row = Image.new("L", (len(values), 1))
    row.putdata([max(0, min(255, round(v * 255))) for v in values])
    row = row.resize((length, 1), Image.Resampling.BILINEAR)
    img = row.resize((length, across), Image.Resampling.NEAREST)
    return img.transpose(Image.Transpose.ROTATE_270) if vertical else img


def _cylinder(n: int = 64) -> list[float]:
    """Diffuse shading across a cylinder seen side on: full light in the middle, 60 % at the edges."""
    return [0.6 + 0.4 * math.sin(math.pi * (i + 0.5) / n) ** 0.55 for i in range(n)]


def _vignette(size: tuple[int, int], strength: float, light: tuple[float, float]) -> Image.Image:
    """Light falloff away from `light` (fractions of the frame): 255 at the light, darker at the corners."""
    w, h = max(1, size[0] // 16), max(1, size[1] // 16)
    img = Image.new("L", (w, h))
    lx, ly = light[0] * w, light[1] * h
    diag = math.hypot(w, h)
    img.putdata(
        [
            round(255 * (1 - strength * min(1.0, math.hypot(x - lx, y - ly) / diag) ** 1.6))
            for y in range(h)
            for x in range(w)
        ]
    )
    return img.resize(size, Image.Resampling.BICUBIC)


def _soft_shadow(
    size: tuple[int, int], shapes: Sequence[Sequence[tuple[float, float]]], blur: float, opacity: int
) -> Image.Image:
    """A blurred shadow mask (255 = fully shadowed), drawn at a quarter size to keep big blurs cheap."""
    q = 4
    small = Image.new("L", (max(1, size[0] // q), max(1, size[1] // q)), 0)
    draw = ImageDraw.Draw(small)
    for poly in shapes:
        draw.polygon([(x / q, y / q) for x, y in poly], fill=opacity)
    small = small.filter(ImageFilter.GaussianBlur(max(0.5, blur / q)))
    return small.resize(size, Image.Resampling.BILINEAR)


def _darken(image: Image.Image, mask: Image.Image) -> Image.Image:
    return Image.composite(Image.new("RGB", image.size, (16, 14, 12)), image, mask)


def _half(size: tuple[int, int]) -> tuple[int, int]:
    """Backgrounds are smooth: drawing them at half size and scaling up saves most of the time at 12 MP."""
    return max(1, size[0] // 2), max(1, size[1] // 2)


def _scaled(points: Sequence[tuple[float, float]], kx: float, ky: float) -> list[tuple[float, float]]:
    return [(x * kx, y * ky) for x, y in points]


def _rounded_rect_points(w: float, h: float, r: float, steps: int = 8) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    corners = ((w - r, r, -90.0), (w - r, h - r, 0.0), (r, h - r, 90.0), (r, r, 180.0))
    for cx, cy, start in corners:
        for i in range(steps + 1):
            a = math.radians(start + 90.0 * i / steps)
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _transform(
    points: Sequence[tuple[float, float]],
    angle_deg: float,
    origin: tuple[float, float],
    offset: tuple[float, float],
) -> list[tuple[float, float]]:
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    ox, oy = origin
    return [
        (offset[0] + (x - ox) * ca - (y - oy) * sa, offset[1] + (x - ox) * sa + (y - oy) * ca)
        for x, y in points
    ]


def _fit_font(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: float) -> Font:
    font = _font(size)
    while size > 8 and draw.textlength(text, font=font) > max_width:
        size = int(size * 0.92)
        font = _font(size)
    return font


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, max_width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > max_width:
            lines.append(line)
            line = word
        else:
            line = trial
    if line:
        lines.append(line)
    return lines


def _barcode_image(
    content: str, fmt: zxingcpp.BarcodeFormat, module_px: int, *, gs1: bool, ink: int, paper: int
) -> Image.Image:
    symbol = zxingcpp.create_barcode(content, fmt, gs1=gs1)
    raw = symbol.to_image(scale=1, add_quiet_zones=True)
    height, width = raw.shape[0], raw.shape[1]
    # zxingcpp.Image implements the buffer protocol, which its type stubs do not declare.
    img = Image.frombytes("L", (width, height), bytes(memoryview(cast(Any, raw))))
    # Printed ink and paper are never pure black and white; that also keeps clean labels off the glare test.
    img = img.point(lambda v: paper if v > 127 else ink)
    return img.resize((width * module_px, height * module_px), Image.Resampling.NEAREST)


def _counter(rng: random.Random, size: tuple[int, int], color: RGB, *, wood: bool) -> Image.Image:
    w, h = size
    base = Image.new("RGB", size, color)
    if wood:
        # Grain: noise stretched along the boards, plus a slower figure across them.
        grain = _blotches(rng, size, (max(2, w // 512), max(2, h // 5)), 16)
        figure = _blotches(rng, size, (max(2, w // 256), max(2, h // 64)), 10)
        figure = ImageChops.add(grain, figure, 1.0, -128)
        tint = (color[0] // 10, color[1] // 16, 0)
        base = ImageChops.add(base, Image.new("RGB", size, tint))
    else:
        figure = _blotches(rng, size, (max(2, w // 48), max(2, h // 48)), 7)
    base = ImageChops.add(base, Image.merge("RGB", (figure, figure, figure)), 1.0, -128)
    speckle = _noise(rng, size, 9 if not wood else 4)
    speckle = speckle.filter(ImageFilter.BoxBlur(0.6))
    return ImageChops.add(base, Image.merge("RGB", (speckle, speckle, speckle)), 1.0, -128)


def _finish(
    image: Image.Image, rng: random.Random, light: tuple[float, float], vignette: float
) -> Image.Image:
    image = _shade(image, _vignette(image.size, vignette, light))
    return _add_grain(image, rng, 4)


# ---------------------------------------------------------------------------------------------------------
# Stock bottle


def _stock_label(
    size: tuple[int, int],
    *,
    ndc10_hyphenated: str,
    drug: str,
    strength: str,
    lot: str,
    expiry: date,
    module_px: int,
    brand: tuple[str, RGB],
    count_text: str,
) -> Image.Image:
    lw, lh = size
    paper = 232
    label = Image.new("RGB", size, (paper, paper, paper - 4))
    draw = ImageDraw.Draw(label)
    band_h = round(lh * 0.13)
    draw.rectangle((0, 0, lw, band_h), fill=brand[1])
    margin = round(lw * 0.1)
    draw.text(
        (margin, band_h * 0.5),
        brand[0],
        font=_fit_font(draw, brand[0], round(band_h * 0.5), lw - 2 * margin),
        fill=(236, 236, 236),
        anchor="lm",
    )
    gtin = gtin_for_ndc10(ndc10_hyphenated)
    dm = _barcode_image(
        f"(01){gtin}(17){expiry:%y%m%d}(10){lot}",
        zxingcpp.BarcodeFormat.DataMatrix,
        module_px,
        gs1=True,
        ink=28,
        paper=paper,
    )
    if dm.width > lw - 2 * margin:
        raise ValueError(f"a {module_px}-pixel module makes the DataMatrix too big for a {lw}-pixel label")
    dm_x = lw - margin - dm.width
    dm_y = band_h + round(lh * 0.1)
    label.paste(Image.merge("RGB", (dm, dm, dm)), (dm_x, dm_y))
    small = _fit_font(draw, f"GTIN {gtin}", round(lh * 0.032), lw - dm_x - lw * 0.03)
    hri_y = dm_y + dm.height + round(lh * 0.01)
    for i, line in enumerate((f"GTIN {gtin}", f"EXP {expiry:%Y-%m}", f"LOT {lot}")):
        draw.text((dm_x + module_px, hri_y + i * small.size * 1.25), line, font=small, fill=(40, 40, 40))

    col_w = max(lw * 0.3, dm_x - margin - lw * 0.04)
    y = band_h + lh * 0.07
    ndc_font = _fit_font(draw, f"NDC {ndc10_hyphenated}", round(lh * 0.055), col_w)
    draw.text((margin, y), f"NDC {ndc10_hyphenated}", font=ndc_font, fill=(30, 30, 30))
    y += lh * 0.11
    name_font = _fit_font(draw, drug, round(lh * 0.11), col_w)
    draw.text((margin, y), drug, font=name_font, fill=(18, 18, 22), stroke_width=max(1, round(lh * 0.004)))
    y += lh * 0.14
    draw.text((margin, y), strength, font=_fit_font(draw, strength, round(lh * 0.085), col_w), fill=brand[1])
    y += lh * 0.12
    draw.text((margin, y), count_text, font=_font(round(lh * 0.05)), fill=(40, 40, 40))
    y += lh * 0.08
    draw.text((margin, y), "Rx only", font=_font(round(lh * 0.05)), fill=(20, 20, 20), stroke_width=1)
    fine = _font(max(7, round(lh * 0.026)))
    y = lh * 0.8
    for line in (
        "Store at 20 to 25 C (68 to 77 F). Dispense in a tight,",
        "light-resistant container. Keep out of reach of children.",
        f"Lot {lot}    Exp {expiry:%m/%Y}",
    ):
        draw.text((margin, y), line, font=fine, fill=(60, 60, 60))
        y += fine.size * 1.3
    return label


def stock_bottle_photo(
    ndc10_hyphenated: str,
    drug: str,
    strength: str,
    lot: str,
    expiry: date,
    *,
    size: tuple[int, int] = (2048, 1536),
    module_px: int = 8,
    seed: int = 0,
    count_text: str = "100 Tablets",
) -> Image.Image:
    """A stock bottle standing on a pharmacy counter, its label carrying the NDC and a GS1 DataMatrix."""
    rng = random.Random(f"stock:{seed}")
    w, h = size
    angle = rng.uniform(-3.0, 3.0)
    horizon = h * rng.uniform(0.3, 0.38)
    counter_color = rng.choice(_COUNTERS)
    wall_color = rng.choice(_WALLS)
    brand = rng.choice(_BRANDS)

    # Wall above the counter's back edge, counter below; the edge tilts with the camera.
    bg = _half(size)
    kx, ky = bg[0] / w, bg[1] / h
    scene = _counter(rng, bg, counter_color, wood=False)
    wall = Image.new("RGB", bg, wall_color)
    wall = _shade(wall, _profile(bg[1], [0.82 + 0.18 * i / 15 for i in range(16)], bg[0], vertical=True))
    tilt = math.tan(math.radians(angle)) * w / 2
    wall_mask = Image.new("L", bg, 0)
    wall_poly = [(0, 0), (w, 0), (w, horizon + tilt), (0, horizon - tilt)]
    ImageDraw.Draw(wall_mask).polygon(_scaled(wall_poly, kx, ky), fill=255)
    scene = Image.composite(wall, scene, wall_mask)
    join = [
        (0, horizon - tilt),
        (w, horizon + tilt),
        (w, horizon + tilt + h * 0.012),
        (0, horizon - tilt + h * 0.012),
    ]
    scene = _darken(scene, _soft_shadow(bg, [_scaled(join, kx, ky)], blur=h * 0.006 * ky, opacity=70))

    # The bottle, drawn upright on its own sprite, then tilted with the camera.
    bh = round(h * 0.8)
    bw = round(bh * 0.56)
    cap_h, neck_h = round(bh * 0.15), round(bh * 0.035)
    body_top = cap_h + neck_h
    sprite = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
    alpha = Image.new("L", (bw, bh), 0)
    adraw = ImageDraw.Draw(alpha)
    adraw.rounded_rectangle((0, body_top, bw - 1, bh - 1), radius=round(bw * 0.1), fill=255)
    cap_w = round(bw * 0.8)
    cap_x = (bw - cap_w) // 2
    adraw.rectangle((cap_x + bw * 0.03, cap_h - 2, bw - cap_x - bw * 0.03, body_top + 2), fill=255)
    adraw.rounded_rectangle((cap_x, 0, cap_x + cap_w, cap_h), radius=round(cap_h * 0.12), fill=255)

    body = Image.new("RGB", (bw, bh), (228, 227, 221))
    bdraw = ImageDraw.Draw(body)
    ridge = max(2, round(cap_w / 60))
    for x in range(cap_x, cap_x + cap_w, ridge * 2):
        bdraw.rectangle((x, 0, x + ridge - 1, cap_h), fill=(206, 205, 200))
    bdraw.line((0, cap_h, bw, cap_h), fill=(170, 170, 166), width=max(1, bh // 300))
    label_top = body_top + round((bh - body_top) * 0.12)
    label_h = round((bh - body_top) * 0.8)
    label = _stock_label(
        (bw, label_h),
        ndc10_hyphenated=ndc10_hyphenated,
        drug=drug,
        strength=strength,
        lot=lot,
        expiry=expiry,
        module_px=module_px,
        brand=brand,
        count_text=count_text,
    )
    body.paste(label, (0, label_top))
    body = _shade(body, _profile(bw, _cylinder(), bh))
    highlight = _profile(bw, [0.16 * math.exp(-((((i / 63) - 0.3) / 0.06) ** 2)) for i in range(64)], bh)
    body = ImageChops.add(body, Image.merge("RGB", (highlight, highlight, highlight)))
    sprite.paste(body, (0, 0), alpha)
    sprite.putalpha(alpha)
    rotated = sprite.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)

    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    base_y = h * rng.uniform(0.9, 0.94)
    px, py = round(cx - rotated.width / 2), round(base_y - bh / 2 - rotated.height / 2)
    # Light comes from the upper left: contact shadow under the bottle, a long soft one to the right.
    foot = [(cx - bw * 0.5, base_y - bh * 0.02), (cx + bw * 0.55, base_y - bh * 0.02)]
    cast = [
        foot[0],
        foot[1],
        (cx + bw * 1.25, base_y - bh * 0.25),
        (cx + bw * 0.6, base_y - bh * 0.3),
    ]
    contact = [
        (cx - bw * 0.52, base_y - bh * 0.03),
        (cx + bw * 0.56, base_y - bh * 0.03),
        (cx + bw * 0.5, base_y + bh * 0.015),
        (cx - bw * 0.46, base_y + bh * 0.015),
    ]
    scene = _darken(scene, _soft_shadow(bg, [_scaled(cast, kx, ky)], blur=bh * 0.05 * ky, opacity=90))
    scene = _darken(scene, _soft_shadow(bg, [_scaled(contact, kx, ky)], blur=bh * 0.012 * ky, opacity=150))
    scene = scene.resize(size, Image.Resampling.BILINEAR)
    scene.paste(rotated, (px, py), rotated)
    return _finish(scene, rng, light=(0.2, 0.1), vignette=0.35)


# ---------------------------------------------------------------------------------------------------------
# Pills on a counting tray


def _pill_sprite(
    shape: str, color: RGB, imprint: str, length: int, *, front: bool
) -> tuple[Image.Image, Image.Image]:
    """One pill as an RGBA sprite plus its shadow mask, drawn at 3x and scaled down for smooth edges."""
    ss = 3
    if shape == "round":
        pw, ph = length, length
    elif shape == "oval":
        pw, ph = length, round(length * 0.55)
    elif shape == "capsule":
        pw, ph = length, round(length * 0.4)
    else:
        raise ValueError(f"unknown pill shape {shape!r}: use round, oval or capsule")
    pad = round(length * 0.12)
    sw, sh = (pw + 2 * pad) * ss, (ph + 2 * pad) * ss
    box = (pad * ss, pad * ss, (pad + pw) * ss - 1, (pad + ph) * ss - 1)
    mask = Image.new("L", (sw, sh), 0)
    mdraw = ImageDraw.Draw(mask)
    if shape == "capsule":
        mdraw.rounded_rectangle(box, radius=ph * ss // 2, fill=255)
    else:
        mdraw.ellipse(box, fill=255)

    body = Image.new("RGB", (sw, sh), color)
    if shape == "capsule":
        # Two-part capsule: the cap half in the pill's color, the body half a lighter shade.
        lighter = tuple(min(238, c + (238 - c) // 2) for c in color)
        ImageDraw.Draw(body).rectangle((sw // 2, 0, sw, sh), fill=lighter)
    # Bevel: darker towards the rim, lit from the upper left.
    rim = mask.filter(ImageFilter.GaussianBlur(ph * ss * 0.12)).point(lambda v: 150 + v * 105 // 255)
    body = _shade(body, rim)
    light = Image.radial_gradient("L").resize((sw, sh)).point(lambda v: max(0, 60 - v // 3))
    light = ImageChops.offset(light, -sw // 7, -sh // 7)
    body = ImageChops.add(body, Image.merge("RGB", (light, light, light)))
    draw = ImageDraw.Draw(body)
    if front and imprint:
        font = _fit_font(draw, imprint, round(ph * ss * 0.3), pw * ss * 0.7)
        cx, cy = sw / 2, sh / 2
        if shape == "capsule":
            draw.text((cx, cy), imprint, font=font, fill=(30, 30, 34), anchor="mm")
        else:
            dark = tuple(round(c * 0.7) for c in color)
            bright = tuple(min(245, round(c * 1.05) + 6) for c in color)
            draw.text((cx + ss, cy + ss), imprint, font=font, fill=bright, anchor="mm")
            draw.text((cx, cy), imprint, font=font, fill=dark, anchor="mm")
    elif shape != "capsule":
        dark = tuple(round(c * 0.72) for c in color)
        draw.line((box[0] + pw * ss * 0.12, sh / 2, box[2] - pw * ss * 0.12, sh / 2), fill=dark, width=ss * 2)
    sprite = body.convert("RGBA")
    sprite.putalpha(mask)
    size = (sw // ss, sh // ss)
    sprite = sprite.resize(size, Image.Resampling.LANCZOS)
    shadow = mask.resize(size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(length * 0.05))
    return sprite, shadow


def _place(
    rng: random.Random, count: int, area: tuple[float, float, float, float], spacing: float
) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = area
    placed: list[tuple[float, float]] = []
    for _ in range(count):
        for _attempt in range(400):
            p = (rng.uniform(x0, x1), rng.uniform(y0, y1))
            if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= spacing**2 for q in placed):
                placed.append(p)
                break
        else:
            return None
    return placed


@dataclass(frozen=True)
class _Tray:
    """A counting tray drawn on a counter; geometry is kept in tray coordinates (origin top left)."""

    scene: Image.Image
    width: float
    height: float
    angle: float
    centre: tuple[float, float]

    @property
    def pill_area(self) -> tuple[float, float, float, float]:
        return (self.width * 0.08, self.height * 0.1, self.width * 0.74, self.height * 0.78)

    @property
    def trough(self) -> tuple[float, float, float, float]:
        return (self.width * 0.8, self.height * 0.08, self.width * 0.95, self.height * 0.92)

    def to_image(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return _transform(points, self.angle, (self.width / 2, self.height / 2), self.centre)


def _tray(rng: random.Random, size: tuple[int, int], angle: float, tray_color: RGB) -> _Tray:
    """A counter with a counting tray on it: rim, floor, trough with its shadow, and a spatula."""
    half = _draw_tray(rng, _half(size), angle, tray_color)
    kx, ky = size[0] / half.scene.width, size[1] / half.scene.height
    scene = half.scene.resize(size, Image.Resampling.BILINEAR)
    return _Tray(scene, half.width * kx, half.height * ky, angle, (half.centre[0] * kx, half.centre[1] * ky))


def _draw_tray(rng: random.Random, size: tuple[int, int], angle: float, tray_color: RGB) -> _Tray:
    w, h = size
    scene = _counter(rng, size, rng.choice(_COUNTERS), wood=rng.random() < 0.5)
    tw, th = w * 0.86, h * 0.84
    centre = (w / 2 + rng.uniform(-0.02, 0.02) * w, h / 2 + rng.uniform(-0.02, 0.02) * h)
    tray = _Tray(scene, tw, th, angle, centre)
    outline = tray.to_image(_rounded_rect_points(tw, th, th * 0.06))
    inner = tray.to_image(
        [(x * 0.96 + tw * 0.02, y * 0.95 + th * 0.025) for x, y in _rounded_rect_points(tw, th, th * 0.05)]
    )
    x0, y0, x1, y1 = tray.trough
    trough = tray.to_image([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    scene = _darken(
        scene, _soft_shadow(size, [[(x + w * 0.012, y + h * 0.02) for x, y in outline]], h * 0.02, 120)
    )

    masks = []
    for poly in (outline, inner, trough):
        m = Image.new("L", size, 0)
        ImageDraw.Draw(m).polygon(poly, fill=255)
        # A slight blur stands in for anti-aliasing (no stair steps on the tray edge).
        masks.append(m.filter(ImageFilter.GaussianBlur(0.7)))
    rim = _lighter(tray_color, 18)
    scene = Image.composite(Image.new("RGB", size, rim), scene, masks[0])
    floor = Image.new("RGB", size, tray_color)
    lip = _soft_shadow(size, [[(x + w * 0.006, y + h * 0.01) for x, y in inner]], blur=h * 0.01, opacity=255)
    floor = _shade(floor, lip.point(lambda v: 200 + v * 55 // 255))
    scene = Image.composite(floor, scene, masks[1])
    trough_color = (max(0, tray_color[0] - 30), max(0, tray_color[1] - 30), max(0, tray_color[2] - 30))
    scene = Image.composite(Image.new("RGB", size, trough_color), scene, masks[2])

    spatula = tray.to_image(
        [(tw * 0.08, th * 0.84), (tw * 0.7, th * 0.84), (tw * 0.72, th * 0.9), (tw * 0.08, th * 0.9)]
    )
    scene = _darken(
        scene, _soft_shadow(size, [[(x + w * 0.004, y + h * 0.008) for x, y in spatula]], h * 0.004, 90)
    )
    ImageDraw.Draw(scene).polygon(spatula, fill=(196, 198, 204))
    return _Tray(scene, tw, th, angle, centre)


def _scatter(
    rng: random.Random, tray: _Tray, count: int, length: int
) -> tuple[list[tuple[float, float]], int]:
    """Positions (tray coordinates) for `count` pills that never touch; shrinks the pills until they fit."""
    x0, y0, x1, y1 = tray.pill_area
    # Pills may take about half the floor; beyond that they would have to touch and could not be counted.
    while count and length > 12 and (length * 1.25) ** 2 * count > (x1 - x0) * (y1 - y0) * 0.55:
        length = round(length * 0.9)
    while True:
        inset = length * 0.6
        placed = _place(rng, count, (x0 + inset, y0 + inset, x1 - inset, y1 - inset), length * 1.2)
        if placed is not None:
            return placed, length
        if length <= 8:
            raise ValueError(f"{count} pills do not fit on the tray in this size of photo")
        length = round(length * 0.9)


def _turned_pill(sprite: Image.Image, shadow: Image.Image, turn: float) -> tuple[Image.Image, Image.Image]:
    mask = shadow.rotate(turn, Image.Resampling.BILINEAR, expand=True).point(lambda v: v * 110 // 255)
    return sprite.rotate(turn, Image.Resampling.BICUBIC, expand=True), mask


def _paste_pill(
    scene: Image.Image, turned: tuple[Image.Image, Image.Image], at: tuple[float, float], length: int
) -> None:
    sprite, mask = turned
    x, y = at
    offset = (round(x - mask.width / 2 + length * 0.06), round(y - mask.height / 2 + length * 0.09))
    scene.paste((20, 18, 16), offset, mask)
    scene.paste(sprite, (round(x - sprite.width / 2), round(y - sprite.height / 2)), sprite)


def pills_photo(
    count: int,
    *,
    shape: str = "round",
    color: str | RGB = "white",
    imprint: str = "M 30",
    seed: int = 0,
    size: tuple[int, int] = (2048, 1536),
) -> Image.Image:
    """Exactly `count` pills spread on a counting tray, seen from above, with their imprint legible."""
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(f"pills:{seed}")
    rgb = PILL_COLORS[color] if isinstance(color, str) else color
    tray = _tray(rng, size, rng.uniform(-2.5, 2.5), rng.choice(_TRAYS))
    scene = tray.scene.copy()
    length = round(min(size) * (0.075 if shape == "round" else 0.1))
    positions, length = _scatter(rng, tray, count, length)
    faces = {
        True: _pill_sprite(shape, rgb, imprint, length, front=True),
        False: _pill_sprite(shape, rgb, imprint, length, front=False),
    }
    for at in tray.to_image(positions):
        # Most pills land imprint up; the rest show their plain or scored back.
        sprite, shadow = faces[rng.random() < 0.7]
        _paste_pill(scene, _turned_pill(sprite, shadow, rng.uniform(0, 360)), at, length)
    return _finish(scene, rng, light=(0.25, 0.15), vignette=0.3)


# ---------------------------------------------------------------------------------------------------------
# Labelled vial


def _vial_label(
    size: tuple[int, int],
    rng: random.Random,
    *,
    rx_number: str,
    patient_name: str,
    drug: str,
    strength: str,
    directions: str,
    quantity: str,
) -> Image.Image:
    lw, lh = size
    label = Image.new("RGB", size, (234, 233, 228))
    draw = ImageDraw.Draw(label)
    m = round(lw * 0.04)
    usable = lw - 2 * m
    head = _font(round(lh * 0.055))
    draw.text((m, m), "PRAIRIE RURAL PHARMACY", font=head, fill=(20, 60, 120), stroke_width=1)
    draw.text(
        (m, m + head.size * 1.2),
        "112 Main St, Clay Center KS  (785) 555-0142",
        font=_font(round(lh * 0.04)),
        fill=(50, 50, 50),
    )
    y = m + head.size * 2.6
    draw.line((m, y, lw - m, y), fill=(20, 60, 120), width=max(1, lh // 150))
    y += lh * 0.03
    body = _font(round(lh * 0.06))
    filled = date(2026, 11, 2 + rng.randrange(20))
    draw.text((m, y), f"Rx# {rx_number}", font=body, fill=(20, 20, 20), stroke_width=1)
    draw.text((lw - m, y), f"Date: {filled:%m/%d/%Y}", font=body, fill=(20, 20, 20), anchor="ra")
    y += body.size * 1.4
    name_font = _fit_font(draw, patient_name.upper(), round(lh * 0.085), usable)
    draw.text((m, y), patient_name.upper(), font=name_font, fill=(10, 10, 10), stroke_width=max(1, lh // 250))
    y += name_font.size * 1.35
    dir_font = _font(round(lh * 0.07))
    for line in _wrap(draw, directions.upper(), dir_font, usable)[:3]:
        draw.text((m, y), line, font=dir_font, fill=(15, 15, 15))
        y += dir_font.size * 1.2
    y += lh * 0.02
    drug_line = f"{drug} {strength}"
    draw.text(
        (m, y),
        drug_line,
        font=_fit_font(draw, drug_line, round(lh * 0.07), usable),
        fill=(15, 15, 15),
        stroke_width=1,
    )
    y += lh * 0.1
    draw.text((m, y), f"Qty: {quantity}    Refills: 0", font=body, fill=(30, 30, 30))
    code = _barcode_image(
        rx_number, zxingcpp.BarcodeFormat.Code128, max(1, round(lh / 220)), gs1=False, ink=25, paper=234
    )
    code = code.resize((code.width, max(code.height, round(lh * 0.12))), Image.Resampling.NEAREST)
    label.paste(Image.merge("RGB", (code, code, code)), (lw - m - code.width, lh - m - code.height))
    warn = _font(round(lh * 0.038))
    draw.text(
        (m, lh - m - warn.size),
        "Do not share this medicine. Keep out of reach of children.",
        font=warn,
        fill=(90, 20, 20),
    )
    return label


def vial_label_photo(
    rx_number: str,
    patient_name: str,
    drug: str,
    strength: str,
    directions: str,
    quantity: str | int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (2048, 1536),
) -> Image.Image:
    """An amber prescription vial lying on the counter with its pharmacy label facing the camera."""
    rng = random.Random(f"vial:{seed}")
    w, h = size
    angle = rng.uniform(-4.0, 4.0)
    bg = _half(size)
    kx, ky = bg[0] / w, bg[1] / h
    scene = _counter(rng, bg, rng.choice(_COUNTERS), wood=rng.random() < 0.5)
    vl, vd = round(w * 0.8), round(h * 0.5)
    cap_w = round(vl * 0.15)
    sprite = Image.new("RGBA", (vl, round(vd * 1.1)), (0, 0, 0, 0))
    sh = sprite.height
    off = (sh - vd) // 2
    alpha = Image.new("L", sprite.size, 0)
    adraw = ImageDraw.Draw(alpha)
    adraw.rounded_rectangle((0, off, vl - cap_w, off + vd), radius=round(vd * 0.08), fill=255)
    adraw.rounded_rectangle((vl - cap_w - 4, 0, vl - 1, sh - 1), radius=round(sh * 0.06), fill=255)

    amber = Image.new("RGB", sprite.size, (178, 92, 24))
    shade = [0.42 + 0.58 * math.sin(math.pi * (i + 0.5) / 64) ** 0.8 for i in range(64)]
    amber = _shade(amber, _profile(sh, shade, vl, vertical=True))
    sheen = _profile(
        sh, [0.3 * math.exp(-((((i / 63) - 0.2) / 0.05) ** 2)) for i in range(64)], vl, vertical=True
    )
    amber = ImageChops.add(amber, Image.merge("RGB", (sheen, sheen, sheen)))
    adraw_rgb = ImageDraw.Draw(amber)
    ridge = max(2, round(sh / 120))
    adraw_rgb.rectangle((vl - cap_w, 0, vl, sh), fill=(226, 226, 222))
    for y in range(0, sh, ridge * 2):
        adraw_rgb.rectangle((vl - cap_w, y, vl, y + ridge - 1), fill=(204, 204, 200))
    label_w, label_h = round((vl - cap_w) * 0.78), round(vd * 0.86)
    label = _vial_label(
        (label_w, label_h),
        rng,
        rx_number=rx_number,
        patient_name=patient_name,
        drug=drug,
        strength=strength,
        directions=directions,
        quantity=str(quantity),
    )
    lx, ly = round((vl - cap_w - label_w) * 0.45), off + (vd - label_h) // 2
    amber.paste(label, (lx, ly))
    amber = _shade(amber, _profile(sh, _cylinder(), vl, vertical=True))
    shine = _profile(
        sh, [0.1 * math.exp(-((((i / 63) - 0.25) / 0.05) ** 2)) for i in range(64)], vl, vertical=True
    )
    amber = ImageChops.add(amber, Image.merge("RGB", (shine, shine, shine)))
    sprite.paste(amber, (0, 0), alpha)
    sprite.putalpha(alpha)
    rotated = sprite.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    cx, cy = w / 2 + rng.uniform(-0.03, 0.03) * w, h / 2 + rng.uniform(-0.03, 0.03) * h
    body = _transform(_rounded_rect_points(vl, sh, sh * 0.2), angle, (vl / 2, sh / 2), (cx, cy))
    shadow = _scaled([(x + w * 0.015, y + h * 0.05) for x, y in body], kx, ky)
    scene = _darken(scene, _soft_shadow(bg, [shadow], h * 0.04 * ky, 130))
    scene = scene.resize(size, Image.Resampling.BILINEAR)
    scene.paste(rotated, (round(cx - rotated.width / 2), round(cy - rotated.height / 2)), rotated)
    return _finish(scene, rng, light=(0.3, 0.1), vignette=0.3)


# ---------------------------------------------------------------------------------------------------------
# Degrading, encoding, video


def _glare_spot(size: tuple[int, int], strength: float, at: tuple[float, float]) -> Image.Image:
    """A specular hot spot: saturated core, soft halo; radius grows with strength."""
    w, h = size
    r = max(2, round(min(w, h) * 0.3 * strength))
    # radial_gradient is 0 at the centre and 255 at radius 128 of its 256x256 image.
    spot = Image.radial_gradient("L").point(lambda v: 255 if v < 70 else max(0, 255 - (v - 70) * 255 // 58))
    spot = spot.resize((2 * r, 2 * r), Image.Resampling.BILINEAR)
    mask = Image.new("L", size, 0)
    mask.paste(spot, (round(at[0] * w) - r, round(at[1] * h) - r))
    return mask


def degrade(
    image: Image.Image,
    *,
    blur: float = 0,
    darkness: float = 0,
    overexpose: float = 0,
    glare: float = 0,
    glare_at: tuple[float, float] = (0.47, 0.45),
) -> Image.Image:
    """A worse copy of a photo: gaussian blur (pixels), under/over-exposure (stops), a glare spot (0..1)."""
    out = image.convert("RGB")
    if blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    # Exposure is a change of light in stops, applied in linear light (gamma 2.2) as a camera would.
    stops = overexpose - darkness
    if stops:
        gain = 2.0 ** (stops / 2.2)
        out = out.point(lambda v: min(255, round(v * gain)))
    if glare > 0:
        out = Image.composite(
            Image.new("RGB", out.size, (255, 255, 255)), out, _glare_spot(out.size, glare, glare_at)
        )
    return out


def to_jpeg_bytes(
    image: Image.Image,
    quality: int = 90,
    *,
    exif_gps: bool = False,
    comment: str | bytes | None = None,
    orientation: int | None = None,
) -> bytes:
    """Encode as JPEG, optionally with the metadata a phone adds (GPS, orientation) and a JPEG comment."""
    exif = Image.Exif()
    if exif_gps or orientation is not None:
        exif[ExifTags.Base.Make] = "DemoPhone"
        exif[ExifTags.Base.Model] = "DP-12"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if exif_gps:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSLatitudeRef] = "N"
        gps[ExifTags.GPS.GPSLatitude] = (39.0, 22.0, 41.5)
        gps[ExifTags.GPS.GPSLongitudeRef] = "W"
        gps[ExifTags.GPS.GPSLongitude] = (97.0, 7.0, 28.2)
    buf = io.BytesIO()
    params: dict[str, object] = {"quality": quality}
    if len(exif):
        params["exif"] = exif.tobytes()
    if comment is not None:
        params["comment"] = comment
    image.convert("RGB").save(buf, "JPEG", **params)
    return buf.getvalue()


# PyAV's stubs leave from_image untyped.
_frame_from_image = cast(Callable[[Image.Image], av.VideoFrame], av.VideoFrame.from_image)


def count_video(
    path: str | Path,
    seconds: float = 2,
    fps: int = 10,
    size: tuple[int, int] = (640, 480),
    container: str = "mp4",
    *,
    count: int = 30,
    seed: int = 0,
) -> Path:
    """Write a short video (H.264 in mp4, VP8 in webm) of a spatula sweeping counted pills into the trough."""
    codecs = {"mp4": "h264", "webm": "vp8"}
    if container not in codecs:
        raise ValueError(f"container must be mp4 or webm, not {container!r}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError("video width and height must be even (4:2:0 chroma)")
    rng = random.Random(f"video:{seed}")
    tray = _tray(rng, size, 0.0, rng.choice(_TRAYS))
    positions, length = _scatter(rng, tray, count, round(min(size) * 0.06))
    sprite, shadow = _pill_sprite("round", PILL_COLORS["white"], "M 30", length, front=True)
    turned = [_turned_pill(sprite, shadow, rng.uniform(0, 360)) for _ in positions]
    tx0, ty0, tx1, ty1 = tray.trough
    per_row = max(1, int((tx1 - tx0) / (length * 1.1)))
    rows = max(1, int((ty1 - ty0) / (length * 1.1)))
    # Once the trough floor is covered, further pills pile up half a pill off the ones below.
    in_trough = [
        (
            tx0 + length * (0.6 + 1.1 * (i % per_row) + 0.5 * (i // (per_row * rows) % 2)),
            ty0 + length * (0.6 + 1.1 * (i // per_row % rows) + 0.5 * (i // (per_row * rows) % 2)),
        )
        for i in range(len(positions))
    ]
    ax0, ay0, ax1, _ay1 = tray.pill_area
    frames = max(1, round(seconds * fps))
    out_path = Path(path)
    with av.open(str(out_path), mode="w", format=container) as output:
        stream = output.add_stream(codecs[container], rate=fps)
        if not isinstance(stream, av.VideoStream):
            raise TypeError(f"{codecs[container]} did not give a video stream")
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        # Fast encoder settings: these clips are test fixtures, not archives.
        stream.options = (
            {"preset": "veryfast"} if container == "mp4" else {"deadline": "realtime", "cpu-used": "8"}
        )
        for i in range(frames):
            sweep = ax0 + (ax1 + length - ax0) * i / max(1, frames - 1)
            frame_img = tray.scene.copy()
            moved = 0
            for pos, pill in zip(positions, turned, strict=True):
                at = pos
                if pos[0] < sweep:
                    at = in_trough[moved]
                    moved += 1
                _paste_pill(frame_img, pill, tray.to_image([at])[0], length)
            bar = tray.to_image(
                [
                    (sweep, ay0),
                    (sweep + length * 0.3, ay0),
                    (sweep + length * 0.3, tray.height * 0.8),
                    (sweep, tray.height * 0.8),
                ]
            )
            ImageDraw.Draw(frame_img).polygon(bar, fill=(196, 198, 204))
            for packet in stream.encode(_frame_from_image(frame_img)):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return out_path
