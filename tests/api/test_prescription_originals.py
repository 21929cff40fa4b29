"""A paper prescription's original (media kind rx_image) through the same tus upload and hardening as a
fill's photos: JPEG, PNG, a multi-page fax TIFF and a PDF stored page by page without their metadata,
served to the pharmacists who may see the site; hostile files refused with nothing stored."""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from server.db.models import AccessLogEntry, Media
from tests.api.world import User, World, build_world, photo, rx_body, sha256, tus_metadata

PATIENT = "Jane Q. Patient"


@pytest.fixture
async def pv1_world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    w = await build_world(tmp_path, database_url, pv1=True)
    try:
        yield w
    finally:
        await w.close()


async def upload_original(
    user: User, rx_id: int, data: bytes, filename: str = "original.jpg", kind: str = "rx_image"
) -> ClientResponse:
    """Uploads a prescription's original over tus in one PATCH; returns the final response."""
    meta = tus_metadata(prescription_id=str(rx_id), kind=kind, filename=filename, sha256=sha256(data))
    created = await user.post(
        "/api/v1/uploads",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta},
    )
    if created.status != 201:
        return created
    return await user.request(
        "PATCH",
        created.headers["Location"],
        data=data,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )


def page(number: int, size: tuple[int, int] = (850, 1100), mode: str = "L") -> Image.Image:
    im = Image.new(mode, size, 255 if mode != "1" else 1)
    draw = ImageDraw.Draw(im)
    draw.rectangle((40, 40, size[0] - 40, 120 + 30 * number), outline=0, width=4)
    draw.text((60, 60), f"Rx page {number}: metformin 500 mg #60", fill=0)
    return im


def fax_tiff(pages: int, size: tuple[int, int] = (850, 1100)) -> bytes:
    """A bilevel multi-page TIFF as fax machines send, with the patient named in its tags."""
    frames = [page(n, size).convert("1") for n in range(1, pages + 1)]
    out = io.BytesIO()
    frames[0].save(
        out,
        "TIFF",
        save_all=True,
        append_images=frames[1:],
        compression="group4",
        tiffinfo={270: f"Fax for {PATIENT}"},
    )
    return out.getvalue()


def declaring_a_huge_second_page(tiff: bytes, edge: int = 60000) -> bytes:
    """The TIFF with its second page's width and height tags rewritten to edge x edge (little-endian)."""
    data = bytearray(tiff)
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    ifd = struct.unpack_from("<I", data, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0])[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength: as a LONG
            struct.pack_into("<HHII", data, entry, tag, 4, 1, edge)
    return bytes(data)


def pdf(pages: int) -> bytes:
    frames = [page(n).convert("RGB") for n in range(1, pages + 1)]
    out = io.BytesIO()
    frames[0].save(
        out, "PDF", save_all=True, append_images=frames[1:], title=f"Rx of {PATIENT}", resolution=100
    )
    return out.getvalue()


async def _rx(world: World, tech: User, number: str = "RX1") -> int:
    return int((await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(number)))["id"])


async def _stored(world: World) -> int:
    async with world.services.db.read() as s:
        return int((await s.execute(select(func.count()).select_from(Media))).scalar_one())


