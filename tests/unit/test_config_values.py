"""Settings read from the environment as an operator writes them: the usual words for a switch, and
origins however they are spaced or cased; a value that means nothing stops the server (see
tests/api/test_operations.py for the line it prints)."""

from __future__ import annotations

import re

import pytest

from server.config import Config, SettingError

WORDS = [("1", True), ("on", True), ("Yes", True), ("TRUE", True),
         ("0", False), ("off", False), ("no", False), ("", False)]  # fmt: skip


@pytest.mark.parametrize(("word", "on"), WORDS)
def test_a_switch_takes_the_usual_words(word: str, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_SECOND_FACTOR_REQUIRED", word)
    assert Config.from_env().second_factor_required is on


def test_a_misspelt_switch_stops_the_server_rather_than_leave_a_safeguard_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TP_SECOND_FACTOR_REQUIRED", "enabled")
    with pytest.raises(SettingError, match="TP_SECOND_FACTOR_REQUIRED: 'enabled' is neither on"):
        Config.from_env()


def test_allowed_origins_are_read_as_a_browser_sends_its_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = "https://Console.Example.org, https://b.example:443/ ,http://10.0.0.5:8080,,http://[::1]:9000"
    monkeypatch.setenv("TP_ALLOWED_ORIGINS", listed)
    assert Config.from_env().allowed_origins == (
        "https://console.example.org",
        "https://b.example",
        "http://10.0.0.5:8080",
        "http://[::1]:9000",
    )


@pytest.mark.parametrize(
    "entry", ["console.example.org", "https://a.example/console", "ftp://a.example", "https://a.example:99999",
              "https://user@a.example", "https://a.example?x=1", "https://"],
)  # fmt: skip
def test_an_allowed_origin_that_no_browser_could_send_stops_the_server(
    entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TP_ALLOWED_ORIGINS", f"https://ok.example,{entry}")
    with pytest.raises(SettingError, match=re.escape(f"TP_ALLOWED_ORIGINS: '{entry}' is not an origin")):
        Config.from_env()
