"""Counselling before a fill is handed out: due where the site's state requires it (North Dakota: new and
refill fills, by video, no decline written in the rule; Ohio: offered, the patient may decline; Iowa:
new prescriptions, the medium unsettled), recorded by a counselling call, a pharmacist's telephone call
or the site's note that the patient declined, and the report an inspector reads."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from sqlalchemy import select, update

from server.db.models import AuditEvent, Fill
from tests.api.world import PASSWORD, User, World, approval, queued_fill, rx_body

NOTE = "Counselled on taking it with meals; patient asked about missed doses."


async def _site(world: World, code: str, state: str) -> tuple[str, str]:
    """A site of the world's kind in another state, with its technician's device and a pharmacist
    licensed there; returns (technician, pharmacist)."""
    d, svc = world.services.directory, world.services
    world.sites[code] = (await d.create_site(None, code, f"{code} Pharmacy", state, requires_pv1=False)).id
    tech, rph = f"tech_{code.lower().replace('-', '')}", f"{state.lower()}_rph"
    await d.create_user(None, tech, tech, "technician", PASSWORD, site_code=code)
    world.tokens[tech] = await svc.auth.issue_device_token(None, tech, f"{code} counter")
    await d.create_user(None, rph, rph, "pharmacist", PASSWORD)
    await d.add_license(None, rph, state, f"{state}-1", dt.date.today() + dt.timedelta(days=365))
    return tech, rph


async def _approved(world: World, tech_name: str, rph_name: str, rx_number: str, **rx: Any) -> dict[str, Any]:
    """A fill of the technician's site, approved by the pharmacist; returns it as its site sees it."""
    tech = await world.device(tech_name)
    made = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **rx))
    fill = await queued_fill(world, tech, made["id"])
    rph = await world.login(rph_name)
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(claimed))
    return dict(await tech.json("GET", f"/api/v1/fills/{fill['id']}"))


async def _counselling_call(world: World, tech: User, rph: User, fill_id: str, *, connect: bool) -> int:
    """The pharmacist invites the fill's site to a counselling call, the site answers, media flows (or
    not), and the pharmacist hangs up; returns the consultation's id."""
    c = await rph.json(
        "POST", "/api/v1/consultations/invite", 201, json={"fill_id": fill_id, "kind": "counsel"}
    )
    await tech.json("POST", f"/api/v1/consultations/{c['id']}/answer")
    if connect:
        await tech.json("POST", f"/api/v1/consultations/{c['id']}/connected")
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "hangup"})
    return int(c["id"])


async def _hand_out(tech: User, fill_id: str) -> tuple[int, dict[str, Any]]:
    resp = await tech.post(f"/api/v1/fills/{fill_id}/hand-out")
    return resp.status, await resp.json()


async def test_a_north_dakota_fill_waits_for_counselling_and_a_call_that_connected_releases_it(
    world: World,
) -> None:
    fill = await _approved(world, "tech_nd1", "nd_rph", "RX-CN1")
    assert (fill["state"], fill["counselling"]) == ("approved", "due")
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")

    status, refused = await _hand_out(tech, fill["id"])
    assert status == 409 and refused["error"] == "counselling_due"
    assert "counselled" in refused["message"] and "61-02-08" in refused["message"]
    # A call that never connected counsels nobody.
    await _counselling_call(world, tech, rph, fill["id"], connect=False)
    assert (await tech.json("GET", f"/api/v1/fills/{fill['id']}"))["counselling"] == "due"
    listed = {f["id"]: f for f in (await tech.json("GET", "/api/v1/fills"))["fills"]}
    assert (listed[fill["id"]]["state"], listed[fill["id"]]["counselling"]) == ("approved", "due")
    assert (await _hand_out(tech, fill["id"]))[0] == 409

    # One that connected is the record; the note the pharmacist writes after hanging up joins it.
    call = await _counselling_call(world, tech, rph, fill["id"], connect=True)
    await rph.json("POST", f"/api/v1/consultations/{call}/end", json={"reason": "hangup", "note": NOTE})
    seen = await tech.json("GET", f"/api/v1/fills/{fill['id']}")
    assert seen["counselling"] == "counselled_video"
    record = seen["counselling_record"]
    assert record["kind"] == "video" and record["consultation_id"] == call and record["has_note"]
    assert record["pharmacist_id"] is not None and record["duration_seconds"] is not None
    assert NOTE not in str(seen)  # the note stays in the record, not in what the site reads

    status, handed = await _hand_out(tech, fill["id"])
    assert status == 200 and handed["state"] == "handed_out" and handed["handed_out_at"]
    assert (await _hand_out(tech, fill["id"]))[0] == 200  # a retried hand-out changes nothing
    # The trail has the record and the hand-out, by ids; never the note.
    async with world.services.db.read() as s:
        trail = (
            (await s.execute(select(AuditEvent).where(AuditEvent.entity_id == fill["id"]))).scalars().all()
        )
    actions = [e.action for e in trail]
    assert actions.count("counselling.recorded") == 1 and actions.count("fill.handed_out") == 1
    assert "counselling.note" in actions
    assert all(NOTE not in str(e.detail) for e in trail)


