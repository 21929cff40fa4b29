"""tp-site rx import: a pharmacy system's CSV export, as a technician imports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_site_client.rx_import import ImportFileError, read_export
from tests.site_client.world import ServerProcess, make_site, site_api

# A pharmacy system's export: its own column names and order, US dates, a quoted field with a comma.
EXPORT = """Rx #,Patient,DOB,Prescriber,Drug Name,Strength,Form,NDC,Qty,Days Supply,Sig,Refills
700100,Jane Q. Patient,02/29/1948,"Prescriber, Ruth MD",Metformin HCl,500 mg,tablet,0378-1805-01,60,30,1 bid,3
700101,John Other,1950-04-30,Dr. Sam W,Lisinopril,10 mg,tablet,68180-513-01,sixty,30,1 daily,0
700102,Ann Third,07/04/1961,Dr. Sam W,Omeprazole DR,20 mg,capsule,,30,30,1 daily,1
700103,Bo Fourth,13/45/1970,Dr. Sam W,Atorvastatin,20 mg,tablet,0378-2016-77,30,30,1 at bedtime,2
700104,Cy Fifth,1972-01-15,Dr. Sam W,Atorvastatin,20 mg,tablet,0378-201-677,30,30,1 at bedtime,2
"""


def test_an_export_is_read_by_its_header_and_each_bad_line_named(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    lines = read_export(path).lines
    assert [line.number for line in lines] == [2, 3, 4, 5, 6]
    good = lines[0].body
    assert good is not None
    assert (good["rx_number"], good["patient_dob"], good["prescriber"], good["quantity"]) == (
        "700100",
        "1948-02-29",
        "Prescriber, Ruth MD",
        60.0,
    )
    assert good["source"] == EXPORT.splitlines()[0] + "\n" + EXPORT.splitlines()[1]
    assert "not a number" in (lines[1].problem or "")
    assert "ndc is empty" in (lines[2].problem or "")
    assert "not a date" in (lines[3].problem or "")
    assert lines[4].body is not None  # its NDC is wrong, which only the server can tell

    (tmp_path / "nameless.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ImportFileError, match="rx number"):
        read_export(tmp_path / "nameless.csv")


def test_an_export_in_windows_1252_or_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """What Windows programs write as CSV: an accented name refused the whole file, as not UTF-8."""
    accented = EXPORT.replace("Jane Q. Patient", "José Peña")
    path = tmp_path / "export.csv"
    path.write_bytes(accented.replace("\n", "\r\n").encode("cp1252"))
    export = read_export(path)
    first = export.lines[0].body
    assert export.encoding == "cp1252" and first is not None and first["patient_name"] == "José Peña"
    path.write_bytes(b"\xef\xbb\xbf" + accented.encode("utf-8"))
    export = read_export(path)
    first = export.lines[0].body
    assert export.encoding == "utf-8" and first is not None and first["rx_number"] == "700100"
    assert first["patient_name"] == "José Peña"


async def test_import_takes_the_good_lines_reports_the_rest_and_takes_nothing_twice(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    site = make_site(tmp_path, server.url, token)
    path = tmp_path / "export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    code, out, err = await site.run("rx", "import", str(path))
    assert code == 1, out + err
    assert "line 3: not imported: quantity 'sixty' is not a number" in out
    assert "line 4: not imported: ndc is empty" in out
    assert "line 5: not imported:" in out and "13/45/1970" in out
    assert "line 6: refused:" in out and "NDC" in out
    assert "1 prescription(s) imported, 0 already here, 4 line(s) not imported." in out

    _, body = await site_api(server.url, token, "GET", "/api/v1/prescriptions")
    imported = [p for p in body["prescriptions"] if p["rx_number"].startswith("7001")]
    assert [(p["rx_number"], p["patient_name"], p["prescriber"]) for p in imported] == [
        ("700100", "Jane Q. Patient", "Prescriber, Ruth MD")
    ]

    code, out, _ = await site.run("rx", "import", str(path))
    assert "line 2: Rx 700100 was imported before." in out
    assert "0 prescription(s) imported, 1 already here, 4 line(s) not imported." in out
