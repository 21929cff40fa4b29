"""Lists page by key: `?after=<next>&limit=N`, each row once in order while rows are added meanwhile."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from tests.api.world import User, World, build_world, queued_fill, rx_body

_RX_NUMBERS = itertools.count(1)


async def _fill(world: World, tech: User, priority: str = "routine") -> str:
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"RX{next(_RX_NUMBERS)}"))
    return str((await queued_fill(world, tech, rx["id"], priority=priority))["id"])


async def _page(
    user: User, path: str, key: str, after: str | None, limit: int
) -> tuple[list[Any], str | None]:
    query = f"limit={limit}" + (f"&after={after}" if after else "")
    body = await user.json("GET", f"{path}{'&' if '?' in path else '?'}{query}")
    return body[key], body["next"]


async def test_a_pharmacist_pages_through_the_queue_while_fills_arrive_and_sees_each_once(
    world: World,
) -> None:
    tech = await world.device("tech_nd1")
    rph = await world.login("nd_rph")
    for priority in ("routine", "waiting", "delivery", "routine", "waiting", "routine", "delivery"):
        await _fill(world, tech, priority)
    before = [f["id"] for f in (await rph.json("GET", "/api/v1/queue"))["fills"]]
    assert len(before) == 7

    seen: list[dict[str, Any]] = []
    rows, cursor = await _page(rph, "/api/v1/queue", "fills", None, 3)
    seen += rows
    # Routine fills queued while the pharmacist pages: they sort after every routine fill already listed.
    arrived = [await _fill(world, tech), await _fill(world, tech)]
    while cursor:
        rows, cursor = await _page(rph, "/api/v1/queue", "fills", cursor, 3)
        seen += rows
        if len(seen) == 6:
            arrived.append(await _fill(world, tech, "delivery"))

    ids = [f["id"] for f in seen]
    assert len(ids) == len(set(ids)), "a row was listed twice"
    assert set(before) <= set(ids), "a row that was there when paging began was skipped"
    assert set(arrived) <= set(ids)
    # The pages read together are the queue in its order, as one read of it gives now.
    assert ids == [f["id"] for f in (await rph.json("GET", "/api/v1/queue?limit=1000"))["fills"]]
    assert [f["priority"] for f in seen[:2]] == ["waiting", "waiting"]


async def test_a_site_pages_its_fills_newest_first_while_it_makes_new_ones(world: World) -> None:
    tech = await world.device("tech_nd1")
    made = [await _fill(world, tech) for _ in range(5)]
    seen: list[str] = []
    made_meanwhile: list[str] = []
    rows, cursor = await _page(tech, "/api/v1/fills", "fills", None, 2)
    seen += [f["id"] for f in rows]
    while cursor:
        made_meanwhile.append(await _fill(world, tech))  # newest of all: it tops the next read, not this one
        rows, cursor = await _page(tech, "/api/v1/fills", "fills", cursor, 2)
        seen += [f["id"] for f in rows]
    assert seen == made[::-1]

    # Filters hold across pages; the last page says there is no next.
    other = await world.device("tech_nd2")
    await _fill(world, other)
    rows, cursor = await _page(tech, "/api/v1/fills?state=queued", "fills", None, 1000)
    assert cursor is None and [f["id"] for f in rows] == (made + made_meanwhile)[::-1]


async def test_prescriptions_users_sites_and_tokens_page_by_key(world: World) -> None:
    tech = await world.device("tech_nd1")
    admin = await world.login("admin")
    for i in range(5):
        await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"RXP{i}"))
    for path, key, who in (
        ("/api/v1/prescriptions", "prescriptions", tech),
        ("/api/v1/users", "users", admin),
        ("/api/v1/sites", "sites", admin),
        ("/api/v1/tokens", "tokens", admin),
    ):
        whole = (await who.json("GET", path))[key]
        assert len(whole) >= 3, path
        paged: list[Any] = []
        rows, cursor = await _page(who, path, key, None, 2)
        paged += rows
        while cursor:
            rows, cursor = await _page(who, path, key, cursor, 2)
            paged += rows
        assert paged == whole, path
    assert [rx["rx_number"] for rx in (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"]] == [
        f"RXP{i}" for i in reversed(range(5))
    ]
    # A pharmacist's pages hold only the sites of their licensed states.
    rph = await world.login("mn_rph")
    rows, cursor = await _page(rph, "/api/v1/sites", "sites", None, 1)
    assert [s["code"] for s in rows] == ["MN-1"] and cursor is None


async def test_a_site_s_prescription_is_found_by_its_rx_number_however_old(world: World) -> None:
    """A refill's prescription was entered weeks ago, far past the newest page: asked for by its Rx
    number, it is found at its own site only, blanks around the number as entry drops them."""
    tech, other = await world.device("tech_nd1"), await world.device("tech_mn1")
    old = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RXOLD-1"))
    for i in range(3):
        await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"RXNEW{i}"))
    newest = (await tech.json("GET", "/api/v1/prescriptions?limit=2"))["prescriptions"]
    assert "RXOLD-1" not in [rx["rx_number"] for rx in newest]
    found = await tech.json("GET", "/api/v1/prescriptions?rx_number=%20RXOLD-1%20&limit=2")
    assert [rx["id"] for rx in found["prescriptions"]] == [old["id"]] and found["next"] is None
    assert (await tech.json("GET", "/api/v1/prescriptions?rx_number=RXOLD"))["prescriptions"] == []
    assert (await other.json("GET", "/api/v1/prescriptions?rx_number=RXOLD-1"))["prescriptions"] == []
    refused = await tech.json("GET", "/api/v1/prescriptions?rx_number=" + "9" * 33, 400)
    assert "rx_number" in refused["message"]


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "after",
    [
        "not-a-cursor",
        "%%%",
        _cursor("fills", "2026-01-01T00:00:00+00:00", "x"),  # another list's cursor
        _cursor("queue", 1, "2026-01-01T00:00:00+00:00"),  # a part missing
        _cursor("queue", "one", "2026-01-01T00:00:00+00:00", "x"),  # a rank that is no number
        _cursor("queue", 1, "yesterday", "x"),  # no time
        _cursor("queue", 1, "2026-01-01T00:00:00", "x"),  # a time with no zone
        _cursor("queue", True, "2026-01-01T00:00:00+00:00", "x"),
        _cursor("queue", 2**40, "2026-01-01T00:00:00+00:00", "x"),  # past what the column holds
        _cursor("queue", 1, "0001-01-01T00:00:00+05:00", "x"),  # before the first UTC time there is
        _cursor("queue", 1, "2026-01-01T00:00:00+00:00", "\ud800"),  # no text at all
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 600,
    ],
)
async def test_a_bad_cursor_is_refused_with_a_clear_error(world: World, after: str) -> None:
    rph = await world.login("nd_rph")
    body = await rph.json("GET", f"/api/v1/queue?after={after}", 400)
    assert body["error"] == "bad_cursor"
    assert body["detail"]["field"] == "after"
    assert "next" in body["message"]


async def test_a_page_size_out_of_bounds_is_refused(world: World) -> None:
    tech = await world.device("tech_nd1")
    for limit in ("0", "1001", "ten"):
        body = await tech.json("GET", f"/api/v1/fills?limit={limit}", 400)
        assert body["detail"]["field"] == "limit"


async def test_prescriptions_waiting_for_data_entry_verification_page_after_the_queue_s_first(
    tmp_path: Any, database_url: str
) -> None:
    world = await build_world(tmp_path, database_url, pv1=True)
    try:
        tech = await world.device("tech_nd1")
        rph = await world.login("nd_rph")
        entered = [
            (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"RXV{i}")))["id"]
            for i in range(5)
        ]
        first = await rph.json("GET", "/api/v1/queue")
        assert [r["prescription_id"] for r in first["data_entry"]] == entered
        assert first["data_entry_next"] is None
        seen: list[int] = []
        rows, cursor = await _page(rph, "/api/v1/queue/data-entry", "data_entry", None, 2)
        seen += [r["prescription_id"] for r in rows]
        while cursor:
            rows, cursor = await _page(rph, "/api/v1/queue/data-entry", "data_entry", cursor, 2)
            seen += [r["prescription_id"] for r in rows]
        assert seen == entered
        # A later page of the queue's fills carries no data-entry rows: they have pages of their own.
        later = await rph.json(
            "GET", f"/api/v1/queue?after={_cursor('queue', 0, '2000-01-01T00:00:00+00:00', '')}"
        )
        assert "data_entry" not in later and later["fills"] == []
    finally:
        await world.close()