async def test_only_the_fills_site_hands_it_out_and_only_once_approved(world: World) -> None:
    tech = await world.device("tech_mn1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX-CN2"))
    queued = await queued_fill(world, tech, rx["id"])
    status, refused = await _hand_out(tech, queued["id"])
    assert status == 409 and refused["error"] == "not_approved"
    # Minnesota's counselling rule is unknown: it requires nothing, so an approved fill goes at once.
    fill = await _approved(world, "tech_mn1", "mn_rph", "RX-CN3")
    assert fill["counselling"] == "not_required"
    assert (await _hand_out(await world.device("tech_nd1"), fill["id"]))[0] == 404
    assert (await (await world.login("mn_rph")).post(f"/api/v1/fills/{fill['id']}/hand-out")).status == 403
    status, handed = await _hand_out(tech, fill["id"])
    assert status == 200 and (handed["state"], handed["counselling"]) == ("handed_out", "not_required")


async def test_the_patient_may_decline_in_ohio_but_not_in_north_dakota(world: World) -> None:
    oh_tech_name, _ = await _site(world, "OH-1", "OH")
    fill = await _approved(world, oh_tech_name, "oh_rph", "RX-CN4")
    assert fill["counselling"] == "due"
    oh_tech = await world.device(oh_tech_name)
    url = f"/api/v1/fills/{fill['id']}/counselling"
    assert (await oh_tech.post(url, json={"kind": "declined"})).status == 400  # who declined?
    # Only the site records a decline; the pharmacist cannot speak for the counter.
    assert (
        await (await world.login("oh_rph")).post(url, json={"kind": "declined", "declined_by": "patient"})
    ).status == 403
    declined = await oh_tech.json("POST", url, 201, json={"kind": "declined", "declined_by": "agent"})
    assert declined["counselling"] == "declined"
    assert declined["counselling_record"]["declined_by"] == "agent"
    again = await oh_tech.post(url, json={"kind": "declined", "declined_by": "patient"})
    assert again.status == 409 and (await again.json())["error"] == "counselling_recorded"
    assert (await _hand_out(oh_tech, fill["id"]))[0] == 200

    nd_fill = await _approved(world, "tech_nd1", "nd_rph", "RX-CN5")
    nd_tech = await world.device("tech_nd1")
    resp = await nd_tech.post(
        f"/api/v1/fills/{nd_fill['id']}/counselling", json={"kind": "declined", "declined_by": "patient"}
    )
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "decline_not_allowed"
    assert "North Dakota" in body["message"]
    # Nor does a telephone call count there: North Dakota counsels by audio and video.
    phoned = await (await world.login("nd_rph")).post(
        f"/api/v1/fills/{nd_fill['id']}/counselling", json={"kind": "phone", "note": NOTE}
    )
    assert phoned.status == 403 and (await phoned.json())["error"] == "video_required"
    assert (await _hand_out(nd_tech, nd_fill["id"]))[0] == 409
    assert (await nd_tech.json("GET", f"/api/v1/fills/{nd_fill['id']}"))["counselling"] == "due"


async def test_a_pharmacist_records_telephone_counselling_where_video_is_not_required(world: World) -> None:
    ia_tech_name, _ = await _site(world, "IA-1", "IA")
    # Iowa counsels on new prescriptions only: a refill is not due.
    refill = await _approved(world, ia_tech_name, "ia_rph", "RX-CN6", fill_type="refill")
    assert refill["counselling"] == "not_required"
    fill = await _approved(world, ia_tech_name, "ia_rph", "RX-CN7")
    assert fill["counselling"] == "due"
    url = f"/api/v1/fills/{fill['id']}/counselling"
    tech = await world.device(ia_tech_name)
    assert (await tech.post(url, json={"kind": "phone"})).status == 403
    assert (await (await world.login("nd_rph")).post(url, json={"kind": "phone"})).status == 404
    phoned = await (await world.login("ia_rph")).json(
        "POST", url, 201, json={"kind": "phone", "note": NOTE, "duration_seconds": 240}
    )
    assert phoned["counselling"] == "counselled_phone"
    assert phoned["counselling_record"]["duration_seconds"] == 240
    assert (await _hand_out(tech, fill["id"]))[0] == 200


