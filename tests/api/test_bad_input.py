"""Hostile and careless input is answered with a 4xx a person can act on, never a server error.

Integers past what the database stores, in paths, queries and bodies; NaN, signalling NaN and numbers
past a float's range; objects where a name is expected; JSON nested until Python's recursion gives up;
text PostgreSQL cannot store; dates with no day after them. On SQLite and PostgreSQL alike, and
without a traceback in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.api.world import User, World, new_fill_id, rx_body, tus_metadata

BIG = 2**63  # past BIGINT
INT32 = 2**31  # past INTEGER (PostgreSQL)
HUGE = 10**25
A_FILL = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


@dataclass(frozen=True)
class Bad:
    who: str  # "anonymous", or a user of the test world
    method: str
    path: str
    json: Any = None
    raw: bytes | None = None  # a body that json.dumps cannot write (NaN, 1e400, nesting)
    headers: dict[str, str] = field(default_factory=dict)


def fill(**over: Any) -> dict[str, Any]:
    return {"id": new_fill_id(), "prescription_id": 1, **over}


def raw_fill(number: str) -> bytes:
    return f'{{"id": "{uuid.uuid4()}", "prescription_id": 1, "counted_quantity": {number}}}'.encode()


def upload_for(**meta: str) -> dict[str, str]:
    values = {"kind": "stock_bottle", "filename": "a.jpg", "sha256": "a" * 64, **meta}
    return {"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": tus_metadata(**values)}


CASES: dict[str, Bad] = {
    # Ids in paths beyond the database's integers.
    "consultation id past bigint": Bad("nd_rph", "GET", f"/api/v1/consultations/{BIG}"),
    "consultation id past integer": Bad("nd_rph", "GET", f"/api/v1/consultations/{INT32}"),
    "accept a huge consultation id": Bad("nd_rph", "POST", f"/api/v1/consultations/{HUGE}/accept"),
    "end a huge consultation id": Bad("tech_nd1", "POST", f"/api/v1/consultations/{INT32}/end", json={}),
    "recording of a huge id": Bad("nd_rph", "GET", f"/api/v1/consultations/{BIG}/recording"),
    "media id past bigint": Bad("nd_rph", "GET", f"/api/v1/media/{BIG}"),
    "media id past integer": Bad("nd_rph", "GET", f"/api/v1/media/{INT32}"),
    "device token id past integer": Bad("admin", "DELETE", f"/api/v1/device-tokens/{INT32}"),
    "fill id with a NUL": Bad("nd_rph", "GET", "/api/v1/fills/abc%00def"),
    "license of a NUL username": Bad(
        "admin",
        "POST",
        "/api/v1/users/nd%00rph/licenses",
        json={"state": "ND", "number": "1", "expires_on": "2030-01-01"},
    ),
    # Queries.
    "queue of a site id past bigint": Bad("nd_rph", "GET", f"/api/v1/queue?site_id={BIG}"),
    "queue of a site id past integer": Bad("nd_rph", "GET", f"/api/v1/queue?site_id={INT32}"),
    "queue of a negative site id": Bad("nd_rph", "GET", "/api/v1/queue?site_id=-1"),
    "dashboard of 10**25 days": Bad("nd_rph", "GET", f"/api/v1/dashboard?days={HUGE}"),
    "audit export to year 9999": Bad("admin", "GET", "/api/v1/audit/export?from=2026-01-01&to=9999-12-31"),
    "audit export from year 9999": Bad("admin", "GET", "/api/v1/audit/export?from=9999-12-31&to=9999-12-31"),
    "audit export that ends before it starts": Bad(
        "admin", "GET", "/api/v1/audit/export?from=2026-12-05&to=2026-12-01"
    ),
    "access report that ends before it starts": Bad(
        "admin",
        "GET",
        "/api/v1/audit/access?patient_name=A%20B&patient_dob=1950-01-01&from=2026-12-05&to=2026-12-01",
    ),
    "counselling report that ends before it starts": Bad(
        "admin", "GET", "/api/v1/reports/counselling?from=2026-12-05&to=2026-12-01"
    ),
    "media variant with a NUL": Bad("nd_rph", "GET", "/api/v1/media/1?variant=full%00"),
    # Fill bodies.
    "fill of a prescription past bigint": Bad(
        "tech_nd1", "POST", "/api/v1/fills", json=fill(prescription_id=BIG)
    ),
    "fill of a prescription past integer": Bad(
        "tech_nd1", "POST", "/api/v1/fills", json=fill(prescription_id=INT32)
    ),
    "fill with a NaN count": Bad("tech_nd1", "POST", "/api/v1/fills", raw=raw_fill("NaN")),
    "fill with an infinite count": Bad("tech_nd1", "POST", "/api/v1/fills", raw=raw_fill("1e400")),
    "fill with a count of 'NaN'": Bad("tech_nd1", "POST", "/api/v1/fills", json=fill(counted_quantity="NaN")),
    "fill with a count of 'sNaN'": Bad(
        "tech_nd1", "POST", "/api/v1/fills", json=fill(counted_quantity="sNaN")
    ),
    "fill with a count of 'Infinity'": Bad(
        "tech_nd1", "POST", "/api/v1/fills", json=fill(counted_quantity="Infinity")
    ),
    "fill with an object as barcode": Bad("tech_nd1", "POST", "/api/v1/fills", json=fill(barcodes=[{}])),
    "fill resubmitting an object": Bad("tech_nd1", "POST", "/api/v1/fills", json=fill(previous_fill_id={})),
    "fill nested 100000 deep": Bad("tech_nd1", "POST", "/api/v1/fills", raw=b"[" * 100_000),
    # Decisions.
    "decision with an object as reason": Bad(
        "nd_rph",
        "POST",
        f"/api/v1/fills/{A_FILL}/decision",
        json={"version": 1, "outcome": "reject", "reason_codes": [{"a": 1}]},
    ),
    "decision on a version past bigint": Bad(
        "nd_rph", "POST", f"/api/v1/fills/{A_FILL}/decision", json={"version": BIG, "outcome": "approve"}
    ),
    "decision on a NaN version": Bad(
        "nd_rph", "POST", f"/api/v1/fills/{A_FILL}/decision", raw=b'{"version": NaN, "outcome": "approve"}'
    ),
    # Prescriptions.
    "prescription of NaN tablets": Bad(
        "tech_nd1", "POST", "/api/v1/prescriptions", json=rx_body("B1", quantity="NaN")
    ),
    "prescription of sNaN tablets": Bad(
        "tech_nd1", "POST", "/api/v1/prescriptions", json=rx_body("B2", quantity="sNaN")
    ),
    "prescription of 1e400 tablets": Bad(
        "tech_nd1",
        "POST",
        "/api/v1/prescriptions",
        raw=json.dumps(rx_body("B3", quantity=0)).replace('"quantity": 0', '"quantity": 1e400').encode(),
    ),
    "prescription for days past bigint": Bad(
        "tech_nd1", "POST", "/api/v1/prescriptions", json=rx_body("B4", days_supply=BIG)
    ),
    "prescription at a site past bigint": Bad(
        "admin", "POST", "/api/v1/prescriptions", json=rx_body("B5", site_id=BIG)
    ),
    "prescription for a patient with a NUL": Bad(
        "tech_nd1", "POST", "/api/v1/prescriptions", json=rx_body("B6", patient_name="Jane\x00Doe")
    ),
    "prescription with a lone surrogate": Bad(
        "tech_nd1",
        "POST",
        "/api/v1/prescriptions",
        raw=json.dumps(rx_body("B7")).replace("Metformin HCl", "Metformin \\ud800").encode(),
    ),
    # Consultations.
    "consultation on a prescription past bigint": Bad(
        "tech_nd1", "POST", "/api/v1/consultations", json={"prescription_id": BIG}
    ),
    "consultation on a prescription past integer": Bad(
        "tech_nd1", "POST", "/api/v1/consultations", json={"prescription_id": INT32}
    ),
    "consultation on an object as fill": Bad(
        "tech_nd1", "POST", "/api/v1/consultations", json={"fill_id": {}}
    ),
    "invitation to a fill id with a NUL": Bad(
        "nd_rph", "POST", "/api/v1/consultations/invite", json={"fill_id": "a\x00b"}
    ),
    "recording upload for a huge consultation": Bad(
        "tech_nd1",
        "POST",
        "/api/v1/uploads",
        headers=upload_for(consultation_id=str(HUGE), kind="consultation_recording", filename="a.mp4"),
    ),
    "photo upload for a fill id with a NUL": Bad(
        "tech_nd1", "POST", "/api/v1/uploads", headers=upload_for(fill_id="a\x00b")
    ),
    # The directory.
    "site in state XYZ": Bad(
        "admin", "POST", "/api/v1/sites", json={"code": "X", "name": "X", "state": "XYZ"}
    ),
    "site with a code too long": Bad(
        "admin", "POST", "/api/v1/sites", json={"code": "X" * 100, "name": "X", "state": "ND"}
    ),
    "user of an object as site": Bad(
        "admin",
        "POST",
        "/api/v1/users",
        json={
            "username": "newtech",
            "display_name": "N",
            "role": "technician",
            "password": "x" * 12,
            "site_code": {},
        },
    ),
    "user with a name too long": Bad(
        "admin",
        "POST",
        "/api/v1/users",
        json={"username": "newrph", "display_name": "N" * 300, "role": "pharmacist", "password": "x" * 12},
    ),
    "license number too long": Bad(
        "admin",
        "POST",
        "/api/v1/users/nd_rph/licenses",
        json={"state": "ND", "number": "9" * 100, "expires_on": "2030-01-01"},
    ),
    # Signing in, anonymously.
    "sign-in nested 4000 deep": Bad("anonymous", "POST", "/api/v1/session", raw=b"[" * 4000),
    "sign-in with an object as name": Bad(
        "anonymous", "POST", "/api/v1/session", json={"username": {"a": 1}, "password": "x"}
    ),
    "sign-in with a NUL in the name": Bad(
        "anonymous", "POST", "/api/v1/session", json={"username": "nd\x00rph", "password": "x"}
    ),
}


async def send(world: World, bad: Bad) -> aiohttp.ClientResponse:
    kw: dict[str, Any] = {"headers": dict(bad.headers)}
    if bad.raw is not None:
        kw["data"] = bad.raw
        kw["headers"]["Content-Type"] = "application/json"
    elif bad.json is not None:
        kw["json"] = bad.json
    if bad.who == "anonymous":
        client = await world.anonymous()
        return await client.request(bad.method, bad.path, **kw)
    user: User = await (world.device(bad.who) if bad.who.startswith("tech_") else world.login(bad.who))
    return await user.request(bad.method, bad.path, **kw)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_bad_input_is_a_clear_4xx_and_no_traceback(
    world: World, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    resp = await send(world, CASES[case])
    text = await resp.text()
    assert 400 <= resp.status < 500, (resp.status, text)
    body = json.loads(text)
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert body["message"].endswith(".") and "Traceback" not in body["message"], body
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors


async def test_a_websocket_cursor_past_the_journal_is_refused_before_the_socket_opens(world: World) -> None:
    site = await world.device("tech_nd1")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        ws = await site.client.ws_connect(
            f"/api/v1/ws?cursor={HUGE}", headers={"Authorization": f"Bearer {site.token}"}
        )
        await ws.close()
    assert refused.value.status == 400


async def test_a_birth_date_outside_a_lifetime_or_a_quantity_of_nothing_is_refused_by_name(
    world: World,
) -> None:
    """Typos a pharmacist's data-entry check might miss, and that would reach the label and the
    patient's history of fills (found by name and date of birth): a date of birth after today or
    before anyone living, and a quantity of zero (refused before too, with a message that said 0
    was allowed)."""
    tech = await world.device("tech_nd1")
    today = dt.datetime.now(dt.UTC).date()
    for number, dob in (("DOB1", today + dt.timedelta(days=1)), ("DOB2", dt.date(today.year - 131, 12, 31))):
        refused = await tech.json(
            "POST", "/api/v1/prescriptions", 400, json=rx_body(number, patient_dob=str(dob))
        )
        assert refused["message"] == (
            f"'patient_dob' must be a date of birth from {today.year - 130}-01-01 to today ({today}),"
            f" not {dob}."
        )
    newborn = await tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("DOB3", patient_dob=str(today))
    )
    assert newborn["patient_dob"] == str(today)
    nothing = await tech.json("POST", "/api/v1/prescriptions", 400, json=rx_body("Q0", quantity=0))
    assert nothing["message"] == "'quantity' must be a number more than 0, at most 100000."
    listed = await tech.json("GET", "/api/v1/prescriptions")
    assert {rx["rx_number"] for rx in listed["prescriptions"]} & {"DOB1", "DOB2", "Q0"} == set()
