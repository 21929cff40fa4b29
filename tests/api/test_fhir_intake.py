"""Prescriptions from a site's pharmacy system over FHIR R4: the shapes a real system sends, every
refusal an OperationOutcome with nothing stored, and the same message twice one prescription."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from server.db.models import Prescription
from tests.api.world import User, World

NDC = "http://hl7.org/fhir/sid/ndc"


async def _integration(world: World, site: str = "ND-1") -> User:
    token = await world.services.auth.issue_integration_token(None, site, "pharmacy system")
    client = await world.anonymous()
    return User(client, f"integration.{site.lower()}", token=token)


def _patient(pid: str = "pat1") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Patient", "given": ["Jane", "Q."]}],
        "birthDate": "1948-02-29",
    }


def _practitioner(pid: str = "doc1") -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": pid,
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        "name": [{"text": "Dr. Ruth Prescriber"}],
    }


def _medication(mid: str = "med1", ndc: str = "0378-1805-01") -> dict[str, Any]:
    return {
        "resourceType": "Medication",
        "id": mid,
        "code": {
            "coding": [
                {"system": NDC, "code": ndc, "display": "Metformin HCl 500 mg oral tablet"},
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "861007"},
            ],
            "text": "Metformin HCl",
        },
        "form": {"text": "tablet"},
        "ingredient": [
            {
                "itemCodeableConcept": {"text": "metformin hydrochloride"},
                "strength": {
                    "numerator": {"value": 500, "unit": "mg"},
                    "denominator": {"value": 1, "unit": "tablet"},
                },
            }
        ],
    }


def _request(rx: str = "FH100", *, subject: str, requester: str, medication: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999.rx", "value": rx}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": subject},
        "requester": {"reference": requester},
        "medicationReference": {"reference": medication},
        "dosageInstruction": [{"text": "Take one tablet by mouth twice daily with meals"}],
        "dispenseRequest": {
            "quantity": {"value": 60, "unit": "tablet"},
            "expectedSupplyDuration": {
                "value": 30,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            },
            "numberOfRepeatsAllowed": 2,
        },
    }


def contained_request(rx: str = "FH100") -> dict[str, Any]:
    body = _request(rx, subject="#pat1", requester="#doc1", medication="#med1")
    body["contained"] = [_patient(), _practitioner(), _medication()]
    return body


def referenced_bundle(*rxs: str, kind: str = "transaction") -> dict[str, Any]:
    """A bundle whose requests reference the Patient, Practitioner and Medication entries by fullUrl."""
    entries: list[dict[str, Any]] = [
        {"fullUrl": "urn:uuid:0f1e3c1e-6c5c-4a44-9d44-8d8d0d0d0001", "resource": _patient()},
        {"fullUrl": "urn:uuid:0f1e3c1e-6c5c-4a44-9d44-8d8d0d0d0002", "resource": _practitioner()},
        {"fullUrl": "urn:uuid:0f1e3c1e-6c5c-4a44-9d44-8d8d0d0d0003", "resource": _medication()},
    ]
    for rx in rxs:
        entries.append(
            {
                "resource": _request(
                    rx,
                    subject="urn:uuid:0f1e3c1e-6c5c-4a44-9d44-8d8d0d0d0001",
                    requester="urn:uuid:0f1e3c1e-6c5c-4a44-9d44-8d8d0d0d0002",
                    medication="urn:uuid:0f1e3c1e-6c5c-4a44-9d44-8d8d0d0d0003",
                ),
                "request": {"method": "POST", "url": "MedicationRequest"},
            }
        )
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


async def _count(world: World) -> int:
    async with world.services.db.read() as s:
        return int((await s.execute(select(func.count()).select_from(Prescription))).scalar_one())


async def _send(user: User, path: str, body: Any, status: int) -> dict[str, Any]:
    resp = await user.post(path, data=json.dumps(body), headers={"Content-Type": "application/fhir+json"})
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/fhir+json"
    return dict(json.loads(text))


async def test_a_medication_request_with_contained_resources_becomes_the_sites_prescription(
    world: World,
) -> None:
    system = await _integration(world)
    sent = contained_request()
    created = await _send(system, "/api/v1/fhir/MedicationRequest", sent, 201)
    assert created["resourceType"] == "MedicationRequest" and created["id"]

    tech = await world.device("tech_nd1")
    listed = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"]
    rx = next(p for p in listed if p["rx_number"] == "FH100")
    assert (rx["patient_name"], rx["patient_dob"], rx["drug"], rx["strength"], rx["dosage_form"]) == (
        "Jane Q. Patient",
        "1948-02-29",
        "Metformin HCl",
        "500 mg",
        "tablet",
    )
    assert rx["prescriber"] == "Dr. Ruth Prescriber, NPI 1234567893"
    assert (rx["expected_ndc"], rx["quantity"], rx["days_supply"]) == ("00378180501", 60.0, 30)
    assert rx["directions"] == "Take one tablet by mouth twice daily with meals"
    # The message is kept verbatim as the prescription's source.
    async with world.services.db.read() as s:
        row = (await s.execute(select(Prescription).where(Prescription.rx_number == "FH100"))).scalar_one()
    assert row.source_kind == "fhir" and json.loads(row.source_body or "") == sent

    # The same message again is the same prescription; a different one under its identifier is refused.
    again = await _send(system, "/api/v1/fhir/MedicationRequest", sent, 200)
    assert again["id"] == created["id"]
    changed = copy.deepcopy(sent)
    changed["dispenseRequest"]["quantity"]["value"] = 90
    refused = await _send(system, "/api/v1/fhir/MedicationRequest", changed, 409)
    assert refused["resourceType"] == "OperationOutcome" and refused["issue"][0]["code"] == "conflict"
    assert await _count(world) == 1


@pytest.mark.parametrize("kind", ["transaction", "collection"])
async def test_a_bundle_with_two_requests_referencing_its_entries_is_taken_whole(
    world: World, kind: str
) -> None:
    system = await _integration(world)
    answer = await _send(system, "/api/v1/fhir", referenced_bundle("FH200", "FH201", kind=kind), 201)
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created", "201 Created"]
    assert await _count(world) == 2


def _drop(body: dict[str, Any], *path: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def _born(body: dict[str, Any], when: dt.date) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["contained"][0]["birthDate"] = when.isoformat()
    return out


TOMORROW = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)

BAD_REQUESTS = {
    "no identifier": (lambda b: _drop(b, "identifier"), "MedicationRequest.identifier"),
    "no birth date": (lambda b: _drop(b, "contained", 0, "birthDate"), "Patient.birthDate"),
    "a birth date after today": (lambda b: _born(b, TOMORROW), "Patient.birthDate"),
    "no quantity": (
        lambda b: _drop(b, "dispenseRequest", "quantity"),
        "MedicationRequest.dispenseRequest.quantity",
    ),
    "no NDC": (lambda b: _drop(b, "contained", 2, "code", "coding", 0), "MedicationRequest.medication"),
    "a quantity that is not a number": (
        lambda b: {**b, "dispenseRequest": {**b["dispenseRequest"], "quantity": {"value": "sixty"}}},
        "MedicationRequest.dispenseRequest.quantity.value",
    ),
    "a supply in months": (
        lambda b: {
            **b,
            "dispenseRequest": {**b["dispenseRequest"], "expectedSupplyDuration": {"value": 1, "code": "mo"}},
        },
        "MedicationRequest.dispenseRequest.expectedSupplyDuration",
    ),
    "a subject that points nowhere": (
        lambda b: {**b, "subject": {"reference": "#nobody"}},
        "MedicationRequest.subject",
    ),
    "a Patient, not a MedicationRequest": (lambda b: _patient(), "resourceType"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_each_bad_request_is_an_operation_outcome_naming_its_element(world: World, case: str) -> None:
    system = await _integration(world)
    spoil, element = BAD_REQUESTS[case]
    outcome = await _send(system, "/api/v1/fhir/MedicationRequest", spoil(contained_request()), 400)
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(element in e for issue in outcome["issue"] for e in issue["expression"]), outcome
    assert all(issue["severity"] == "error" for issue in outcome["issue"])
    assert await _count(world) == 0


async def test_one_bad_request_in_a_bundle_stores_nothing_and_names_its_entry(world: World) -> None:
    system = await _integration(world)
    bundle = referenced_bundle("FH300", "FH301")
    del bundle["entry"][4]["resource"]["dosageInstruction"]
    outcome = await _send(system, "/api/v1/fhir", bundle, 400)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[4].resource.dosageInstruction.text"]
    assert await _count(world) == 0
    # Not JSON at all.
    resp = await system.post(
        "/api/v1/fhir", data=b"<Bundle/>", headers={"Content-Type": "application/fhir+json"}
    )
    assert resp.status == 400 and (await resp.json(content_type=None))["resourceType"] == "OperationOutcome"


async def test_only_a_sites_integration_sends_and_only_for_its_own_site(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    for user in (tech, rph):
        assert (await user.post("/api/v1/fhir", json=referenced_bundle("FH400"))).status == 403
    anonymous = await world.anonymous()
    assert (await anonymous.post("/api/v1/fhir", json=referenced_bundle("FH400"))).status == 401
    system = await _integration(world, "MN-1")
    await _send(system, "/api/v1/fhir", referenced_bundle("FH400"), 201)
    async with world.services.db.read() as s:
        rx = (await s.execute(select(Prescription).where(Prescription.rx_number == "FH400"))).scalar_one()
    mn = next(site for site in await world.services.directory.sites() if site.code == "MN-1")
    assert rx.site_id == mn.id
    # The integration's token opens nothing else: not the fills, not the live events.
    for path in ("/api/v1/fills", "/api/v1/prescriptions", "/api/v1/ws"):
        assert (await system.get(path)).status == 403, path