async def test_a_photo_of_the_original_is_served_to_pharmacists_of_the_state(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx_id = await _rx(pv1_world, tech)
    done = await upload_original(tech, rx_id, photo("rx_image", 1))
    assert done.status == 204, await done.text()
    assert done.headers["Tp-Pages"] == "1"
    again = await upload_original(tech, rx_id, photo("rx_image", 1))
    assert again.status == 204 and again.headers["Tp-Media-Id"] == done.headers["Tp-Media-Id"]

    rph = await pv1_world.login("nd_rph")
    view = await rph.json("GET", f"/api/v1/prescriptions/{rx_id}")
    [original] = view["original"]
    assert (original["kind"], original["page"]) == ("rx_image", 1)
    resp = await rph.get(original["url"])
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.content_type == "image/jpeg"
    await pv1_world.services.access_log.flush()
    async with pv1_world.services.db.read() as s:
        logged = (
            await s.execute(
                select(func.count()).where(
                    AccessLogEntry.entity_type == "media", AccessLogEntry.entity_id == str(original["id"])
                )
            )
        ).scalar_one()
    assert logged == 1
    mn = await pv1_world.login("mn_rph")
    assert (await mn.get(original["url"])).status == 404
    other = await pv1_world.device("tech_nd2")
    assert (await upload_original(other, rx_id, photo("rx_image", 2))).status == 404


async def test_a_multi_page_fax_is_stored_page_by_page_without_its_tags(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx_id = await _rx(pv1_world, tech)
    done = await upload_original(tech, rx_id, fax_tiff(3), "fax.tif")
    assert done.status == 204, await done.text()
    assert done.headers["Tp-Pages"] == "3"
    rph = await pv1_world.login("nd_rph")
    view = await rph.json("GET", f"/api/v1/prescriptions/{rx_id}")
    assert [p["page"] for p in view["original"]] == [1, 2, 3]
    assert view["original"][0]["quality"]["original_format"] == "TIFF"
    for p in view["original"]:
        body = await (await rph.get(p["url"] + "?variant=full")).read()
        assert PATIENT.encode() not in body
        with Image.open(io.BytesIO(body)) as im:
            assert im.size == (850, 1100)


async def test_a_pdf_is_rendered_page_by_page(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx_id = await _rx(pv1_world, tech)
    done = await upload_original(tech, rx_id, pdf(2), "rx.pdf")
    assert done.status == 204, await done.text()
    assert done.headers["Tp-Pages"] == "2"
    rph = await pv1_world.login("nd_rph")
    view = await rph.json("GET", f"/api/v1/prescriptions/{rx_id}")
    assert [(p["page"], p["quality"]["original_format"]) for p in view["original"]] == [
        (1, "PDF"),
        (2, "PDF"),
    ]
    body = await (await rph.get(view["original"][1]["url"] + "?variant=full")).read()
    assert PATIENT.encode() not in body
    with Image.open(io.BytesIO(body)) as im:
        # 8.5 x 11 inches at 100 dpi in the file, rendered at 200 dpi.
        assert im.size == (1700, 2200)


async def test_hostile_originals_are_refused_and_nothing_is_stored(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx_id = await _rx(pv1_world, tech)
    before = await _stored(pv1_world)
    # A fax whose second page declares 60,000 x 60,000 pixels (a bomb behind a harmless first page).
    refused = await upload_original(tech, rx_id, declaring_a_huge_second_page(fax_tiff(2)), "bomb.tif")
    assert refused.status == 413, await refused.text()
    too_many = await upload_original(
        tech, rx_id, pdf(pv1_world.services.config.max_original_pages + 1), "long.pdf"
    )
    assert (too_many.status, (await too_many.json())["error"]) == (413, "too_many_pages")
    damaged = await upload_original(tech, rx_id, pdf(1)[:400], "cut.pdf")
    assert (damaged.status, (await damaged.json())["error"]) == (422, "corrupt")
    gif = io.BytesIO()
    page(1).save(gif, "GIF")
    assert (await upload_original(tech, rx_id, gif.getvalue(), "rx.gif")).status == 415
    wrong_kind = await upload_original(tech, rx_id, photo("rx_image", 3), kind="stock_bottle")
    assert wrong_kind.status == 400
    assert await _stored(pv1_world) == before

    rph = await pv1_world.login("nd_rph")
    view = await rph.json("POST", f"/api/v1/prescriptions/{rx_id}/claim")
    closed = await upload_original(tech, rx_id, photo("rx_image", 4))
    assert (closed.status, (await closed.json())["error"]) == (409, "original_closed")
    assert view["original"] == []
