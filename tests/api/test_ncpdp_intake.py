"""NCPDP SCRIPT NewRx from a site's pharmacy system: read into a prescription and kept verbatim;
external entities and entity expansion refused before anything is read."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from server.db.models import Prescription
from tests.api.world import User, World

NEW_RX = """<?xml version="1.0" encoding="UTF-8"?>
<Message xmlns="http://www.ncpdp.org/schema/SCRIPT" DatatypesVersion="2017071" TransportVersion="2017071">
  <Header>
    <To Qualifier="P">7701630</To>
    <From Qualifier="C">6666666</From>
    <MessageID>msg-{order}</MessageID>
    <SentTime>2026-12-05T14:05:00Z</SentTime>
    <PrescriberOrderNumber>{order}</PrescriberOrderNumber>
  </Header>
  <Body>
    <NewRx>
      <Patient>
        <HumanPatient>
          <Name><LastName>Patient</LastName><FirstName>Jane</FirstName><MiddleName>Q.</MiddleName></Name>
          <Gender>F</Gender>
          <DateOfBirth><Date>1948-02-29</Date></DateOfBirth>
        </HumanPatient>
      </Patient>
      <Prescriber>
        <NonVeterinarian>
          <Identification><NPI>1234567893</NPI></Identification>
          <Name><LastName>Prescriber</LastName><FirstName>Ruth</FirstName></Name>
        </NonVeterinarian>
      </Prescriber>
      <MedicationPrescribed>
        <DrugDescription>Metformin HCl</DrugDescription>
        <DrugCoded>
          <ProductCode><Code>{ndc}</Code><Qualifier>ND</Qualifier></ProductCode>
          <Strength>
            <StrengthValue>500</StrengthValue>
            <StrengthForm><Code>C42998</Code></StrengthForm>
            <StrengthUnitOfMeasure><Code>C28253</Code></StrengthUnitOfMeasure>
          </Strength>
        </DrugCoded>
        <Quantity><Value>{quantity}</Value><CodeListQualifier>38</CodeListQualifier></Quantity>
        <DaysSupply>30</DaysSupply>
        <WrittenDate><Date>2026-12-05</Date></WrittenDate>
        <Substitutions>0</Substitutions>
        <NumberOfRefills>2</NumberOfRefills>
        <Sig><SigText>Take 1 tablet by mouth twice daily with meals</SigText></Sig>
      </MedicationPrescribed>
    </NewRx>
  </Body>
</Message>
"""


def new_rx(order: str = "SC100", *, ndc: str = "00378180501", quantity: str = "60") -> bytes:
    return NEW_RX.format(order=order, ndc=ndc, quantity=quantity).encode()


async def _integration(world: World) -> User:
    token = await world.services.auth.issue_integration_token(None, "ND-1", "pharmacy system")
    return User(await world.anonymous(), "integration.nd-1", token=token)


async def _send(user: User, body: bytes, status: int) -> str:
    resp = await user.post("/api/v1/ncpdp/NewRx", data=body, headers={"Content-Type": "application/xml"})
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/xml"
    return text


async def _stored(world: World) -> list[Prescription]:
    async with world.services.db.read() as s:
        return list((await s.execute(select(Prescription))).scalars())


async def test_a_new_rx_becomes_the_sites_prescription_kept_verbatim(world: World) -> None:
    system = await _integration(world)
    answer = await _send(system, new_rx(), 201)
    assert "<Code>000</Code>" in answer
    (rx,) = await _stored(world)
    assert (rx.rx_number, rx.patient_name, rx.patient_dob.isoformat()) == (
        "SC100",
        "Jane Q. Patient",
        "1948-02-29",
    )
    assert (rx.drug, rx.strength, rx.dosage_form, rx.expected_ndc) == (
        "Metformin HCl",
        "500 mg",
        "tablet",
        "00378180501",
    )
    assert (float(rx.quantity), rx.days_supply) == (60.0, 30)
    assert rx.prescriber == "Ruth Prescriber, NPI 1234567893"
    assert rx.directions == "Take 1 tablet by mouth twice daily with meals"
    assert rx.source_kind == "ncpdp" and rx.source_body == new_rx().decode()

    # Sent again: the same prescription. Changed under the same order number: refused.
    assert "<Code>000</Code>" in await _send(system, new_rx(), 200)
    refused = await _send(system, new_rx(quantity="90"), 409)
    assert "<Code>900</Code>" in refused
    assert len(await _stored(world)) == 1


async def test_an_external_entity_is_refused_and_nothing_is_read(world: World, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENTS")
    system = await _integration(world)
    hostile = (
        new_rx()
        .decode()
        .replace(
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE Message [<!ENTITY x SYSTEM "file://{secret}">]>',
        )
        .replace("Metformin HCl", "&x;")
    )
    answer = await _send(system, hostile.encode(), 400)
    assert "<Code>900</Code>" in answer and "TOP-SECRET" not in answer
    assert await _stored(world) == []


async def test_a_billion_laughs_is_refused_at_once(world: World) -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]>'
        "<Message><Body><NewRx>&lol9;</NewRx></Body></Message>"
    )
    system = await _integration(world)
    answer = await _send(system, bomb.encode(), 400)
    assert "refused" in answer
    assert await _stored(world) == []


async def test_a_message_that_is_not_a_good_new_rx_says_what_is_wrong(world: World) -> None:
    system = await _integration(world)
    assert "Only NewRx" in await _send(system, b"<Message><Body><RxRenewalRequest/></Body></Message>", 400)
    assert "well-formed" in await _send(system, b"<Message><Body><NewRx>", 400)
    missing_ndc = new_rx().decode().replace("<Code>00378180501</Code>", "")
    assert "ProductCode" in await _send(system, missing_ndc.encode(), 400)
    bad_quantity = await _send(system, new_rx(quantity="sixty"), 400)
    assert "Quantity.Value" in bad_quantity
    async with world.services.db.read() as s:
        assert (await s.execute(select(func.count()).select_from(Prescription))).scalar_one() == 0