async def test_the_report_lists_every_decline_and_no_fill_handed_out_without_its_record(world: World) -> None:
    oh_tech_name, _ = await _site(world, "OH-1", "OH")
    oh_tech = await world.device(oh_tech_name)
    declined = await _approved(world, oh_tech_name, "oh_rph", "RX-CN8")
    await oh_tech.json(
        "POST",
        f"/api/v1/fills/{declined['id']}/counselling",
        201,
        json={"kind": "declined", "declined_by": "patient"},
    )
    await _hand_out(oh_tech, declined["id"])
    # Refused while due: it is neither handed out nor in the report.
    waiting = await _approved(world, oh_tech_name, "oh_rph", "RX-CN9")
    assert (await _hand_out(oh_tech, waiting["id"]))[0] == 409

    today = dt.date.today().isoformat()
    query = f"site_id={world.sites['OH-1']}&from={today}&to={today}"
    admin = await world.login("admin")
    report = await admin.json("GET", f"/api/v1/reports/counselling?{query}")
    assert report["handed_out"] == 1 and report["handed_out_counselling_required"] == 1
    assert report["handed_out_without_record"] == []
    assert [(d["fill_id"], d["declined_by"], d["rx_number"]) for d in report["declined"]] == [
        (declined["id"], "patient", "RX-CN8")
    ]
    resp = await admin.get(f"/api/v1/reports/counselling.csv?{query}")
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert [r[:2] for r in rows[1:-1]] == [["declined", declined["id"]]]
    # Another site's report has none of them; a technician reads no report.
    other = await admin.json(
        "GET", f"/api/v1/reports/counselling?site_id={world.sites['ND-1']}&from={today}&to={today}"
    )
    assert other["declined"] == [] and other["handed_out"] == 0
    assert (await oh_tech.get(f"/api/v1/reports/counselling?{query}")).status == 403
    # The site's compliance view counts them too.
    view = await admin.json("GET", f"/api/v1/sites/{world.sites['OH-1']}/compliance")
    assert view["figures"]["counselling"] == {"fills_due": 1, "declined_this_month": 1}


async def test_a_fill_approved_before_counselling_was_kept_is_not_held_back(world: World) -> None:
    fills = [await _approved(world, "tech_nd1", "nd_rph", f"RX-CN1{n}") for n in (0, 1)]
    async with world.services.db.write() as s:
        # As migration 0021 leaves the fills it finds.
        await s.execute(
            update(Fill)
            .where(Fill.id.in_([f["id"] for f in fills]))
            .values(counselling=None, counselling_required=None)
        )
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    assert (await _hand_out(tech, fills[0]["id"]))[0] == 200
    # A counselling call on the other ends as any call does, and counts.
    await _counselling_call(world, tech, rph, fills[1]["id"], connect=True)
    assert (await tech.json("GET", f"/api/v1/fills/{fills[1]['id']}"))["counselling"] == "counselled_video"


async def test_a_rejected_fill_owes_no_counselling_and_is_never_handed_out(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX-CN12"))
    fill = await queued_fill(world, tech, rx["id"])
    assert fill["counselling"] == "due"  # North Dakota: due before it is handed out, once approved
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    body = {"version": claimed["version"], "outcome": "reject", "reason_codes": ["image_unclear"]}
    rejected = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=body)
    assert (rejected["state"], rejected["counselling"]) == ("rejected", "not_required")
    status, refused = await _hand_out(tech, fill["id"])
    assert status == 409 and refused["error"] == "not_approved"


async def test_a_call_the_site_asks_for_on_the_prescription_counsels_its_approved_fill(world: World) -> None:
    fill = await _approved(world, "tech_nd1", "nd_rph", "RX-CN13")
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    asked = {"kind": "counsel", "prescription_id": fill["prescription"]["id"]}
    c = await tech.json("POST", "/api/v1/consultations", 201, json=asked)
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await tech.json("POST", f"/api/v1/consultations/{c['id']}/connected")
    await tech.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "hangup"})
    seen = await tech.json("GET", f"/api/v1/fills/{fill['id']}")
    assert (
        seen["counselling"] == "counselled_video" and seen["counselling_record"]["consultation_id"] == c["id"]
    )
    assert seen["counselling_record"]["has_note"] is False
    # A live look at the tray is no counselling.
    other = await _approved(world, "tech_nd1", "nd_rph", "RX-CN14")
    look = await rph.json(
        "POST", "/api/v1/consultations/invite", 201, json={"fill_id": other["id"], "kind": "live_look"}
    )
    await tech.json("POST", f"/api/v1/consultations/{look['id']}/answer")
    await tech.json("POST", f"/api/v1/consultations/{look['id']}/connected")
    await rph.json("POST", f"/api/v1/consultations/{look['id']}/end", json={"reason": "hangup"})
    assert (await tech.json("GET", f"/api/v1/fills/{other['id']}"))["counselling"] == "due"


