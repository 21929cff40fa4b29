"""What every answer tells the browser: keep no patient data, sniff nothing, frame nothing, name no
version, and stay on https once there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from demo import photos
from server.app import create_app
from tests.api.world import (
    User,
    World,
    build_world,
    new_fill_id,
    queued_fill,
    rx_body,
    server_config,
    tus_metadata,
    upload,
)

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
async def world(tmp_path: Path, sqlite_url: str) -> AsyncIterator[World]:
    # Headers do not depend on the database: SQLite alone.
    w = await build_world(tmp_path, sqlite_url)
    try:
        yield w
    finally:
        await w.close()


def assert_protected(resp: ClientResponse, *, cache: str = "no-store") -> None:
    """The headers every answer carries, whatever it is."""
    where = (resp.method, resp.url.path, resp.status)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", where
    assert resp.headers.get("X-Frame-Options") == "DENY", where
    assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", ""), where
    assert resp.headers.get("Cache-Control") == cache, (where, resp.headers.get("Cache-Control"))
    assert resp.headers.get("Server") == "telepharmacy", (where, resp.headers.get("Server"))
    assert "Strict-Transport-Security" not in resp.headers, where  # plain http here


async def _video_medium(world: World, tmp_path: Path) -> tuple[User, dict[str, Any]]:
    """A count video on a draft fill, as its technician sees it: a cleaned copy and a poster."""
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RXV"))
    fill_id = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx["id"]})
    video = tmp_path / "count.mp4"
    photos.count_video(video, seconds=1.0)
    resp = await upload(tech, fill_id, "count_video", video.read_bytes(), "count.mp4")
    assert resp.status == 204, await resp.text()
    medium: dict[str, Any] = (await tech.json("GET", f"/api/v1/fills/{fill_id}"))["media"][0]
    assert set(medium["variants"]) >= {"full", "poster"}
    return tech, medium


async def test_every_media_variant_and_range_answer_is_no_store(world: World, tmp_path: Path) -> None:
    """A vial label shows the patient's name: no answer carrying a medium may be kept by the browser."""
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, tech, rx["id"])
    rph = await world.login("nd_rph")
    photos_seen = [(rph, m) for m in (await rph.json("GET", f"/api/v1/fills/{fill['id']}"))["media"]]
    variants = 0
    for user, medium in [*photos_seen, await _video_medium(world, tmp_path)]:
        for variant in medium["variants"]:
            url = f"{medium['url']}?variant={variant}"
            whole = await user.get(url)
            answers = [whole]
            for headers in (
                {"Range": "bytes=0-99"},
                {"Range": "bytes=-10"},
                {"Range": "bytes=999999999-"},
                {"If-None-Match": whole.headers["ETag"]},
            ):
                answers.append(await user.get(url, headers=headers))
            assert [a.status for a in answers] == [200, 206, 206, 416, 304], (medium["kind"], variant)
            for answer in answers:
                assert_protected(answer)
            variants += 1
    assert variants >= 3 * 3 + 2  # three photos in full, 2048 and 320; a video and its poster


async def test_every_answer_carries_the_security_headers_errors_included(world: World) -> None:
    """A 404, a 405, a tus error, a medium, an API answer and the console: nothing sniffed, framed or kept."""
    anon = await world.anonymous()
    tech = await world.device("tech_nd1")
    rph = await world.login("nd_rph")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, tech, rx["id"])
    medium = (await rph.json("GET", f"/api/v1/fills/{fill['id']}"))["media"][0]
    tus = {"Tus-Resumable": "1.0.0"}
    answers = {
        "api 404": (await anon.get("/api/v1/nothing-here"), 404),
        "page 404": (await anon.get("/nothing-here"), 404),
        "console file 404": (await anon.get("/console/nope.js"), 404),
        "405": (await anon.delete("/healthz"), 405),
        "signed out 401": (await anon.get("/api/v1/queue"), 401),
        "tus without its version": (await tech.post("/api/v1/uploads", headers={"Upload-Length": "10"}), 412),
        "tus bad metadata": (
            await tech.post(
                "/api/v1/uploads",
                headers={**tus, "Upload-Length": "10", "Upload-Metadata": tus_metadata(kind="pills")},
            ),
            400,
        ),
        "tus unknown upload": (await tech.request("HEAD", "/api/v1/uploads/nope", headers=tus), 404),
        "media": (await rph.get(medium["url"]), 200),
        "api": (await rph.get("/api/v1/queue"), 200),
        "health": (await anon.get("/healthz"), 200),
    }
    for name, (resp, status) in answers.items():
        assert resp.status == status, (name, resp.status, await resp.text())
        assert_protected(resp)
    # The console's own files hold no patient data: they may be kept, revalidated on each use.
    for path in ("/", "/console/js/main.js", "/console/console.css"):
        page = await anon.get(path)
        assert page.status == 200
        assert_protected(page, cache="no-cache")
        assert "connect-src 'self';" in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("trusted", "forwarded", "hsts"),
    [
        (("127.0.0.1",), "https", True),
        (("127.0.0.0/8",), "http, https", True),  # the value the trusted proxy wrote last
        (("127.0.0.1",), "http", False),
        (("127.0.0.1",), None, False),
        ((), "https", False),  # nobody is trusted to say so
        (("10.0.0.0/8",), "https", False),  # this client is not the proxy
    ],
)
async def test_hsts_is_sent_only_over_https_as_a_trusted_proxy_reports_it(
    tmp_path: Path, sqlite_url: str, trusted: tuple[str, ...], forwarded: str | None, hsts: bool
) -> None:
    world = await build_world(tmp_path, sqlite_url, trusted_proxies=trusted)
    try:
        anon = await world.anonymous()
        headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
        for path in ("/healthz", "/", "/api/v1/nothing-here"):
            resp = await anon.get(path, headers=headers)
            assert resp.headers.get("Strict-Transport-Security") == (HSTS if hsts else None), path
    finally:
        await world.close()


def test_a_malformed_trusted_proxy_stops_the_server_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'nginx' is neither an IP address nor a network"):
        create_app(server_config(tmp_path, "sqlite+aiosqlite://", trusted_proxies=("10.0.0.1", "nginx")))
