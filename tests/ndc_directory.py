"""A small NDC Directory in the FDA's exact file layout (product.txt and package.txt), written by tests.

The columns and their order are the FDA's; the files are Windows-1252 with CRLF line ends, as
published. The products are chosen so that each mismatch class has a package to scan against the
prescribed Metformin 500 mg film-coated tablet of Mylan (NDC 0378-1805-01).
"""

from __future__ import annotations

from pathlib import Path

from server.reference.ndc_files import PACKAGE_COLUMNS, PRODUCT_COLUMNS

PRESCRIBED = "0378-1805-01"
# What a scan of each package is, against PRESCRIBED.
SAME_PRODUCT_OTHER_PACKAGE = "0378-1805-10"
GENERIC_EQUIVALENT = "0093-1048-01"
OTHER_STRENGTH = "0378-1807-01"
OTHER_DOSAGE_FORM = "0591-2719-01"
OTHER_DRUG = "68180-513-01"
DISCONTINUED = "50090-1234-0"
SCHEDULE_II = "0406-0123-01"
NOT_IN_DIRECTORY = "0555-0999-02"


def product(product_ndc: str, spl: str, **over: str) -> dict[str, str]:
    row = {
        "PRODUCTID": f"{product_ndc}_{spl}",
        "PRODUCTNDC": product_ndc,
        "PRODUCTTYPENAME": "HUMAN PRESCRIPTION DRUG",
        "PROPRIETARYNAME": "Metformin Hydrochloride",
        "PROPRIETARYNAMESUFFIX": "",
        "NONPROPRIETARYNAME": "Metformin Hydrochloride",
        "DOSAGEFORMNAME": "TABLET, FILM COATED",
        "ROUTENAME": "ORAL",
        "STARTMARKETINGDATE": "20020124",
        "ENDMARKETINGDATE": "",
        "MARKETINGCATEGORYNAME": "ANDA",
        "APPLICATIONNUMBER": "ANDA075973",
        "LABELERNAME": "Mylan Pharmaceuticals Inc.",
        "SUBSTANCENAME": "METFORMIN HYDROCHLORIDE",
        "ACTIVE_NUMERATOR_STRENGTH": "500",
        "ACTIVE_INGRED_UNIT": "mg/1",
        "PHARM_CLASSES": "Biguanide [EPC], Biguanides [CS]",
        "DEASCHEDULE": "",
        "NDC_EXCLUDE_FLAG": "N",
        "LISTING_RECORD_CERTIFIED_THROUGH": "20271231",
    }
    row.update(over)
    return row


def package(product_row: dict[str, str], code: str, description: str, **over: str) -> dict[str, str]:
    row = {
        "PRODUCTID": product_row["PRODUCTID"],
        "PRODUCTNDC": product_row["PRODUCTNDC"],
        "NDCPACKAGECODE": code,
        "PACKAGEDESCRIPTION": description,
        "STARTMARKETINGDATE": "20020124",
        "ENDMARKETINGDATE": "",
        "NDC_EXCLUDE_FLAG": "N",
        "SAMPLE_PACKAGE": "N",
    }
    row.update(over)
    return row


