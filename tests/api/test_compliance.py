"""The state rules where the work happens: a pharmacist's limit of sites supervised at once, the DEA
schedules a site may dispense, the views a dosage form needs; and the admin's compliance view."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.compliance.checks import Compliance
from server.compliance.rules import RulesError, load_rules
from tests.api.world import (
    PASSWORD,
    REQUIRED,
    User,
    World,
    approval,
    build_world,
    new_fill_id,
    photo,
    queued_fill,
    rx_body,
    upload,
)

TEXAS_LIMIT_SOURCE = "22 Tex. Admin. Code 291.121(c)(4)(B)"
# TX-3's own rules: stricter than Texas's (which, as read, do not settle the schedules).
SITE_RULES = """
[sites.TX-3]
state = "TX"
why = "Company policy: no Schedule II stock at the Sanderson counter."
schedules_allowed = ["CIII", "CIV", "CV"]
"""


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The test network, plus three Texas sites (TX-3 with rules of its own) and a Texas pharmacist."""
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, database_url, site_rules=rules)
    svc = w.services
    for n, name in ((1, "Marfa Drug"), (2, "Alpine Rx"), (3, "Sanderson Pharmacy")):
        w.sites[f"TX-{n}"] = (
            await svc.directory.create_site(None, f"TX-{n}", name, "TX", requires_pv1=False)
        ).id
        await svc.directory.create_user(
            None, f"tech_tx{n}", f"tech_tx{n}", "technician", PASSWORD, site_code=f"TX-{n}"
        )
        w.tokens[f"tech_tx{n}"] = await svc.auth.issue_device_token(None, f"tech_tx{n}", f"TX-{n} counter")
    await svc.directory.create_user(None, "tx_rph", "Tex Pharmacist", "pharmacist", PASSWORD)
    await svc.directory.add_license(None, "tx_rph", "TX", "TX-1234", dt.date.today() + dt.timedelta(days=365))
    try:
        yield w
    finally:
        await w.close()


async def fill_at(world: World, site: int, rx_number: str, **rx: Any) -> dict[str, Any]:
    tech = await world.device(f"tech_tx{site}")
    made = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **rx))
    return await queued_fill(world, tech, made["id"])


async def claim(rph: User, fill: dict[str, Any]) -> Any:
    return await rph.post(f"/api/v1/fills/{fill['id']}/claim")


async def test_the_third_site_claim_of_a_texas_pharmacist_supervising_two_is_refused(world: World) -> None:
    first, second, third = [await fill_at(world, n, f"TX{n}") for n in (1, 2, 3)]
    another_at_first = await fill_at(world, 1, "TX1B")
    rph = await world.login("tx_rph")
    assert (await claim(rph, first)).status == 200
    assert (await claim(rph, second)).status == 200

    refused = await claim(rph, third)
    body = await refused.json()
    assert refused.status == 409 and body["error"] == "supervision_limit", body
    assert TEXAS_LIMIT_SOURCE in body["message"] and "TX-1, TX-2" in body["message"]
    assert body["detail"]["limit"] == 2 and body["detail"]["supervising"] == ["TX-1", "TX-2"]
    # A fill of a site already supervised adds no site; the next in queue skips the third site.
    assert (await claim(rph, another_at_first)).status == 200
    assert (await rph.json("POST", "/api/v1/queue/claim-next"))["fill"] is None
    third_now = await rph.json("GET", f"/api/v1/fills/{third['id']}")
    assert third_now["state"] == "queued"  # nothing changed

    # Released, the second site is no longer supervised: the third may be taken on.
    await rph.json("POST", f"/api/v1/fills/{second['id']}/release")
    taken = await rph.json("POST", "/api/v1/queue/claim-next")
    assert taken["fill"]["id"] in (second["id"], third["id"])


async def test_a_site_stays_supervised_a_while_after_its_fill_is_decided(world: World) -> None:
    first, second, third = [await fill_at(world, n, f"TX{n}") for n in (1, 2, 3)]
    rph = await world.login("tx_rph")
    for fill in (first, second):
        claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
        await rph.step_up()  # the test photos carry no barcode: approving overrides the product check
        await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(claimed))
    assert (await claim(rph, third)).status == 409
    # Another Texas pharmacist is not held back by this one's sites.
    directory = world.services.directory
    await directory.create_user(None, "tx_rph2", "Second Texan", "pharmacist", PASSWORD)
    await directory.add_license(None, "tx_rph2", "TX", "TX-5678", dt.date.today() + dt.timedelta(days=30))
    other = await world.login("tx_rph2")
    assert (await other.post(f"/api/v1/fills/{third['id']}/claim")).status == 200
    await other.json("POST", f"/api/v1/fills/{third['id']}/release")

    world.clock.advance(world.services.config.supervision_minutes * 60 + 1)
    rph = await world.login("tx_rph")  # the old session locked itself meanwhile
    assert (await claim(rph, third)).status == 200


