"""Claim-next lists a pharmacist's sites only when a limit of sites at once could keep some of them out:
the shortcut that skips the list must agree with the check that uses it."""

from __future__ import annotations

import itertools
from pathlib import Path

from server.compliance.checks import Compliance, SupervisedSite
from server.compliance.rules import load_rules

# ND has no limit of its own; TX allows 2 and OH 1. Site ND-9 adds a limit of 1 where its state has none.
SITE_RULES = """
[sites.ND-9]
state = "ND"
why = "Company policy: the pharmacist on ND-9 supervises it alone."
max_sites_per_pharmacist = 1
"""
SITES = [
    SupervisedSite(1, "ND-1", "ND"),
    SupervisedSite(2, "ND-2", "ND"),
    SupervisedSite(9, "ND-9", "ND"),
    SupervisedSite(11, "TX-1", "TX"),
    SupervisedSite(12, "TX-2", "TX"),
    SupervisedSite(13, "TX-3", "TX"),
    SupervisedSite(21, "OH-1", "OH"),
]


def compliance(tmp_path: Path, *, site_rules: bool) -> Compliance:
    path = tmp_path / "site_rules.toml"
    path.write_text(SITE_RULES, encoding="utf-8")
    return Compliance(load_rules(site_path=path if site_rules else None))


def test_without_a_limit_in_reach_every_site_is_claimable_and_the_list_is_skipped(tmp_path: Path) -> None:
    c = compliance(tmp_path, site_rules=False)
    nd = [x for x in SITES if x.state == "ND"]
    # North Dakota sets no number: however many ND sites are supervised, none is kept out.
    assert c.all_claimable(nd, {"ND"})
    # One Texas site supervised, a second allowed.
    assert c.all_claimable([SITES[3]], {"TX"})
    # Two: a third would break the limit, so the sites must be listed.
    assert not c.all_claimable(SITES[3:5], {"TX"})
    assert c.claimable(SITES[3:5], SITES[3:6]) == [11, 12]


def test_a_supervised_site_s_limit_binds_whatever_the_states_listed(tmp_path: Path) -> None:
    c = compliance(tmp_path, site_rules=False)
    # Supervising an Ohio site (one at a time), a North Dakota fill would be a second site.
    assert not c.all_claimable([SITES[6]], {"ND"})
    assert c.claimable([SITES[6]], SITES[:2]) == []


def test_a_site_s_own_limit_counts_where_its_state_sets_none(tmp_path: Path) -> None:
    c = compliance(tmp_path, site_rules=True)
    assert c.all_claimable([], {"ND"})
    assert not c.all_claimable([SITES[0]], {"ND"})
    assert c.claimable([SITES[0]], SITES[:3]) == [1, 2]


def test_whenever_the_shortcut_says_all_the_check_keeps_none_out(tmp_path: Path) -> None:
    for own in (False, True):
        c = compliance(tmp_path, site_rules=own)
        for states in ({"ND"}, {"TX"}, {"ND", "TX"}, {"ND", "TX", "OH"}):
            listed = [x for x in SITES if x.state in states]
            for n in range(4):
                for supervised in itertools.combinations(SITES, n):
                    if c.all_claimable(list(supervised), states):
                        assert c.claimable(list(supervised), listed) is None, (own, states, supervised)
