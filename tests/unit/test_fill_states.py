"""The table of a fill's states and transitions: whole, and with nothing in it that no row can reach."""

from __future__ import annotations

from server.fills.rules import CREATE, SYSTEM, TRANSITIONS, FillState
from server.security.principal import Role


def test_every_state_is_reached_from_creation_and_only_a_rejection_or_a_hand_out_is_final() -> None:
    reached = {CREATE.target}
    while True:
        more = {t.target for t in TRANSITIONS if reached.intersection(t.sources)} - reached
        if not more:
            break
        reached |= more
    assert reached == set(FillState)
    final = {s for s in FillState if not any(s in t.sources for t in TRANSITIONS)}
    assert final == {FillState.HANDED_OUT, FillState.REJECTED}


def test_only_creation_starts_from_nothing_and_nothing_returns_to_draft() -> None:
    assert [t for t in TRANSITIONS if not t.sources] == [CREATE]
    assert [t for t in TRANSITIONS if t.target is FillState.DRAFT] == [CREATE]


def test_the_site_submits_and_hands_out_pharmacists_verify_and_the_server_only_expires_leases() -> None:
    by = {t.action: set() for t in TRANSITIONS}
    for t in TRANSITIONS:
        by[t.action].add(t.by)
    assert by == {
        "fill.created": {Role.TECHNICIAN},
        "fill.submitted": {Role.TECHNICIAN},
        "fill.claimed": {Role.PHARMACIST},
        "fill.released": {Role.PHARMACIST, SYSTEM},
        "fill.decided": {Role.PHARMACIST},
        "fill.handed_out": {Role.TECHNICIAN},
    }
    assert all(t.by is not Role.ADMIN for t in TRANSITIONS)


def test_no_two_rows_of_the_table_are_the_same_transition() -> None:
    assert len({(t.action, t.sources, t.target, t.by) for t in TRANSITIONS}) == len(TRANSITIONS)
