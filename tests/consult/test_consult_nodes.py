"""Signalling between two server instances on one PostgreSQL database: the pharmacist's websocket on one,
the site's on the other. Offers bigger than a NOTIFY payload cross; no one else hears anything; nothing of
the signalling is journaled, audited or left behind; either side's hang-up or drop ends both."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from aiohttp import ClientWebSocketResponse
from sqlalchemy import func, select

from server.consultations.mailbox import CHANNEL, EXPIRY_SECONDS, MAX_PENDING, PostgresMailbox
from server.db.models import AuditEvent, ConsultationSignal, Event
from tests.api.world import Nodes, User, connect
from tests.consult.wire import drain, next_of

pytestmark = pytest.mark.postgres

# An SDP with many candidates, well over PostgreSQL's 8000-byte NOTIFY payload limit.
BIG_SDP = "v=0\r\n" + "".join(
    f"a=candidate:{i} 1 udp 2122260223 10.0.{i % 250}.1 5{i:04d} typ host\r\n" for i in range(400)
)
MARK = "sdp-marker-7f3a"


async def _joined_call(
    n: Nodes,
) -> tuple[int, ClientWebSocketResponse, ClientWebSocketResponse, User]:
    """The site (on B) asks, the pharmacist (on A) accepts; both join on their own instance."""
    site = await n.device(n.b, "tech_nd1")
    rph = await n.login(n.world.server, "nd_rph")
    site_ws, rph_ws = await connect(site), await connect(rph)
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    await site_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    assert (await next_of(site_ws, "consult.joined"))["peer_joined"] is False
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await next_of(site_ws, "consultation.accepted", "consult.accepted")  # committed on A, heard on B
    await rph_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    assert (await next_of(rph_ws, "consult.joined"))["peer_joined"] is True
    assert (await next_of(site_ws, "consult.peer_joined"))["role"] == "pharmacist"
    return c["id"], site_ws, rph_ws, rph


async def test_signalling_crosses_instances_to_the_two_parties_only(nodes: Nodes) -> None:
    n = nodes
    site = await n.device(n.b, "tech_nd1")
    rph = await n.login(n.world.server, "nd_rph")
    site_ws = await connect(site)
    # Others who may see the consultation's events, on both instances.
    outsiders = [
        await connect(await n.login(n.world.server, "both_rph")),
        await connect(await n.login(n.b, "both_rph")),
    ]
    outsiders.append(await connect(await n.device(n.world.server, "tech_nd2")))

    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    cid = c["id"]
    await site_ws.send_json({"type": "consult.join", "consultation_id": cid})
    assert (await next_of(site_ws, "consult.joined"))["peer_joined"] is False
    await rph.json("POST", f"/api/v1/consultations/{cid}/accept")
    await next_of(site_ws, "consultation.accepted", "consult.accepted")

    # The offer leaves the site (on B) before the pharmacist joined anywhere: it waits, whatever its size.
    offer = {"type": "offer", "sdp": BIG_SDP + f"a={MARK}\r\n"}
    assert len(json.dumps(offer)) > 8000
    await site_ws.send_json(
        {"type": "consult.signal", "consultation_id": cid, "description": offer, "generation": 0}
    )
    for ws in outsiders[:2]:  # a pharmacist who is not a party can neither join nor signal
        await ws.send_json({"type": "consult.join", "consultation_id": cid})
        await ws.send_json({"type": "consult.signal", "consultation_id": cid, "description": offer})

    rph_ws = await connect(rph)  # on A
    await rph_ws.send_json({"type": "consult.join", "consultation_id": cid})
    assert (await next_of(rph_ws, "consult.joined"))["peer_joined"] is True
    got = await next_of(rph_ws, "consult.signal")
    assert got["description"] == offer and got["from"] == "site" and got["generation"] == 0
    assert (await next_of(site_ws, "consult.peer_joined"))["role"] == "pharmacist"

    # Both ways, in order, while both are joined on different instances.
    answer = {"type": "answer", "sdp": BIG_SDP + f"a={MARK}-answer\r\n"}
    candidate = {"candidate": f"candidate:1 1 udp 1 192.0.2.1 9 typ host {MARK}", "sdpMid": "0"}
    await rph_ws.send_json(
        {"type": "consult.signal", "consultation_id": cid, "description": answer, "generation": 0}
    )
    await rph_ws.send_json({"type": "consult.signal", "consultation_id": cid, "candidate": candidate})
    first, second = await next_of(site_ws, "consult.signal"), await next_of(site_ws, "consult.signal")
    assert first["description"] == answer and first["from"] == "pharmacist"
    assert second["candidate"] == candidate
    await site_ws.send_json({"type": "consult.signal", "consultation_id": cid, "candidate": candidate})
    assert (await next_of(rph_ws, "consult.signal"))["candidate"] == candidate
    await rph_ws.send_json(
        {"type": "consult.signal", "consultation_id": cid, "restart": True, "generation": 0}
    )
    restart = await next_of(site_ws, "consult.signal")
    assert restart["restart"] is True and restart["generation"] == 0

    for ws in outsiders:
        seen = await drain(ws)
        kinds = [m["type"] for m in seen]
        assert "consult.signal" not in kinds and "consult.peer_joined" not in kinds
        assert MARK not in json.dumps(seen) and "sdp" not in json.dumps(seen)
    async with n.world.services.db.read() as s:
        assert (await s.execute(select(func.count()).select_from(ConsultationSignal))).scalar_one() == 0
        events = (await s.execute(select(Event.payload))).scalars().all()
        audit = (await s.execute(select(AuditEvent.detail))).scalars().all()
    assert MARK not in json.dumps(events) + json.dumps(audit)
    assert "sdp" not in json.dumps(events) + json.dumps(audit)
    for ws in (site_ws, rph_ws, *outsiders):
        await ws.close()


@pytest.mark.parametrize("who", ["site", "pharmacist"])
async def test_a_hang_up_on_either_instance_ends_the_call_on_both(nodes: Nodes, who: str) -> None:
    cid, site_ws, rph_ws, rph = await _joined_call(nodes)
    hanging, other = (site_ws, rph_ws) if who == "site" else (rph_ws, site_ws)
    t0 = time.monotonic()
    await hanging.send_json({"type": "consult.hangup", "consultation_id": cid})
    here = await next_of(hanging, "consult.ended", "consultation.ended")
    there = await next_of(other, "consult.ended", "consultation.ended")
    assert time.monotonic() - t0 < 5
    assert {here.get("reason", here.get("end_reason")), there.get("reason", there.get("end_reason"))} == {
        "hangup"
    }
    record = await rph.json("GET", f"/api/v1/consultations/{cid}")
    assert record["state"] == "ended" and record["end_reason"] == "hangup"
    # The instance of the party that did not hang up closed its room: a late signal is refused.
    await other.send_json({"type": "consult.signal", "consultation_id": cid, "candidate": {}})
    assert (await next_of(other, "consult.error"))["consultation_id"] == cid
    await site_ws.close()
    await rph_ws.close()


@pytest.mark.parametrize("who", ["site", "pharmacist"])
async def test_a_dropped_websocket_on_one_instance_ends_the_call_on_the_other(nodes: Nodes, who: str) -> None:
    cid, site_ws, rph_ws, rph = await _joined_call(nodes)
    dropping, other = (site_ws, rph_ws) if who == "site" else (rph_ws, site_ws)
    t0 = time.monotonic()
    await dropping.close()
    ended = await next_of(other, "consult.ended", "consultation.ended")
    assert time.monotonic() - t0 < 5
    assert ended.get("end_reason", ended.get("reason")) == "dropped"
    assert (await rph.json("GET", f"/api/v1/consultations/{cid}"))["end_reason"] == "dropped"
    await other.close()


async def test_waiting_signals_are_bounded_expire_and_go_when_the_call_ends(nodes: Nodes) -> None:
    site = await nodes.device(nodes.b, "tech_nd1")
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    mailbox = nodes.world.services.signalling.mailbox
    assert isinstance(mailbox, PostgresMailbox)
    now = dt.datetime.now(dt.UTC)
    mailbox.clock = lambda: now
    for i in range(MAX_PENDING):
        assert await mailbox.post(c["id"], "pharmacist", {"type": "consult.signal", "i": i})
    assert not await mailbox.post(c["id"], "pharmacist", {"type": "consult.signal", "i": "one too many"})
    assert [m["i"] for m in await mailbox.take(c["id"], "pharmacist")] == list(range(MAX_PENDING))
    assert await mailbox.take(c["id"], "pharmacist") == []  # delivered once

    await mailbox.post(c["id"], "pharmacist", {"type": "consult.signal", "i": "stale"})
    now += dt.timedelta(seconds=EXPIRY_SECONDS + 1)
    assert await mailbox.take(c["id"], "pharmacist") == []  # expired: never delivered
    await mailbox.post(c["id"], "site", {"type": "consult.signal", "i": "old"})
    now += dt.timedelta(seconds=EXPIRY_SECONDS + 1)
    await mailbox.post(c["id"], "pharmacist", {"type": "consult.signal", "i": "new"})  # purges the old
    async with nodes.world.services.db.read() as s:
        left = (await s.execute(select(ConsultationSignal.party))).scalars().all()
    assert left == ["pharmacist"]

    await site.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "cancelled"})
    async with nodes.world.services.db.read() as s:
        assert (await s.execute(select(func.count()).select_from(ConsultationSignal))).scalar_one() == 0


async def test_a_missed_wake_up_is_found_by_the_safety_net(nodes: Nodes) -> None:
    cid, site_ws, rph_ws, _ = await _joined_call(nodes)
    mailbox = nodes.world.services.signalling.mailbox  # node A, the pharmacist's
    assert isinstance(mailbox, PostgresMailbox)
    # No NOTIFY on the signals' channel reaches node A any more.
    await mailbox.bus._conn.remove_listener(CHANNEL, mailbox.bus._on_notify)
    candidate = {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0"}
    await site_ws.send_json({"type": "consult.signal", "consultation_id": cid, "candidate": candidate})
    got = await next_of(rph_ws, "consult.signal", seconds=3)
    assert got["candidate"] == candidate
    await site_ws.close()
    await rph_ws.close()
