"""A fill whose photo was evidence of another fill is flagged `reused_photo`, naming that fill."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from sqlalchemy import select

from demo import photos
from server.db.models import Fill, Media
from server.evidence.photo_hash import NEAR_DISTANCE
from tests.api.world import REQUIRED, User, World, new_fill_id, photo, queued_fill, rx_body, upload

SIZE = (1600, 1200)


def vial_photo(seed: int) -> Image.Image:
    return photos.vial_label_photo(
        "6001237",
        "Joan Whitfield",
        "Simvastatin",
        "20 mg",
        "Take one tablet at bedtime",
        30,
        seed=seed,
        size=SIZE,
    )


def recaptured(data: bytes) -> bytes:
    """The photo 2 % cropped (1 % off each side) and saved again at another JPEG quality."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        dx, dy = round(w * 0.01), round(h * 0.01)
        out = io.BytesIO()
        im.crop((dx, dy, w - dx, h - dy)).save(out, "JPEG", quality=70)
    return out.getvalue()


async def submitted_fill(world: World, tech: User, rx_number: str, vial: bytes) -> dict[str, Any]:
    """A fill with its own stock bottle and pills photos and the given vial label photo, submitted."""
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number))
    fill_id = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx["id"]})
    for i, kind in enumerate(REQUIRED):
        data = vial if kind == "vial_label" else photo(kind, int(rx_number.removeprefix("RX")) * 10 + i)
        assert (await upload(tech, fill_id, kind, data)).status == 204
    return dict(await tech.json("POST", f"/api/v1/fills/{fill_id}/submit"))


async def reuse_flag(world: World, fill_id: str) -> dict[str, Any] | None:
    """The fill's reused_photo flag as stored (its other flags, such as the count's, are not ours)."""
    async with world.services.db.read() as s:
        flags = (await s.execute(select(Fill.flags).where(Fill.id == fill_id))).scalar_one()
    found = [f for f in flags if f["code"] == "reused_photo"]
    assert len(found) <= 1, flags
    return found[0] if found else None


def vial_media_id(fill: dict[str, Any]) -> int:
    return int(next(m["id"] for m in fill["media"] if m["kind"] == "vial_label"))


async def test_a_byte_identical_vial_photo_of_another_fill_is_flagged_naming_that_fill(world: World) -> None:
    vial = photos.to_jpeg_bytes(vial_photo(11), 88)
    nd1 = await world.device("tech_nd1")
    first = await submitted_fill(world, nd1, "RX1", vial)
    assert await reuse_flag(world, first["id"]) is None

    again = await submitted_fill(world, nd1, "RX2", vial)
    assert again["state"] == "queued"
    assert await reuse_flag(world, again["id"]) == {
        "code": "reused_photo",
        "photos": [
            {
                "media_id": vial_media_id(again),
                "kind": "vial_label",
                "other_fill_id": first["id"],
                "other_media_id": vial_media_id(first),
                "match": "identical",
                "distance": 0,
            }
        ],
    }


async def test_a_reencoded_cropped_copy_from_another_site_is_flagged_as_similar(world: World) -> None:
    original = photos.to_jpeg_bytes(vial_photo(11), 88)
    first = await submitted_fill(world, await world.device("tech_nd1"), "RX1", original)
    # Another site, another state: a photo carried across sites is worse, not better.
    copy = recaptured(original)
    assert copy != original
    again = await submitted_fill(world, await world.device("tech_mn1"), "RX9", copy)

    flag = await reuse_flag(world, again["id"])
    assert flag is not None
    (entry,) = flag["photos"]
    assert entry["media_id"] == vial_media_id(again) and entry["kind"] == "vial_label"
    assert (entry["other_fill_id"], entry["other_media_id"]) == (first["id"], vial_media_id(first))
    assert entry["match"] == "similar" and 0 < entry["distance"] <= NEAR_DISTANCE


async def test_new_photos_of_the_same_product_are_not_flagged(world: World) -> None:
    nd1 = await world.device("tech_nd1")
    first = await submitted_fill(world, nd1, "RX1", photos.to_jpeg_bytes(vial_photo(11), 88))
    # The next day's fill of the same prescription: the vial label drawn and photographed anew.
    second = await submitted_fill(world, nd1, "RX2", photos.to_jpeg_bytes(vial_photo(12), 88))
    rx = await nd1.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX3"))
    third = await queued_fill(world, nd1, rx["id"])
    for fill in (first, second, third):
        assert await reuse_flag(world, fill["id"]) is None
    async with world.services.db.read() as s:
        stored = (await s.execute(select(Media.perceptual_hash, Media.perceptual_hash_vertical))).all()
    assert len(stored) == 9 and all(None not in hashes for hashes in stored)


async def test_a_photo_of_a_draft_never_submitted_is_not_a_reuse(world: World) -> None:
    vial = photos.to_jpeg_bytes(vial_photo(11), 88)
    nd1 = await world.device("tech_nd1")
    rx = await nd1.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    draft = new_fill_id()
    await nd1.json("POST", "/api/v1/fills", 201, json={"id": draft, "prescription_id": rx["id"]})
    assert (await upload(nd1, draft, "vial_label", vial)).status == 204

    fill = await submitted_fill(world, nd1, "RX2", vial)
    assert await reuse_flag(world, fill["id"]) is None
    async with world.services.db.read() as s:
        hashed = (await s.execute(select(Media.perceptual_hash).where(Media.fill_id == fill["id"]))).scalars()
        assert all(h is not None for h in hashed)


async def test_photos_a_resubmission_keeps_from_the_fills_it_replaces_are_not_a_reuse(world: World) -> None:
    """A rejected fill sent again with its stock bottle and vial label photos kept (only the pills taken
    anew), twice over: the kept photos were this fill's evidence all along. The same vial label photo on
    another patient's fill is still a reuse."""
    vial = photos.to_jpeg_bytes(vial_photo(11), 88)
    nd1 = await world.device("tech_nd1")
    rph = await world.login("nd_rph")
    fill = await submitted_fill(world, nd1, "RX1", vial)
    kept = {"stock_bottle": photo("stock_bottle", 10), "vial_label": vial}
    for attempt in (1, 2):
        claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
        reject = {"version": claimed["version"], "outcome": "reject", "reason_codes": ["wrong_quantity"]}
        await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=reject)
        retry = new_fill_id()
        body = {"id": retry, "prescription_id": fill["prescription"]["id"], "previous_fill_id": fill["id"]}
        await nd1.json("POST", "/api/v1/fills", 201, json=body)
        for kind, data in {**kept, "pills": photo("pills", 100 + attempt)}.items():
            assert (await upload(nd1, retry, kind, data)).status == 204
        fill = await nd1.json("POST", f"/api/v1/fills/{retry}/submit")
        assert fill["state"] == "queued"
        assert await reuse_flag(world, retry) is None

    elsewhere = await submitted_fill(world, nd1, "RX2", vial)
    flag = await reuse_flag(world, elsewhere["id"])
    assert flag is not None and {p["kind"] for p in flag["photos"]} == {"vial_label"}