async def test_a_schedule_ii_fill_at_a_site_whose_rules_forbid_it_cannot_be_created(world: World) -> None:
    tech = await world.device("tech_tx3")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("CII-1", dea_schedule="CII"))
    fill_id = new_fill_id()
    resp = await tech.post(
        "/api/v1/fills",
        json={"id": fill_id, "prescription_id": rx["id"], "priority": "routine", "barcodes": []},
    )
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "schedule_not_allowed", body
    assert "Schedule II" in body["message"] and "CIII, CIV, CV" in body["message"]
    assert (await tech.get(f"/api/v1/fills/{fill_id}")).status == 404  # nothing was made

    # A Schedule III prescription at the same site, and a Schedule II one at a site without the rule.
    allowed = await tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("CIII-1", dea_schedule="CIII")
    )
    await tech.json(
        "POST",
        "/api/v1/fills",
        201,
        json={"id": new_fill_id(), "prescription_id": allowed["id"], "priority": "routine", "barcodes": []},
    )
    assert (await fill_at(world, 1, "CII-2", dea_schedule="CII"))["state"] == "queued"


async def test_a_liquid_prescription_requires_its_own_views(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json(
        "POST",
        "/api/v1/prescriptions",
        201,
        json=rx_body(
            "LIQ-1",
            drug="Amoxicillin",
            strength="250 mg/5 mL",
            dosage_form="oral suspension",
            quantity=150,
            directions="Take 5 mL by mouth three times daily",
        ),
    )
    # The site is told which views before it takes any, on the prescription and in its list.
    assert rx["required_media_kinds"] == ["stock_bottle", "measured_volume", "bottle_label"]
    listed = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"]
    assert [r["required_media_kinds"] for r in listed if r["id"] == rx["id"]] == [rx["required_media_kinds"]]
    fill_id = new_fill_id()
    await tech.json(
        "POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx["id"], "priority": "routine"}
    )
    for i, kind in enumerate(REQUIRED):  # the tablet views: stock bottle, pills, vial label
        assert (await upload(tech, fill_id, kind, photo(kind, 900 + i))).status == 204

    refused = await tech.post(f"/api/v1/fills/{fill_id}/submit")
    body = await refused.json()
    assert refused.status == 409 and body["error"] == "media_missing", body
    assert body["detail"]["missing"] == ["measured_volume", "bottle_label"]

    for i, kind in enumerate(("measured_volume", "bottle_label")):
        assert (await upload(tech, fill_id, kind, photo(kind, 950 + i))).status == 204
    queued = await tech.json("POST", f"/api/v1/fills/{fill_id}/submit")
    assert queued["state"] == "queued"
    assert {"measured_volume", "bottle_label"} <= {m["kind"] for m in queued["media"]}


async def test_a_tablet_prescription_does_not_need_a_liquid_s_views(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("TAB-1"))
    assert rx["required_media_kinds"] == ["stock_bottle", "pills", "vial_label"]
    assert (await queued_fill(world, tech, rx["id"]))["state"] == "queued"


async def test_the_admin_sees_a_site_s_rules_with_sources_and_its_figures(world: World) -> None:
    first = await fill_at(world, 3, "TX3")
    rph = await world.login("tx_rph")
    assert (await claim(rph, first)).status == 200
    admin = await world.login("admin")

    view = await admin.json("GET", f"/api/v1/sites/{world.sites['TX-3']}/compliance")
    assert view["site"]["code"] == "TX-3" and view["site_rules"] is True
    rules = view["rules"]["rules"]
    assert rules["max_sites_per_pharmacist"] == {
        "value": 2,
        "source": rules["max_sites_per_pharmacist"]["source"],
    }
    assert TEXAS_LIMIT_SOURCE in rules["max_sites_per_pharmacist"]["source"]
    assert (
        rules["schedules_allowed"]["value"] == ["CIII", "CIV", "CV"]
        and "Sanderson" in rules["schedules_allowed"]["site"]
    )
    assert rules["photos"]["value"] == "unknown" and rules["photos"]["read"]
    assert view["figures"]["supervising_now"] == [
        {"pharmacist": "Tex Pharmacist", "sites_now": ["TX-3"], "limit": 2}
    ]
    assert view["figures"]["oldest_record"]["fill"] is not None

    nd = await admin.json("GET", f"/api/v1/sites/{world.sites['ND-1']}/compliance")
    assert nd["site_rules"] is False and nd["rules"]["state"] == "ND"
    assert (await admin.get("/api/v1/sites/999999/compliance")).status == 404
    assert (await rph.get(f"/api/v1/sites/{world.sites['TX-3']}/compliance")).status == 403


async def test_site_rules_naming_another_state_than_the_site_s_are_refused(
    world: World, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong_site_rules.toml"
    wrong.write_text(
        '[sites.ND-1]\nstate = "TX"\nwhy = "x"\nmax_sites_per_pharmacist = 1\n', encoding="utf-8"
    )
    with pytest.raises(RulesError, match="state = 'TX', but the site ND-1 is in ND"):
        await Compliance(load_rules(None, wrong)).check_sites(world.services.db)
    await world.services.compliance.check_sites(world.services.db)  # TX-3's own rules name its state
