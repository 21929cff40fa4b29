"""The state rules file: the reviewed one loads and says where each value comes from; broken copies are
refused with the line and the problem; a site may be stricter than its state, never looser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.app import create_app
from server.cli import main
from server.compliance.forms import form_group
from server.compliance.rules import FIELDS, RulesError, load_rules, packaged_rules
from server.config import Config

REVIEWED = packaged_rules().read_text(encoding="utf-8")


def copy_with(tmp_path: Path, old: str, new: str) -> Path:
    """The reviewed file with one passage changed (which must be there, once)."""
    assert REVIEWED.count(old) == 1, old
    path = tmp_path / "state_rules.toml"
    path.write_text(REVIEWED.replace(old, new), encoding="utf-8")
    return path


def site_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site_rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, site_path: Path | None = None) -> tuple[str, str]:
    """The error's message, and the text of the line it names."""
    with pytest.raises(RulesError) as caught:
        load_rules(path, site_path)
    message = str(caught.value)
    found = re.search(r", line (\d+):", message)
    assert found, message
    named = (site_path if site_path and str(site_path) in message else path).read_text().splitlines()
    return message, named[int(found.group(1)) - 1]


def test_the_reviewed_file_covers_eight_states_and_every_known_value_names_its_source() -> None:
    book = load_rules()
    assert {"ND", "TX", "OH", "IA", "IL", "MN", "MT", "SD"} <= set(book.states)
    for rules in book.states.values():
        assert rules.read and rules.name
        for name in FIELDS:
            rule = rules[name]
            assert rule.source if rule.known else rule.read, (rules.code, name)
    texas = book.states["TX"]["max_sites_per_pharmacist"]
    assert texas.value == 2 and texas.source and "291.121(c)(4)(B)" in texas.source
    assert book.states["IL"]["recording_consent"].value == "all_party"
    assert not book.states["TX"]["schedules_allowed"].known  # not settled by what was read: unknown


def test_a_value_without_its_source_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path,
        'max_sites_per_pharmacist = { value = 2, source = "22 Tex. Admin. Code 291.121(c)(4)(B), '
        "Remote Pharmacy Services: each pharmacist may supervise no more than two remote sites that are "
        'simultaneously open" }',
        "max_sites_per_pharmacist = { value = 2 }",
    )
    message, line = refused(path)
    assert "states.TX.max_sites_per_pharmacist" in message and "has no source" in message
    assert line.startswith("max_sites_per_pharmacist = { value = 2 }")


def test_an_unknown_value_must_say_what_was_read(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path,
        'photos = { value = "unknown", read = "Not in 1330.510(b)(1) to (b)(4)." }',
        'photos = { value = "unknown" }',
    )
    message, line = refused(path)
    assert "states.IL.photos" in message and "what was read" in message
    assert line.startswith("photos =")


def test_an_unknown_schedule_is_refused(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path,
        'schedules_allowed = { value = "unknown", read = "Not in the sections read." }',
        'schedules_allowed = { value = ["CIII", "CVI"], source = "S.D. Admin. R. 20:51:30:16" }',
    )
    message, line = refused(path)
    assert "states.SD.schedules_allowed" in message and "unknown DEA schedule 'CVI'" in message
    assert line.startswith("schedules_allowed =")


def test_a_missing_field_an_unknown_photo_kind_and_bad_toml_are_refused(tmp_path: Path) -> None:
    missing = copy_with(
        tmp_path,
        'counselling_kind = { value = "unknown", read = "Not settled by the sections read." }\n',
        "",
    )
    assert "missing counselling_kind" in refused(missing)[0]
    (tmp_path / "kind").mkdir()
    kind = copy_with(tmp_path / "kind", 'other = ["stock_bottle", "final_package"]', 'other = ["selfie"]')
    message, line = refused(kind)
    assert "unknown photo kind 'selfie'" in message and line.startswith("other =")
    (tmp_path / "toml").mkdir()
    broken = copy_with(tmp_path / "toml", "[states.MT]", "[states.MT")
    with pytest.raises(RulesError, match=r"not valid TOML: .*line \d+"):
        load_rules(broken)


