"""How long a record is kept: the longest period of the rules that apply, unknown when any is."""

from __future__ import annotations

from pathlib import Path

from server.compliance.retention import FILL_MEDIA, PERIOD_FIELDS, RECORDINGS, period
from server.compliance.rules import Sourced, StateRules, load_rules

FIELDS = (
    "retention_prescription_days",
    "retention_verification_days",
    "retention_audit_days",
    "retention_recording_days",
    "retention_surveillance_days",
)


def rules(**days: int | None) -> StateRules:
    values = {
        name: Sourced(days.get(name), source=f"Rule {name}")
        if days.get(name) is not None
        else Sourced(None, read="not read")
        for name in FIELDS
    }
    return StateRules("XX", "Somewhere", "what was read", values)


def test_a_fill_photo_is_kept_for_the_longer_of_the_verification_and_prescription_periods() -> None:
    p = period(
        rules(retention_prescription_days=730, retention_verification_days=1825), PERIOD_FIELDS[FILL_MEDIA]
    )
    assert (p.days, p.rule, p.source) == (
        1825,
        "retention_verification_days",
        "Rule retention_verification_days",
    )
    assert p.known and p.unknown == ()


def test_an_unknown_period_among_those_that_apply_keeps_the_record() -> None:
    p = period(rules(retention_prescription_days=730), PERIOD_FIELDS[FILL_MEDIA])
    assert p.days is None and not p.known
    assert p.unknown == ("retention_verification_days",) and p.read == ("not read",)


def test_a_recording_follows_its_own_period_only() -> None:
    p = period(
        rules(retention_recording_days=30, retention_prescription_days=None), PERIOD_FIELDS[RECORDINGS]
    )
    assert (p.days, p.rule) == (30, "retention_recording_days")


def test_without_rules_for_the_state_nothing_is_due() -> None:
    p = period(None, PERIOD_FIELDS[FILL_MEDIA])
    assert p.days is None and set(p.unknown) == set(PERIOD_FIELDS[FILL_MEDIA])


def test_a_site_rule_sets_a_period_its_state_leaves_unknown(tmp_path: Path) -> None:
    site_file = tmp_path / "sites.toml"
    site_file.write_text(
        '[sites.ND-7]\nstate = "ND"\nwhy = "Owner policy: five years"\n'
        "retention_prescription_days = 1825\nretention_verification_days = 1825\n",
        encoding="utf-8",
    )
    book = load_rules(site_path=site_file)
    assert period(book.for_site("ND-8", "ND"), PERIOD_FIELDS[FILL_MEDIA]).days is None
    own = period(book.for_site("ND-7", "ND"), PERIOD_FIELDS[FILL_MEDIA])
    assert (own.days, own.site_rule) == (1825, "Owner policy: five years")
    assert own.source == "the site's own rule (TP_SITE_RULES)"
    # Ohio's surveillance period has its rule number; its prescription period is unknown.
    ohio = book.for_site("OH-1", "OH")
    assert period(ohio, ("retention_surveillance_days",)).source.startswith("Ohio Admin. Code")  # type: ignore[union-attr]
    assert period(ohio, PERIOD_FIELDS[FILL_MEDIA]).days is None


def test_the_daily_run_waits_for_its_hour_and_can_be_turned_off() -> None:
    import datetime as dt

    import pytest

    from server.app import until_hour
    from server.config import Config

    at = dt.datetime(2026, 12, 6, 2, 30, tzinfo=dt.UTC)
    assert until_hour(at, 3) == 30 * 60
    assert until_hour(at.replace(hour=3, minute=0), 3) == 24 * 3600, "just run: tomorrow's is next"
    env = {"TP_RETENTION_HOUR": "off", "TP_EVENT_JOURNAL_DAYS": "30"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        config = Config.from_env()
        assert (config.retention_hour, config.event_journal_days) == (None, 30)
        mp.setenv("TP_RETENTION_HOUR", "25")
        with pytest.raises(ValueError, match="TP_RETENTION_HOUR"):
            Config.from_env()
        mp.setenv("TP_RETENTION_HOUR", "4")
        mp.setenv("TP_EVENT_JOURNAL_DAYS", "0")
        with pytest.raises(ValueError, match="TP_EVENT_JOURNAL_DAYS"):
            Config.from_env()
