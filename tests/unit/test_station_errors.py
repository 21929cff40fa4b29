"""What the station's page reads when the server did not take a request: a refused device token is
said as such, with what to do, and not as a server that cannot be reached."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from remote_site_client.api import ApiError, TokenRefused, Unreachable
from remote_site_client.outbox import Outbox
from remote_site_client.station import errors
from remote_site_client.station.worklist import fill_view

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def _answer_to(aiohttp_client: AiohttpClient, refusal: ApiError) -> tuple[int, dict[str, Any]]:
    async def handler(request: web.Request) -> web.Response:
        raise refusal

    app = web.Application(middlewares=[errors.middleware()])
    app.router.add_post("/api/fills/x/hand-out", handler)
    client = await aiohttp_client(app)
    resp = await client.post("/api/fills/x/hand-out")
    return resp.status, await resp.json()


async def test_a_refused_token_says_to_enrol_again_not_that_the_server_cannot_be_reached(
    aiohttp_client: AiohttpClient,
) -> None:
    status, body = await _answer_to(aiohttp_client, TokenRefused())
    assert (status, body["error"]) == (502, "token_refused")
    assert body["message"] == (
        "The server refused this computer's device token (revoked, or from another server): enrol it "
        "again here, with a new device token from the administrator (Enrol again)."
    )

    status, body = await _answer_to(aiohttp_client, Unreachable("connection refused"))
    assert (status, body["error"]) == (503, "offline")
    assert body["message"].startswith("The server cannot be reached right now (connection refused).")


async def test_offline_a_fill_this_station_holds_no_copy_of_is_said_to_wait_for_the_link(
    tmp_path: Path,
) -> None:
    """Not "There is no such fill here": the fill exists, on the server, which cannot be reached."""

    class Unreached:
        async def fill(self, fill_id: str) -> dict[str, Any]:
            raise Unreachable("connection refused")

    outbox = Outbox(tmp_path / "outbox")
    try:
        with pytest.raises(Unreachable):
            await fill_view(Unreached(), object(), outbox, "0b7c6a52-3f5e-4c1e-9a0e-2f4f4b0f9d11")  # type: ignore[arg-type]
    finally:
        outbox.close()
