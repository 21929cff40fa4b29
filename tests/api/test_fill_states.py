"""The lifecycle makes exactly the transitions of the table in server.fills.rules, read back from the
audit trail, and refuses a transition to any role the table does not name."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from server.db.models import AuditEvent, ConsoleSession, utcnow
from server.errors import Forbidden
from server.fills.lifecycle import FillService
from server.fills.requests import DecisionInput, NewFill
from server.fills.rules import CREATE, FLAGGED, SYSTEM, TRANSITIONS, FillState, Transition
from server.security.principal import Principal, Role
from tests.api.world import PASSWORD, World, approval, new_fill_id, queued_fill, rx_body


class Clock:
    """A day ahead of the server's own lease sweeper, so only this test expires the leases it makes."""

    def __init__(self) -> None:
        self.now = utcnow() + dt.timedelta(days=1)

    def __call__(self) -> dt.datetime:
        return self.now


async def _pharmacist(world: World, username: str) -> Principal:
    return (await world.services.auth.login(username, PASSWORD, "test")).principal


async def _stepped_up(world: World, who: Principal, at: dt.datetime) -> None:
    """The pharmacist proved who they are at `at` (this test's own time, a day ahead of the server's)."""
    async with world.services.db.write() as s:
        await s.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id == who.session_id)
            .values(stepped_up_at=at, proved_at=at)
        )


