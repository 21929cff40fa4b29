"""What may be recorded on a fill due counselling besides a video call, under the rules in force: the
patient's decline only where a rule allows it (unknown does not), a telephone call only where counselling
is not by video; each refusal names the rule, or the site's own reason where the site set it."""

from __future__ import annotations

from pathlib import Path

from server.compliance.checks import Compliance, Option
from server.compliance.rules import load_rules
from server.db.models import Site


def _options(code: str, state: str, site_rules: Path | None = None) -> tuple[Option, Option]:
    options = Compliance(load_rules(None, site_rules)).counselling_options(Site(code=code, state=state))
    return options.decline, options.phone


def test_each_state_says_whether_the_patient_may_decline_and_whether_a_phone_call_counts() -> None:
    nd_decline, nd_phone = _options("ND-1", "ND")
    assert not nd_decline.allowed and "North Dakota requires counselling (N.D. Admin. Code" in nd_decline.why
    assert not nd_phone.allowed and "audio and video" in nd_phone.why and "61-02-08-03(5)" in nd_phone.why
    oh_decline, oh_phone = _options("OH-1", "OH")
    assert oh_decline.allowed and oh_decline.why is None and "4729:5-18-05" in oh_decline.source
    assert not oh_phone.allowed
    ia_decline, ia_phone = _options("IA-1", "IA")
    assert not ia_decline.allowed and ia_phone.allowed and ia_phone.why is None


def test_a_site_stricter_than_its_state_is_cited_by_its_own_reason(tmp_path: Path) -> None:
    sites = tmp_path / "site_rules.toml"
    sites.write_text(
        '[sites.OH-9]\nstate = "OH"\nwhy = "Company policy: every patient is counselled."\n'
        "counselling_may_decline = false\n"
        '[sites.TX-9]\nstate = "TX"\nwhy = "Company policy: new prescriptions, by video."\n'
        'counselling_fills = ["new"]\ncounselling_by_video = true\n',
        encoding="utf-8",
    )
    oh_decline, _ = _options("OH-9", "OH", sites)
    assert not oh_decline.allowed
    assert (
        "do not let the patient decline" in oh_decline.why and "every patient is counselled" in oh_decline.why
    )
    tx_decline, tx_phone = _options("TX-9", "TX", sites)
    assert not tx_decline.allowed and "Texas, site TX-9 requires counselling" in tx_decline.why
    assert "the site's own rule: Company policy: new prescriptions, by video." in tx_phone.why
    assert not tx_phone.allowed and "None" not in tx_phone.why
    # The state's other sites keep the state's rules.
    assert _options("TX-1", "TX", sites)[1].allowed