async def test_a_fill_due_counselling_says_whether_the_patient_may_decline_and_whether_a_phone_call_counts(
    world: World,
) -> None:
    nd = await _approved(world, "tech_nd1", "nd_rph", "RX-CN15")
    decline, phone = nd["counselling_options"]["decline"], nd["counselling_options"]["phone"]
    # North Dakota requires counselling and no rule read lets the patient decline it; its rule is by video.
    assert decline["allowed"] is False and "North Dakota requires counselling" in decline["why_not"]
    assert "61-02-08-03(5)" in decline["why_not"]
    assert phone["allowed"] is False and "audio and video" in phone["why_not"] and phone["source"]
    # The server refuses with the same words the fill gave.
    refused = await (await world.device("tech_nd1")).post(
        f"/api/v1/fills/{nd['id']}/counselling", json={"kind": "declined", "declined_by": "patient"}
    )
    assert refused.status == 403 and decline["why_not"] in (await refused.json())["message"]

    oh_tech, _ = await _site(world, "OH-1", "OH")
    oh = (await _approved(world, oh_tech, "oh_rph", "RX-CN16"))["counselling_options"]
    assert oh["decline"] == {"allowed": True, "why_not": None, "source": oh["decline"]["source"]}
    assert "4729:5-18-05" in oh["decline"]["source"] and oh["phone"]["allowed"] is False
    ia_tech, _ = await _site(world, "IA-1", "IA")
    ia = await _approved(world, ia_tech, "ia_rph", "RX-CN17")
    assert ia["counselling_options"]["phone"]["allowed"] is True
    assert ia["counselling_options"]["decline"]["allowed"] is False
    assert "Iowa requires counselling" in ia["counselling_options"]["decline"]["why_not"]

    # Nothing to offer where nothing is due: a fill that needs none, and one counselled already.
    assert (await _approved(world, "tech_mn1", "mn_rph", "RX-CN18"))["counselling_options"] is None
    phoned = await (await world.login("ia_rph")).json(
        "POST", f"/api/v1/fills/{ia['id']}/counselling", 201, json={"kind": "phone"}
    )
    assert phoned["counselling"] == "counselled_phone" and phoned["counselling_options"] is None


async def test_a_pharmacist_lists_the_fills_due_counselling_at_their_sites_oldest_first(world: World) -> None:
    nd = [(await _approved(world, "tech_nd1", "nd_rph", f"RX-CN2{n}"))["id"] for n in range(3)]
    await _approved(world, "tech_mn1", "mn_rph", "RX-CN23")  # Minnesota: nothing due
    ia_tech, _ = await _site(world, "IA-1", "IA")
    ia = (await _approved(world, ia_tech, "ia_rph", "RX-CN24"))["id"]

    rph = await world.login("nd_rph")
    first = await rph.json("GET", "/api/v1/counselling/due?limit=2")
    second = await rph.json("GET", f"/api/v1/counselling/due?limit=2&after={first['next']}")
    assert [f["id"] for f in first["fills"] + second["fills"]] == nd and second["next"] is None
    row = first["fills"][0]
    assert (row["rx_number"], row["site"]["code"], row["counselling"]) == ("RX-CN20", "ND-1", "due")
    assert row["patient_initials"] == "J. P." and "Jane" not in str(first)
    assert row["counselling_options"]["phone"]["allowed"] is False

    # Each pharmacist sees the sites of their licensed states; a fill counselled leaves the list.
    assert (await (await world.login("mn_rph")).json("GET", "/api/v1/counselling/due"))["fills"] == []
    ia_rph = await world.login("ia_rph")
    listed = (await ia_rph.json("GET", "/api/v1/counselling/due"))["fills"]
    assert [(f["id"], f["counselling_options"]["phone"]["allowed"]) for f in listed] == [(ia, True)]
    await ia_rph.json("POST", f"/api/v1/fills/{ia}/counselling", 201, json={"kind": "phone", "note": NOTE})
    assert (await ia_rph.json("GET", "/api/v1/counselling/due"))["fills"] == []
    # The site and an administrator have their own views; a bad cursor is a clear error.
    assert (await (await world.device("tech_nd1")).get("/api/v1/counselling/due")).status == 403
    bad = await rph.get("/api/v1/counselling/due?after=nonsense")
    assert bad.status == 400 and (await bad.json())["error"] == "bad_cursor"
