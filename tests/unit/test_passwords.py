"""What may be set as a password: hard to guess by zxcvbn, without the username, 8 to 128 characters."""

from __future__ import annotations

import pytest

from bench.console_flow import PASSWORD as BENCH_CONSOLE_PASSWORD
from bench.ingest import PASSWORD as BENCH_INGEST_PASSWORD
from demo.world import PASSWORD as DEMO_PASSWORD
from server.errors import InvalidInput
from server.security.passwords import MAX_LENGTH, MIN_LENGTH, check_strength
from tests.api.world import PASSWORD as API_PASSWORD
from tests.site_client.world import PASSWORD as SITE_PASSWORD

LONG = ("violet-harbor-lantern-" * 10)[:MAX_LENGTH]


def refusal(password: str, username: str = "nd_rph", *names: str) -> str:
    with pytest.raises(InvalidInput) as refused:
        check_strength(password, username, names)
    assert refused.value.code == "weak_password"
    return refused.value.message


@pytest.mark.parametrize(
    "password", ["password", "12345678", "password1", "iloveyou", "qwertyuiop", "letmein123", "Welcome1!"]
)
def test_common_and_breached_passwords_are_refused_saying_why(password: str) -> None:
    message = refusal(password)
    assert message.startswith("This password is too easy to guess.")
    assert len(message) > len("This password is too easy to guess. ")


def test_a_password_that_holds_the_username_is_refused() -> None:
    assert refusal("Nd_Rph-violet-harbor-91", "nd_rph") == "A password must not contain the username."


def test_the_person_s_name_counts_as_easy_to_guess() -> None:
    check_strength("RuthPrescriber", "rph7")
    refusal("RuthPrescriber", "rph7", "Ruth", "Prescriber")


def test_one_length_range_for_every_password() -> None:
    assert "at least" in refusal("Zq9$kv2", "nd_rph")
    assert "at most" in refusal(LONG + "x")
    assert len(LONG) == MAX_LENGTH and MIN_LENGTH == 8
    check_strength(LONG, "nd_rph")


@pytest.mark.parametrize(
    "password",
    sorted({API_PASSWORD, SITE_PASSWORD, BENCH_INGEST_PASSWORD, BENCH_CONSOLE_PASSWORD, DEMO_PASSWORD}),
)
def test_the_passwords_of_the_tests_benchmarks_and_demo_may_be_set(password: str) -> None:
    for username in ("admin", "nd_rph", "rph.nd", "rph.bench", "tech.het"):
        check_strength(password, username)