async def _transitions_in_the_trail(world: World) -> list[tuple[str, Transition]]:
    """Each change of a fill's row the audit trail records, as (fill id, the table's row it matches)."""
    async with world.services.db.read() as s:
        rows = (
            (
                await s.execute(
                    select(AuditEvent).where(AuditEvent.entity_type == "fill").order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    seen: dict[str, tuple[FillState | None, int]] = defaultdict(lambda: (None, 0))
    made = []
    for row in rows:
        if row.action == CREATE.action:
            state, version = CREATE.target, 1
        elif "version" in row.detail:
            state, version = FillState(row.detail["state"]), row.detail["version"]
        else:
            continue  # about the fill's evidence, not its state
        before, before_version = seen[row.entity_id]
        if row.action == FLAGGED:
            # A waiting fill's flags changed by the server: the next version, the same state.
            assert (state, version, row.actor) == (before, before_version + 1, SYSTEM), row.detail
            seen[row.entity_id] = (state, version)
            continue
        if version == before_version:
            # The same change announced once more (a submitted fill's fill.queued).
            assert state is before, (row.action, row.detail)
            continue
        assert version == before_version + 1, (row.action, row.detail)
        role = row.actor.split(":")[0]
        by = SYSTEM if role == SYSTEM else Role(role)
        matches = [
            t
            for t in TRANSITIONS
            if t.action == row.action
            and t.target is state
            and t.by == by
            and (before in t.sources if t.sources else before is None)
        ]
        assert len(matches) == 1, (row.action, before, state, by)
        made.append((row.entity_id, matches[0]))
        seen[row.entity_id] = (state, version)
    return made


async def _counselled_by_video(world: World, fill_id: str) -> None:
    """The fill's pharmacist counsels its patient in a call from the fill that connects, then hangs up."""
    rph, tech = await world.login("nd_rph"), await world.device("tech_nd1")
    c = await rph.json("POST", "/api/v1/consultations/invite", 201, json={"fill_id": fill_id})
    await tech.json("POST", f"/api/v1/consultations/{c['id']}/answer")
    await tech.json("POST", f"/api/v1/consultations/{c['id']}/connected")
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "hangup"})


async def test_the_lifecycle_makes_every_transition_of_the_table_and_no_other(world: World) -> None:
    clock = Clock()
    fills = FillService(world.services.db, world.services.config, clock=clock)
    lease = dt.timedelta(seconds=world.services.config.lease_seconds + 1)
    tech = await world.device("tech_nd1")
    body = rx_body("RX300", refills_authorized=99)  # several fills of one prescription
    rx = (await tech.json("POST", "/api/v1/prescriptions", 201, json=body))["id"]
    nd, both = await _pharmacist(world, "nd_rph"), await _pharmacist(world, "both_rph")

    # Claimed, put back, claimed again and approved; the fill queued meanwhile is flagged by the approval.
    queued = await queued_fill(world, tech, rx, seed=1)
    first = queued["id"]
    second = (await queued_fill(world, tech, rx, seed=2))["id"]
    await fills.claim(nd, first)
    await fills.release(nd, first)
    taken = await fills.claim(nd, first)
    await _stepped_up(world, nd, clock.now)  # a product-check flag is overridden
    await fills.decide(nd, first, DecisionInput.parse({**approval(queued), "version": taken.fill.version}))
    # Handed out once its counselling is recorded (North Dakota requires it): here by a call.
    await _counselled_by_video(world, first)
    await fills.hand_out(await world.services.auth.from_device_token(world.tokens["tech_nd1"]), first)

    # A lease that runs out is returned by the server; one taken over by another pharmacist before the
    # server saw it run out is claimed from review; then rejected.
    await fills.claim(nd, second)
    clock.now += lease
    assert await fills.expire_leases() == 1
    await fills.claim(nd, second)
    clock.now += lease
    taken = await fills.claim(both, second)
    await _stepped_up(world, both, clock.now)  # a day after the sign-in, by this test's clock
    await fills.decide(both, second, DecisionInput(taken.fill.version, "reject", ("image_unclear",), None))

    made = await _transitions_in_the_trail(world)
    assert {t for _, t in made} == set(TRANSITIONS)
    async with world.services.db.read() as s:
        flagged = (await s.execute(select(AuditEvent.entity_id).where(AuditEvent.action == FLAGGED))).all()
    assert flagged == [(second,)]
    assert [t.action for fill_id, t in made if fill_id == second] == [
        "fill.created",
        "fill.submitted",
        "fill.claimed",
        "fill.released",
        "fill.claimed",
        "fill.claimed",
        "fill.decided",
    ]


async def test_claims_of_the_next_fill_at_once_take_each_fill_once_and_a_lapsed_one_again(
    world: World,
) -> None:
    clock = Clock()
    fills = FillService(world.services.db, world.services.config, clock=clock)
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX310", refills_authorized=9))
    queued = [await queued_fill(world, tech, rx["id"], seed=20 + i) for i in range(3)]
    nd, both = await _pharmacist(world, "nd_rph"), await _pharmacist(world, "both_rph")

    # Four claims from two pharmacists at once: three fills, each taken once, at its next version and for
    # the pharmacist who took it; the fourth finds nothing.
    actors = [nd, both, nd, both]
    records = await asyncio.gather(*(fills.claim_next(a) for a in actors))
    taken = {r.fill.id: (r.fill.claimed_by, r.fill.state, r.fill.version) for r in records if r}
    assert sorted(taken) == sorted(f["id"] for f in queued) and records.count(None) == 1
    for actor, record in zip(actors, records, strict=True):
        if record is not None:
            assert taken[record.fill.id] == (actor.user_id, "in_review", queued[0]["version"] + 1)

    # Claims whose leases ran out are claimed again, the first in queue order first.
    clock.now += dt.timedelta(seconds=world.services.config.lease_seconds + 1)
    again = await fills.claim_next(nd)
    assert again is not None and again.fill.id == queued[0]["id"] and again.fill.claimed_by == nd.user_id


async def test_the_submitted_fill_is_audited_in_the_state_it_is_stored_in(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX301")))["id"]
    fill = await queued_fill(world, tech, rx)
    async with world.services.db.read() as s:
        events = (
            (
                await s.execute(
                    select(AuditEvent)
                    .where(AuditEvent.entity_id == fill["id"], AuditEvent.action.like("fill.%"))
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    submitted = next(e for e in events if e.action == "fill.submitted")
    assert submitted.detail["state"] == fill["state"] == FillState.QUEUED
    assert submitted.detail["version"] == fill["version"]


@pytest.mark.parametrize("role", [Role.TECHNICIAN, Role.ADMIN])
async def test_only_a_pharmacist_claims_releases_and_decides(world: World, role: Role) -> None:
    tech = await world.device("tech_nd1")
    rx = (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX302")))["id"]
    fill = await queued_fill(world, tech, rx)
    fill_id = fill["id"]
    if role is Role.TECHNICIAN:
        actor = await world.services.auth.from_device_token(world.tokens["tech_nd1"])
    else:
        actor = await _pharmacist(world, "admin")
    assert actor is not None and actor.role is role
    fills = world.services.fills
    attempts: list[Callable[[], Awaitable[Any]]] = [
        lambda: fills.claim(actor, fill_id),
        lambda: fills.claim_next(actor),
        lambda: fills.heartbeat(actor, fill_id),
        lambda: fills.release(actor, fill_id),
        lambda: fills.decide(actor, fill_id, DecisionInput(fill["version"], "approve", (), None)),
        lambda: fills.decide(actor, fill_id, DecisionInput(fill["version"], "reject", ("other",), "Torn.")),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            await attempt()
    seen = await tech.json("GET", f"/api/v1/fills/{fill_id}")
    assert seen["state"] == FillState.QUEUED and seen["claimed_by"] is None


@pytest.mark.parametrize("who", ["nd_rph", "admin"])
async def test_only_the_sites_technician_creates_and_submits(world: World, who: str) -> None:
    tech = await world.device("tech_nd1")
    rx = (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX303")))["id"]
    draft = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": draft, "prescription_id": rx})
    actor = await _pharmacist(world, who)
    fills = world.services.fills
    with pytest.raises(Forbidden):
        await fills.create(actor, NewFill(id=new_fill_id(), prescription_id=rx))
    with pytest.raises(Forbidden):
        await fills.submit(actor, draft)
    assert (await tech.json("GET", f"/api/v1/fills/{draft}"))["state"] == FillState.DRAFT