def sample() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(products, packages) of the sample directory."""
    mylan500 = product("0378-1805", "0b3c6f2e-1d1a-4c55-9d0e-6f4f0c7d1a01")
    teva500 = product(
        "0093-1048",
        "5a7e3f0c-2b2b-4a1e-8c3d-1e2f3a4b5c02",
        PROPRIETARYNAME="Glucophage\u00ae",  # a registered sign, 0xAE in Windows-1252
        DOSAGEFORMNAME="TABLET",
        LABELERNAME="Laboratoires S\u00e9rvier",
        MARKETINGCATEGORYNAME="NDA",
        APPLICATIONNUMBER="NDA020357",
    )
    mylan850 = product("0378-1807", "9f8e7d6c-3c3c-4b2f-9d4e-2f3a4b5c6d03", ACTIVE_NUMERATOR_STRENGTH="850")
    er500 = product(
        "0591-2719",
        "1a2b3c4d-4d4d-4c3a-8e5f-3a4b5c6d7e04",
        DOSAGEFORMNAME="TABLET, EXTENDED RELEASE",
        LABELERNAME="Actavis Pharma, Inc.",
    )
    lisinopril = product(
        "68180-513",
        "2b3c4d5e-5e5e-4d4b-9f6a-4b5c6d7e8f05",
        PROPRIETARYNAME="Lisinopril",
        NONPROPRIETARYNAME="Lisinopril",
        DOSAGEFORMNAME="TABLET",
        LABELERNAME="Lupin Pharmaceuticals, Inc.",
        SUBSTANCENAME="LISINOPRIL",
        ACTIVE_NUMERATOR_STRENGTH="10",
        PHARM_CLASSES="Angiotensin Converting Enzyme Inhibitor [EPC]",
    )
    stopped = product(
        "50090-1234",
        "3c4d5e6f-6f6f-4e5c-8a7b-5c6d7e8f9a06",
        LABELERNAME="A-S Medication Solutions",
        ENDMARKETINGDATE="20200131",
        DOSAGEFORMNAME="TABLET",
    )
    hydrocodone = product(
        "0406-0123",
        "4d5e6f7a-7a7a-4f6d-9b8c-6d7e8f9a0b07",
        PROPRIETARYNAME="Hydrocodone Bitartrate and Acetaminophen",
        NONPROPRIETARYNAME="Hydrocodone Bitartrate and Acetaminophen",
        DOSAGEFORMNAME="TABLET",
        LABELERNAME="SpecGx LLC",
        SUBSTANCENAME="HYDROCODONE BITARTRATE; ACETAMINOPHEN",
        ACTIVE_NUMERATOR_STRENGTH="5; 325",
        ACTIVE_INGRED_UNIT="mg/1; mg/1",
        DEASCHEDULE="CII",
        PHARM_CLASSES="Opioid Agonist [EPC], Opioid Agonists [MoA]",
    )
    products = [mylan500, teva500, mylan850, er500, lisinopril, stopped, hydrocodone]
    packages = [
        package(mylan500, PRESCRIBED, '100 TABLET, FILM COATED in 1 BOTTLE (0378-1805-01) "unit of use"'),
        package(mylan500, SAME_PRODUCT_OTHER_PACKAGE, "1000 TABLET, FILM COATED in 1 BOTTLE (0378-1805-10)"),
        package(teva500, GENERIC_EQUIVALENT, "100 TABLET in 1 BOTTLE (0093-1048-01)"),
        package(mylan850, OTHER_STRENGTH, "100 TABLET, FILM COATED in 1 BOTTLE (0378-1807-01)"),
        package(er500, OTHER_DOSAGE_FORM, "100 TABLET, EXTENDED RELEASE in 1 BOTTLE (0591-2719-01)"),
        package(lisinopril, OTHER_DRUG, "90 TABLET in 1 BOTTLE (68180-513-01) > 1 BLISTER"),
        package(stopped, DISCONTINUED, "30 TABLET in 1 BOTTLE (50090-1234-0)", ENDMARKETINGDATE="20200131"),
        package(hydrocodone, SCHEDULE_II, "100 TABLET in 1 BOTTLE (0406-0123-01)"),
    ]
    return products, packages


def write_file(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]], *, tail: str = "") -> Path:
    """The rows in the FDA's layout: a header, tab-separated, CRLF, Windows-1252; `tail` appended raw."""
    lines = ["\t".join(columns)] + ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n" + tail).encode("cp1252"))
    return path


def write_sample(
    folder: Path,
    *,
    products: list[dict[str, str]] | None = None,
    packages: list[dict[str, str]] | None = None,
    package_tail: str = "",
) -> tuple[Path, Path]:
    """product.txt and package.txt of the sample (or of the rows given) in `folder`."""
    default_products, default_packages = sample()
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_file(
            folder / "product.txt", PRODUCT_COLUMNS, default_products if products is None else products
        ),
        write_file(
            folder / "package.txt",
            PACKAGE_COLUMNS,
            default_packages if packages is None else packages,
            tail=package_tail,
        ),
    )


def gtin(ndc10_hyphenated: str) -> str:
    """The GTIN-14 of a package's barcode: indicator 0, prefix 03, the NDC10's digits, check digit."""
    body = "003" + ndc10_hyphenated.replace("-", "")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def scan(ndc10_hyphenated: str) -> str:
    """A stock bottle's GS1 DataMatrix as the site sends it (HRI): product, expiry, lot."""
    return f"(01){gtin(ndc10_hyphenated)}(17)291231(10)LOT7"