def test_a_site_may_be_stricter_than_its_state(tmp_path: Path) -> None:
    sites = site_rules(
        tmp_path,
        "[sites.TX-9]\n"
        'state = "TX"\n'
        'why = "Our policy: no Schedule II stock at the counter, one site per pharmacist."\n'
        'schedules_allowed = ["CIII", "CIV", "CV"]\n'
        "max_sites_per_pharmacist = 1\n"
        'photos = { liquid = ["stock_bottle", "measured_volume", "bottle_label", "final_package"] }\n',
    )
    book = load_rules(None, sites)
    own = book.for_site("TX-9", "TX")
    assert own is not None and own["max_sites_per_pharmacist"].value == 1
    assert own["schedules_allowed"].value == {"CIII", "CIV", "CV"} and own["schedules_allowed"].site
    assert own["recording_consent"] == book.states["TX"]["recording_consent"]  # the rest is the state's
    assert book.photos(own, "liquid")[-1] == "final_package"
    assert book.for_site("TX-1", "TX") is book.states["TX"]


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("max_sites_per_pharmacist = 3", "3 sites where the state allows 2"),
        ('recording_consent = "one_party"', "one party's consent where the state needs all parties'"),
        ("telepharmacy_allowed = true", None),
    ],
)
def test_a_site_looser_than_its_state_is_refused(tmp_path: Path, rule: str, why: str | None) -> None:
    state = "IL" if "recording" in rule else "TX"
    sites = site_rules(tmp_path, f'[sites.S-1]\nstate = "{state}"\nwhy = "Tried to loosen it."\n{rule}\n')
    if why is None:  # the same as the state's is not looser
        assert load_rules(None, sites).for_site("S-1", state) is not None
        return
    message, line = refused(packaged_rules(), sites)
    assert "looser than" in message and why in message and "a site may only be stricter" in message
    assert line == rule


def test_a_site_of_a_state_without_rules_is_refused(tmp_path: Path) -> None:
    sites = site_rules(tmp_path, '[sites.S-1]\nstate = "WA"\nwhy = "x"\nmax_sites_per_pharmacist = 1\n')
    message, line = refused(packaged_rules(), sites)
    assert "no rules for 'WA'" in message and line == 'state = "WA"'


def test_a_bad_rules_file_stops_the_server_before_it_opens_anything(tmp_path: Path) -> None:
    bad = copy_with(
        tmp_path,
        'telepharmacy_allowed = { value = true, source = "Mont.',
        'telepharmacy_allowed = { value = 1, source = "Mont.',
    )
    config = Config(data_dir=tmp_path / "data", compliance_rules=bad)
    with pytest.raises(RulesError, match=r"line \d+: states.MT.telepharmacy_allowed: must be true or false"):
        create_app(config)
    assert not (tmp_path / "data").exists()


def test_rules_show_prints_a_state_with_its_sources_and_refuses_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TP_COMPLIANCE_RULES", raising=False)
    monkeypatch.delenv("TP_SITE_RULES", raising=False)
    assert main(["rules", "show", "tx"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("TX  Texas") and "max_sites_per_pharmacist     2" in out
    assert "22 Tex. Admin. Code 291.121(c)(4)(B)" in out and "ND  North Dakota" not in out
    monkeypatch.setenv("TP_COMPLIANCE_RULES", str(copy_with(tmp_path, "[states.OH]", "[states.XQ]")))
    assert main(["rules", "show"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"line \d+: states.XQ: is not a US state's two-letter code", err), err


@pytest.mark.parametrize(
    ("form", "group"),
    [
        ("tablet", "tablet_capsule"),
        ("TABLET, FILM COATED", "tablet_capsule"),
        ("capsule, extended release", "tablet_capsule"),
        ("oral solution", "liquid"),
        ("SUSPENSION", "liquid"),
        ("POWDER, FOR SUSPENSION", "liquid"),
        ("syrup", "liquid"),
        ("INJECTION, SOLUTION", "other"),
        ("cream", "other"),
    ],
)
def test_dosage_forms_fall_under_their_photo_rules(form: str, group: str) -> None:
    assert form_group(form) == group
