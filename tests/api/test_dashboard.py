"""The dashboard's figures: percentiles, queue depth, and who sees which sites and pharmacists."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from server.db.models import AuditEvent, DashboardHour, Fill
from server.db.models import User as DbUser
from server.reports.dashboard import Dashboard
from server.reports.figures import Spell, depth_series, percentile, review_spells
from server.security.principal import Principal, Role
from tests.api.world import User, World, approval, queued_fill, rx_body

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert percentile([], 50) is None
    assert percentile([42.0], 90) == 42.0
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.5
    assert abs((percentile(values, 90) or 0) - 9.1) < 1e-9
    assert percentile([30.0, 10.0, 20.0], 50) == 20.0  # unsorted input


def test_depth_series_counts_open_and_in_review_at_each_step_and_the_peak() -> None:
    minutes = [T0 + dt.timedelta(minutes=m) for m in range(0, 121)]
    open_spells = [
        Spell(T0 - dt.timedelta(hours=1), None),  # open before the window, still open
        Spell(minutes[10], minutes[20]),  # inside the first hour
        Spell(minutes[15], minutes[70]),  # spans the step boundary
        Spell(T0 - dt.timedelta(hours=3), T0 - dt.timedelta(hours=2)),  # gone before the window
    ]
    review = review_spells(
        [
            ("f2", minutes[12], "fill.claimed"),
            ("f2", minutes[20], "fill.decided"),
            ("f3", minutes[50], "fill.claimed"),
            ("f3", minutes[55], "fill.released"),
            ("f3", minutes[65], "fill.claimed"),
            ("f3", minutes[70], "fill.decided"),
            ("f1", minutes[100], "fill.claimed"),
        ]
    )
    points = depth_series(open_spells, review, T0, minutes[120], dt.timedelta(hours=1))
    assert [(p.at, p.open, p.in_review, p.peak_open, p.peak_in_review) for p in points] == [
        (minutes[60], 2, 0, 3, 1),
        (minutes[120], 1, 1, 2, 1),
    ]


async def _approve_or_reject(rph: User, fill_id: str, outcome: str, reasons: list[str] | None = None) -> None:
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill_id}/claim"))["fill"]
    body: dict[str, Any] = (
        approval(claimed) if outcome == "approve" else {"version": claimed["version"], "outcome": outcome}
    )
    if reasons:
        body.update(reason_codes=reasons, note="See photo 2")
    if outcome == "approve":
        await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json("POST", f"/api/v1/fills/{fill_id}/decision", json=body)


async def _backdate(world: World, fill_id: str, submitted: dt.datetime, turnaround_s: int) -> None:
    async with world.services.db.write() as s:
        await s.execute(
            update(Fill)
            .where(Fill.id == fill_id)
            .values(
                submitted_at=submitted,
                queued_at=submitted,
                decided_at=submitted + dt.timedelta(seconds=turnaround_s),
            )
        )


async def _decided_world(world: World) -> dict[str, list[str]]:
    """ND-1: three fills nd_rph decided (60 s, 120 s, 300 s; one rejected); MN-1: one mn_rph approved
    (600 s); ND-2: one fill still waiting."""
    nd1, nd2, mn1 = [await world.device(n) for n in ("tech_nd1", "tech_nd2", "tech_mn1")]
    ids: dict[str, list[str]] = {"ND-1": [], "MN-1": [], "ND-2": []}
    for tech, code, count in ((nd1, "ND-1", 3), (mn1, "MN-1", 1), (nd2, "ND-2", 1)):
        for i in range(count):
            rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"{code}-{i}"))
            ids[code].append((await queued_fill(world, tech, rx["id"], seed=i))["id"])
    nd_rph, mn_rph = await world.login("nd_rph"), await world.login("mn_rph")
    await _approve_or_reject(nd_rph, ids["ND-1"][0], "approve")
    await _approve_or_reject(nd_rph, ids["ND-1"][1], "reject", ["wrong_quantity", "label_error"])
    await _approve_or_reject(nd_rph, ids["ND-1"][2], "approve")
    await _approve_or_reject(mn_rph, ids["MN-1"][0], "approve")
    now = dt.datetime.now(dt.UTC)
    for fill_id, seconds in zip([*ids["ND-1"], ids["MN-1"][0]], (60, 120, 300, 600), strict=True):
        await _backdate(world, fill_id, now - dt.timedelta(hours=2), seconds)
    return ids


async def test_pharmacist_sees_turnaround_of_licensed_sites_and_only_their_own_row(world: World) -> None:
    await _decided_world(world)
    nd = await world.login("nd_rph")
    body = await nd.json("GET", "/api/v1/dashboard?days=1")
    assert body["scope"] == ["ND"]
    assert body["totals"]["decided"] == 3
    assert (body["totals"]["approved"], body["totals"]["rejected"]) == (2, 1)
    assert body["totals"]["open_now"] == 1
    [site] = body["turnaround_by_site"]
    assert (site["code"], site["count"], site["p50_seconds"]) == ("ND-1", 3, 120.0)
    assert abs(site["p90_seconds"] - 264.0) < 1e-6
    assert [(r["name"], r["count"]) for r in body["turnaround_by_pharmacist"]] == [("Nd Rph", 3)]
    assert {r["code"]: r["count"] for r in body["rejections_by_reason"]} == {
        "wrong_quantity": 1,
        "label_error": 1,
    }
    depth = body["queue_depth"]
    assert depth["bucket_seconds"] == 900 and len(depth["points"]) == 96
    assert depth["points"][-1]["open"] == 1
    assert max(p["peak_open"] for p in depth["points"]) >= 1


async def test_colleagues_appear_as_one_row_and_admin_sees_everyone(world: World) -> None:
    await _decided_world(world)
    both = await world.login("both_rph")
    body = await both.json("GET", "/api/v1/dashboard?days=7")
    assert [r["code"] for r in body["turnaround_by_site"]] == ["MN-1", "ND-1"]
    [others] = body["turnaround_by_pharmacist"]
    assert (others["pharmacist_id"], others["name"], others["count"]) == (None, "Other pharmacists", 4)

    admin = await world.login("admin")
    body = await admin.json("GET", "/api/v1/dashboard?days=7")
    assert body["scope"] == "all"
    rows = {r["name"]: r for r in body["turnaround_by_pharmacist"]}
    assert set(rows) == {"Mn Rph", "Nd Rph"}
    assert rows["Mn Rph"]["p50_seconds"] == 600.0
    assert body["totals"]["decided"] == 4 and body["totals"]["p50_seconds"] == 210.0


async def test_dashboard_refuses_technicians_and_bad_periods(world: World) -> None:
    tech = await world.device("tech_nd1")
    assert (await tech.get("/api/v1/dashboard")).status == 403
    nd = await world.login("nd_rph")
    assert (await nd.json("GET", "/api/v1/dashboard?days=0", 400))["error"] == "invalid_input"
    assert (await nd.json("GET", "/api/v1/dashboard?days=x", 400))["error"] == "invalid_input"
    lapsed = await world.login("lapsed_rph")
    body = await lapsed.json("GET", "/api/v1/dashboard")
    assert (
        body["scope"] == [] and body["totals"]["decided"] == 0 and len(body["queue_depth"]["points"]) == 168
    )


async def _principal(world: World, username: str, role: Role, states: set[str]) -> Principal:
    async with world.services.db.read() as s:
        user_id = (await s.execute(select(DbUser.id).where(DbUser.username == username))).scalar_one()
    return Principal(user_id, username, username, role, None, frozenset(states), "session")


async def test_summaries_of_closed_hours_and_days_give_the_figures_a_scan_gives(world: World) -> None:
    ids = await _decided_world(world)
    now = dt.datetime.now(dt.UTC)
    # Decisions spread over days, hours and the open edge of the period, turnarounds of all lengths.
    decided = [*ids["ND-1"], ids["MN-1"][0]]
    ago = [
        dt.timedelta(days=3, hours=5),
        dt.timedelta(hours=26),
        dt.timedelta(hours=3),
        dt.timedelta(minutes=20),
    ]
    for fill_id, back, seconds in zip(decided, ago, (61, 125, 333, 900), strict=True):
        await _backdate(world, fill_id, now - back, seconds)
        # The review the trail records moves with the fill: claimed half way, decided at the end.
        async with world.services.db.write() as s:
            for action, at in (("fill.claimed", seconds / 2), ("fill.decided", seconds)):
                await s.execute(
                    update(AuditEvent)
                    .where(AuditEvent.entity_id == fill_id, AuditEvent.action == action)
                    .values(at=now - back + dt.timedelta(seconds=at))
                )
    viewers = [
        await _principal(world, "admin", Role.ADMIN, set()),
        await _principal(world, "nd_rph", Role.PHARMACIST, {"ND"}),
        await _principal(world, "both_rph", Role.PHARMACIST, {"ND", "MN"}),
    ]
    db = world.services.db
    for days in (1, 7, 30):
        for viewer in viewers:
            scanned = await Dashboard(db, rollup=False).figures(viewer, days=days, now=now)
            summarised = await Dashboard(db).figures(viewer, days=days, now=now)
            # The second time from the summaries kept by the first.
            again = await Dashboard(db).figures(viewer, days=days, now=now)
            assert summarised == scanned == again
    async with db.read() as s:
        kinds = set((await s.execute(select(DashboardHour.kind).distinct())).scalars())
    assert kinds == {"decided", "decided-day", "depth", "depth-day"}
    # Three days back the summaries are what the figures come from: the fill decided then is counted.
    body = await Dashboard(db).figures(viewers[0], days=7, now=now)
    assert body["totals"]["decided"] == 4
