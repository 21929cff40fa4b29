"""The drug reference (FDA NDC Directory) through the command line and the API: imported and replaced,
filling in and checking prescriptions, and naming what a scanned bottle is when it is not the
prescribed product."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from server.cli import cmd_migrate, cmd_reference, parser
from server.reference import store
from tests.api.world import User, World, queued_fill, rx_body
from tests.ndc_directory import (
    DISCONTINUED,
    GENERIC_EQUIVALENT,
    NOT_IN_DIRECTORY,
    OTHER_DOSAGE_FORM,
    OTHER_DRUG,
    OTHER_STRENGTH,
    PRESCRIBED,
    SAME_PRODUCT_OTHER_PACKAGE,
    SCHEDULE_II,
    sample,
    scan,
    write_sample,
)


def _cli(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_import_ndc_loads_the_files_and_a_second_import_replaces_the_first(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--data-dir", str(tmp_path / "data"), "--database-url", database_url)
    assert cmd_migrate(_cli("migrate", *db)) == 0
    assert cmd_reference(_cli("reference", "status", *db)) == 0
    assert "no drug reference is loaded" in capsys.readouterr().out

    product_file, package_file = write_sample(tmp_path / "first")
    assert cmd_reference(_cli("reference", "import-ndc", str(product_file), str(package_file), *db)) == 0
    out = capsys.readouterr().out
    assert "7 products, 8 packages" in out and "cp1252" in out

    products, packages = sample()
    fewer = write_sample(
        tmp_path / "second",
        products=products[:2],
        packages=packages[:3],
        package_tail="0000-0000_gone\t0000-0000\t0000-0000-00\tan orphan\r\n",
    )
    assert cmd_reference(_cli("reference", "import-ndc", *map(str, fewer), *db)) == 0
    out = capsys.readouterr().out
    assert "2 products, 3 packages" in out
    assert "package_without_product: 1 (e.g. package file:5)" in out
    assert cmd_reference(_cli("reference", "status", *db)) == 0
    assert "2 products, 3 packages" in capsys.readouterr().out

    missing = cmd_reference(
        _cli("reference", "import-ndc", str(tmp_path / "nope.txt"), str(package_file), *db)
    )
    assert missing == 2
    assert "nope.txt" in capsys.readouterr().err


async def _load(world: World, tmp_path: Path, **rows: Any) -> store.ImportReport:
    return await store.import_ndc(world.services.db, *write_sample(tmp_path / "ndc", **rows))


def _rx(number: str, ndc: str = PRESCRIBED, **over: Any) -> dict[str, Any]:
    return rx_body(number, ndc, **over)


async def _fill_scanning(world: World, tech: User, number: str, ndc: str) -> dict[str, Any]:
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx(number))
    return await queued_fill(world, tech, rx["id"], barcodes=[scan(ndc)])


async def test_without_a_reference_everything_works_and_says_so(world: World) -> None:
    anon = await world.anonymous()
    health = await (await anon.get("/healthz")).json()
    assert health["drug_reference"] is None
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx("RX1"))
    assert rx["reference_check"]["status"] == "no_reference" and rx["drug"] == "Metformin HCl"
    fill = await queued_fill(world, tech, rx["id"], barcodes=[scan(OTHER_DRUG)])
    detail = (await tech.json("GET", f"/api/v1/fills/{fill['id']}"))["product_check_detail"]
    assert fill["product_check"] == "mismatch"
    assert detail["reference"] is None and detail["mismatch_class"] is None
    assert await tech.json("GET", f"/api/v1/reference/ndc/{PRESCRIBED}") == {
        "drug_reference": None,
        "package": None,
    }
    body = {k: v for k, v in _rx("RX2").items() if k != "strength"}
    refused = await tech.json("POST", "/api/v1/prescriptions", 400, json=body)
    assert "'strength' is required" in refused["message"] and "none is loaded" in refused["message"]


async def test_a_scanned_ndc_is_named_and_its_mismatch_classified(world: World, tmp_path: Path) -> None:
    report = await _load(world, tmp_path)
    assert (report.products, report.packages) == (7, 8)
    anon = await world.anonymous()
    health = await (await anon.get("/healthz")).json()
    assert health["drug_reference"]["packages"] == 8

    rph = await world.login("nd_rph")
    for ndc in (PRESCRIBED, "00378180501"):
        named = await rph.json("GET", f"/api/v1/reference/ndc/{ndc}")
        assert named["drug_reference"]["products"] == 7
        assert named["package"]["nonproprietary_name"] == "Metformin Hydrochloride"
        assert named["package"]["package_description"].startswith("100 TABLET, FILM COATED in 1 BOTTLE")
    assert (await rph.json("GET", f"/api/v1/reference/ndc/{NOT_IN_DIRECTORY}", 404))["error"] == "unknown_ndc"
    assert (await rph.json("GET", "/api/v1/reference/ndc/0378180501", 400))["error"] == "invalid_input"

    tech = await world.device("tech_nd1")
    match = await _fill_scanning(world, tech, "RX-MATCH", PRESCRIBED)
    assert match["product_check"] == "match"
    detail = match["product_check_detail"]
    assert detail["mismatch_class"] is None and detail["reference"]["flags"] == []
    expected = detail["reference"]["expected"]
    assert expected["ndc11"] == "00378-1805-01" and expected["strength"] == "500 mg"
    assert (
        expected["labeler"] == "Mylan Pharmaceuticals Inc."
        and expected["dosage_form"] == "TABLET, FILM COATED"
    )
    assert detail["barcodes"][0]["reference"]["ndc11"] == "00378-1805-01"

    for i, (ndc, cls) in enumerate(
        (
            (SAME_PRODUCT_OTHER_PACKAGE, "same_product_other_package"),
            (GENERIC_EQUIVALENT, "generic_equivalent"),
            (OTHER_STRENGTH, "other_strength"),
            (OTHER_DOSAGE_FORM, "other_dosage_form"),
            (OTHER_DRUG, "other_drug"),
        )
    ):
        fill = await _fill_scanning(world, tech, f"RX-{i}", ndc)
        assert fill["product_check"] == "mismatch", ndc
        detail = fill["product_check_detail"]
        assert detail["mismatch_class"] == cls, ndc
        assert detail["barcodes"][0]["mismatch_class"] == cls
        assert detail["barcodes"][0]["reference"]["package_code"] == ndc
    generic = (await _fill_scanning(world, tech, "RX-G", GENERIC_EQUIVALENT))["product_check_detail"]
    assert generic["barcodes"][0]["reference"]["labeler"] == "Laboratoires S\u00e9rvier"
    assert generic["barcodes"][0]["reference"]["proprietary_name"] == "Glucophage\u00ae"


async def test_discontinued_and_unknown_ndcs_are_flagged(world: World, tmp_path: Path) -> None:
    await _load(world, tmp_path)
    tech = await world.device("tech_nd1")
    stopped = (await _fill_scanning(world, tech, "RX-D", DISCONTINUED))["product_check_detail"]
    assert stopped["reference"]["flags"] == [
        {"code": "discontinued", "ndc11": "50090-1234-00", "end_marketing_date": "2020-01-31"}
    ]
    assert stopped["barcodes"][0]["reference"]["discontinued"] is True
    unknown = await _fill_scanning(world, tech, "RX-U", NOT_IN_DIRECTORY)
    detail = unknown["product_check_detail"]
    assert unknown["product_check"] == "mismatch" and detail["mismatch_class"] == "unknown_ndc"
    assert detail["barcodes"][0]["reference"] is None
    assert detail["reference"]["flags"] == [{"code": "unknown_ndc", "ndc10": "0555099902"}]

    # A product barcode that is no drug's (a GTIN without the 03 prefix) is named as such.
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx("RX-G"))
    fill = await queued_fill(world, tech, rx["id"], barcodes=["(01)00614141000029(10)X"])
    assert fill["product_check_detail"]["mismatch_class"] == "not_an_ndc"

    # Prescribed an NDC the reference does not know: the scan cannot be classified, and says why.
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx("RX-X", NOT_IN_DIRECTORY))
    assert rx["reference_check"]["status"] == "flagged"
    assert rx["reference_check"]["flags"] == [{"code": "unknown_ndc", "ndc11": "00555-0999-02"}]
    fill = await queued_fill(world, tech, rx["id"], barcodes=[scan(OTHER_DRUG)])
    detail = fill["product_check_detail"]
    assert detail["mismatch_class"] == "unclassified" and detail["reference"]["expected"] is None
    assert {"code": "expected_unknown", "ndc11": "00555-0999-02"} in detail["reference"]["flags"]


async def test_a_reimport_replaces_what_the_product_check_knows(world: World, tmp_path: Path) -> None:
    await _load(world, tmp_path)
    products, packages = sample()
    report = await store.import_ndc(
        world.services.db,
        *write_sample(tmp_path / "less", products=products[:4], packages=packages[:5]),
    )
    assert (report.products, report.packages) == (4, 5)
    tech = await world.device("tech_nd1")
    gone = (await _fill_scanning(world, tech, "RX-1", OTHER_DRUG))["product_check_detail"]
    assert gone["mismatch_class"] == "unknown_ndc"


async def test_intake_fills_in_from_the_ndc_and_refuses_what_contradicts_it(
    world: World, tmp_path: Path
) -> None:
    await _load(world, tmp_path)
    tech = await world.device("tech_nd1")
    bare = {k: v for k, v in _rx("RX1").items() if k not in ("drug", "strength", "dosage_form")}
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=bare)
    assert (rx["drug"], rx["strength"], rx["dosage_form"]) == (
        "Metformin Hydrochloride",
        "500 mg",
        "tablet, film coated",
    )
    assert rx["reference_check"]["status"] == "agrees"
    assert rx["reference_check"]["filled_in"] == ["drug", "strength", "dosage_form"]

    typed = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx("RX2"))
    assert typed["reference_check"]["status"] == "agrees" and typed["drug"] == "Metformin HCl"

    for field, value, reference in (
        ("strength", "850 mg", "500 mg"),
        ("strength", "500 mcg", "500 mg"),
        ("drug", "Lisinopril", "Metformin Hydrochloride"),
        ("dosage_form", "capsule", "TABLET, FILM COATED"),
    ):
        refused = await tech.json(
            "POST", "/api/v1/prescriptions", 400, json=_rx(f"RX-{value}", **{field: value})
        )
        assert refused["error"] == "reference_disagrees"
        assert refused["detail"] == {"field": field, "entered": value, "reference": reference}
        assert "NDC 00378-1805-01" in refused["message"]

    er = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx("RX3", OTHER_DOSAGE_FORM))
    assert er["reference_check"]["flags"] == [
        {"code": "release_form_not_entered", "reference": "TABLET, EXTENDED RELEASE"}
    ]
    stopped = await tech.json("POST", "/api/v1/prescriptions", 201, json=_rx("RX4", DISCONTINUED))
    assert stopped["reference_check"]["flags"][0]["code"] == "discontinued"

    opioid = {
        **_rx("RX5", SCHEDULE_II, drug="Hydrocodone/APAP", strength="5 mg/325 mg"),
        "dea_schedule": None,
    }
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=opioid)
    assert rx["dea_schedule"] == "CII" and "dea_schedule" in rx["reference_check"]["filled_in"]
    refused = await tech.json(
        "POST", "/api/v1/prescriptions", 400, json={**opioid, "rx_number": "RX6", "dea_schedule": "CIV"}
    )
    assert refused["detail"]["field"] == "dea_schedule" and refused["detail"]["reference"] == "CII"
    refused = await tech.json(
        "POST", "/api/v1/prescriptions", 400, json={**opioid, "rx_number": "RX7", "refills_authorized": 1}
    )
    assert refused["error"] == "too_many_refills"
