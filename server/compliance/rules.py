"""Per-state telepharmacy rules, read from one reviewed TOML file and checked before the server starts.

Every value of a state carries its source (a rule number and title) or is `unknown` with what was read
instead; nothing else loads. A site may be given rules of its own in a second file (TP_SITE_RULES), each
stricter than its state's or the same, never looser: a looser one stops the server too. An error names
the file, the line and the problem, so whoever edits a file sees at once what to fix.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from server.evidence.kinds import MEDIA_KINDS, VIDEO_KINDS

T = TypeVar("T")
UNKNOWN: Literal["unknown"] = "unknown"
SCHEDULES = ("CII", "CIII", "CIV", "CV")
FILL_TYPES = ("new", "refill")
COUNSELLING_KINDS = ("offer", "give")
CONSENT_RULES = ("one_party", "all_party")
# The dosage forms the photo rules tell apart (server.compliance.forms sorts a prescription's form).
FORM_GROUPS = ("tablet_capsule", "liquid", "other")
PHOTO_KINDS = tuple(k for k in MEDIA_KINDS if k not in VIDEO_KINDS)
# The states, the District of Columbia and the territories with boards of pharmacy of their own.
US_STATES = frozenset(
    {
        *("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA"),
        *("KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM"),
        *("NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA"),
        *("WV", "WI", "WY", "PR", "GU", "VI"),
    }
)
RETENTION_FIELDS = (
    "retention_prescription_days",
    "retention_verification_days",
    "retention_audit_days",
    "retention_recording_days",
    "retention_surveillance_days",
)
# Every field of a state, in the order the file and `tp-server rules show` give them.
FIELDS = (
    "telepharmacy_allowed",
    "max_sites_per_pharmacist",
    "counselling_fills",
    "counselling_kind",
    "counselling_by_video",
    "counselling_may_decline",
    "schedules_allowed",
    "photos",
    "recording_consent",
    *RETENTION_FIELDS,
)
PACKAGED = "state_rules.toml"


class RulesError(ValueError):
    """A rules file that cannot be trusted: its message names the file, the line and the problem."""


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """One rule's value and where it comes from; `value` is None when the sources read do not settle it."""

    value: T | None
    source: str | None = None
    read: str | None = None
    # A site's own rule (stricter than its state's): the reason the operator gave.
    site: str | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    def shown(self) -> dict[str, Any]:
        """As the compliance view and the command line show it."""
        out: dict[str, Any] = {"value": UNKNOWN if self.value is None else _plain(self.value)}
        for name in ("source", "read", "site"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value, key=_order)
    if isinstance(value, dict):
        return {k: list(v) for k, v in value.items()}
    return value


def _order(item: str) -> tuple[int, str]:
    for vocabulary in (SCHEDULES, FILL_TYPES):
        if item in vocabulary:
            return vocabulary.index(item), item
    return len(SCHEDULES), item


@dataclass(frozen=True)
class StateRules:
    """A state's rules (or a site's, which start from its state's)."""

    code: str
    name: str
    read: str
    values: dict[str, Sourced[Any]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Sourced[Any]:
        return self.values[name]

    def shown(self) -> dict[str, Any]:
        return {
            "state": self.code,
            "name": self.name,
            "read": self.read,
            "rules": {name: self.values[name].shown() for name in FIELDS},
        }


@dataclass(frozen=True)
class RuleBook:
    """The rules in force: each state's, each site's own (by site code), and the project's default views."""

    states: dict[str, StateRules]
    sites: dict[str, StateRules]
    default_photos: dict[str, tuple[str, ...]]
    default_photos_why: str

    def for_site(self, code: str, us_state: str) -> StateRules | None:
        """The rules of a site: its own where it has them (for its state), else its state's; None when
        the file has no rules for the state."""
        own = self.sites.get(code)
        if own is not None and own.code == us_state:
            return own
        return self.states.get(us_state)

    def photos(self, rules: StateRules | None, group: str) -> tuple[str, ...]:
        """The views a fill of this dosage form group needs under these rules."""
        if rules is not None:
            photos = rules["photos"].value
            if photos and group in photos:
                return tuple(photos[group])
        return self.default_photos[group]


# -- loading ------------------------------------------------------------------------------------------


def packaged_rules() -> Path:
    return Path(str(resources.files("server.compliance").joinpath(PACKAGED)))


def load_rules(path: Path | None = None, site_path: Path | None = None) -> RuleBook:
    """Reads and checks the state rules (the packaged file by default) and a site rules file; RulesError
    on anything wrong."""
    path = path or packaged_rules()
    text, data = _read(path)
    where = _Where(path, text)
    _only(where, data, {"default_photos", "states", "sites"}, "")
    if "sites" in data:
        raise where.error("", "sites", "site rules go in their own file (TP_SITE_RULES), not the state rules")
    defaults, why = _default_photos(where, data.get("default_photos"))
    states_table = data.get("states")
    if not isinstance(states_table, dict) or not states_table:
        raise where.error("", "states", "the file has no [states.XX] tables")
    states = {code: _state(where, code, table) for code, table in states_table.items()}
    sites: dict[str, StateRules] = {}
    if site_path is not None:
        site_text, site_data = _read(site_path)
        site_where = _Where(site_path, site_text)
        _only(site_where, site_data, {"sites"}, "")
        table = site_data.get("sites")
        if not isinstance(table, dict):
            raise site_where.error("", "sites", "the file has no [sites.CODE] tables")
        sites = {code: _site(site_where, code, t, states) for code, t in table.items()}
    return RuleBook(states, sites, defaults, why)


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: is not UTF-8 text") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from None


@dataclass(frozen=True)
class _Where:
    """Finds the line of a table's key in the file's text, for error messages (tomllib keeps no lines)."""

    path: Path
    text: str

    def line(self, table: str, key: str | None) -> int | None:
        lines = self.text.splitlines()
        if not table and key:  # a table of its own: its header
            for i, raw in enumerate(lines):
                if raw.strip().replace(" ", "") == f"[{key}]":
                    return i + 1
        header = None
        for i, raw in enumerate(lines):
            stripped = raw.strip().replace(" ", "")
            if table and stripped in (f"[{table}]", f"[{table}.{key}]"):
                header = i
                if stripped == f"[{table}.{key}]":
                    return i + 1
                break
        start = header + 1 if header is not None else 0
        if table and header is None:
            return None
        for j in range(start, len(lines)):
            stripped = lines[j].strip()
            if table and stripped.startswith("[") and j != header:
                break
            if key and stripped.split("=", 1)[0].strip() == key and "=" in stripped:
                return j + 1
        return header + 1 if header is not None else None

    def error(self, table: str, key: str | None, problem: str) -> RulesError:
        n = self.line(table, key)
        place = f"{self.path}, line {n}" if n else str(self.path)
        name = ".".join(p for p in (table, key) if p)
        return RulesError(f"{place}: {name}: {problem}" if name else f"{place}: {problem}")


def _only(where: _Where, table: dict[str, Any], allowed: set[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(path, key, f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _text(where: _Where, table: dict[str, Any], path: str, key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise where.error(path, key, "must be a non-empty text")
    return value.strip()


def _default_photos(where: _Where, table: Any) -> tuple[dict[str, tuple[str, ...]], str]:
    if not isinstance(table, dict):
        raise where.error("", "default_photos", "missing: the views of each dosage form group")
    _only(where, table, {"why", *FORM_GROUPS}, "default_photos")
    why = _text(where, table, "default_photos", "why")
    out = {}
    for group in FORM_GROUPS:
        if group not in table:
            raise where.error("default_photos", None, f"missing {group}")
        out[group] = _kinds(where, "default_photos", group, table[group])
    return out, why


def _kinds(where: _Where, path: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
        raise where.error(path, key, "must be a non-empty list of photo kinds")
    bad = [k for k in value if k not in PHOTO_KINDS]
    if bad:
        raise where.error(path, key, f"unknown photo kind {bad[0]!r} (one of {', '.join(PHOTO_KINDS)})")
    if len(set(value)) != len(value):
        raise where.error(path, key, "names a photo kind twice")
    return tuple(value)


def _state(where: _Where, code: str, table: Any) -> StateRules:
    path = f"states.{code}"
    if code not in US_STATES:
        raise where.error("", path, "is not a US state's two-letter code")
    if not isinstance(table, dict):
        raise where.error("", path, "must be a table")
    _only(where, table, {"name", "read", *FIELDS}, path)
    name = _text(where, table, path, "name")
    read = _text(where, table, path, "read")
    values = {}
    for key in FIELDS:
        if key not in table:
            raise where.error(
                path, None, f"missing {key} (give its value and source, or unknown and what was read)"
            )
        values[key] = _sourced(where, path, key, table[key])
    return StateRules(code, name, read, values)


def _sourced(where: _Where, path: str, key: str, entry: Any) -> Sourced[Any]:
    if not isinstance(entry, dict) or "value" not in entry:
        raise where.error(
            path, key, 'must be { value = ..., source = "..." } or { value = "unknown", read = "..." }'
        )
    _only(where, entry, {"value", "source", "read"}, path)
    value = entry["value"]
    if value == UNKNOWN:
        if "source" in entry:
            raise where.error(path, key, "an unknown value has no source: say what was read instead")
        if not isinstance(entry.get("read"), str) or not entry["read"].strip():
            raise where.error(path, key, "an unknown value must say what was read (read = ...)")
        return Sourced(None, read=entry["read"].strip())
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise where.error(path, key, "has no source: name the rule (number and title) it comes from")
    return Sourced(_value(where, path, key, value), source=source.strip(), read=entry.get("read"))


def _value(where: _Where, path: str, key: str, value: Any) -> Any:
    """Checks one field's value; returns it in the form the server uses."""
    problem, checked = _CHECKS[key](value)
    if problem:
        raise where.error(path, key, problem)
    if key == "photos":
        return {group: _kinds(where, path, key, kinds) for group, kinds in checked.items()}
    return checked


Check = Callable[[Any], tuple[str | None, Any]]


def _flag(value: Any) -> tuple[str | None, Any]:
    return (None, value) if isinstance(value, bool) else ("must be true or false", None)


def _count(low: int) -> Check:
    def check(value: Any) -> tuple[str | None, Any]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be a whole number of at least {low}", None
        return None, value

    return check


def _choice(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> tuple[str | None, Any]:
        if value not in choices:
            return f"must be one of {', '.join(choices)} (not {value!r})", None
        return None, value

    return check


def _subset(vocabulary: tuple[str, ...], what: str) -> Check:
    def check(value: Any) -> tuple[str | None, Any]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be a list of {what}s ({', '.join(vocabulary)})", None
        for item in value:
            if item not in vocabulary:
                return f"unknown {what} {item!r} (one of {', '.join(vocabulary)})", None
        return None, frozenset(value)

    return check


def _photo_table(value: Any) -> tuple[str | None, Any]:
    if not isinstance(value, dict) or not value:
        return f"must map dosage form groups ({', '.join(FORM_GROUPS)}) to views", None
    for group in value:
        if group not in FORM_GROUPS:
            return f"unknown dosage form group {group!r} (one of {', '.join(FORM_GROUPS)})", None
    return None, value


_CHECKS: dict[str, Check] = {
    "telepharmacy_allowed": _flag,
    "max_sites_per_pharmacist": _count(1),
    "counselling_fills": _subset(FILL_TYPES, "fill type"),
    "counselling_kind": _choice(COUNSELLING_KINDS),
    "counselling_by_video": _flag,
    "counselling_may_decline": _flag,
    "schedules_allowed": _subset(SCHEDULES, "DEA schedule"),
    "photos": _photo_table,
    "recording_consent": _choice(CONSENT_RULES),
    **{name: _count(0) for name in RETENTION_FIELDS},
}


# -- a site's own rules: stricter than its state's, never looser ------------------------------------


def _site(where: _Where, code: str, table: Any, states: dict[str, StateRules]) -> StateRules:
    path = f"sites.{code}"
    if not isinstance(table, dict):
        raise where.error("", path, "must be a table")
    _only(where, table, {"state", "why", *FIELDS}, path)
    us_state = _text(where, table, path, "state")
    why = _text(where, table, path, "why")
    base = states.get(us_state)
    if base is None:
        raise where.error(path, "state", f"no rules for {us_state!r} in the state rules file")
    values = dict(base.values)
    for key in FIELDS:
        if key not in table:
            continue
        value = _value(where, path, key, table[key])
        state_photos = base[key].value
        if key == "photos" and state_photos:
            value = {**state_photos, **value}  # the forms the site does not name keep the state's views
        problem = _looser(key, value, base[key].value)
        if problem:
            raise where.error(
                path, key, f"looser than {base.name}'s rule ({problem}): a site may only be stricter"
            )
        values[key] = Sourced(value, source=base[key].source, read=base[key].read, site=why)
    return StateRules(us_state, f"{base.name}, site {code}", base.read, values)


def _looser(key: str, site: Any, state: Any) -> str | None:
    """Why the site's value is looser than the state's, or None. Against an unknown state value any
    value is allowed: it adds a limit where none is known."""
    return None if state is None else _LOOSER[key](site, state)


def _fewer_photos(site: dict[str, Any], state: dict[str, Any]) -> str | None:
    for group, kinds in state.items():
        missing = [k for k in kinds if k not in site.get(group, kinds)]
        if missing:
            return f"drops the {', '.join(missing)} view of {group}"
    return None


def _extra(what: str) -> Callable[[Any, Any], str | None]:
    def looser(site: frozenset[str], state: frozenset[str]) -> str | None:
        extra = sorted(site - state, key=_order)
        return f"{what} {', '.join(extra)}" if extra else None

    return looser


def _dropped(site: frozenset[str], state: frozenset[str]) -> str | None:
    missing = sorted(state - site, key=_order)
    return f"drops counselling on {', '.join(missing)} fills" if missing else None


def _shorter(site: int, state: int) -> str | None:
    return f"{site} days where the state keeps {state}" if site < state else None


_LOOSER: dict[str, Callable[[Any, Any], str | None]] = {
    "telepharmacy_allowed": lambda site, state: (
        "the state does not allow telepharmacy sites" if site and not state else None
    ),
    "max_sites_per_pharmacist": lambda site, state: (
        f"{site} sites where the state allows {state}" if site > state else None
    ),
    "schedules_allowed": _extra("allows"),
    "counselling_fills": _dropped,
    "counselling_kind": lambda site, state: (
        "an offer where the state requires counselling" if site == "offer" and state == "give" else None
    ),
    "counselling_by_video": lambda site, state: (
        "not by video where the state requires video" if state and not site else None
    ),
    "counselling_may_decline": lambda site, state: (
        "lets the patient decline where the state does not" if site and not state else None
    ),
    "recording_consent": lambda site, state: (
        "one party's consent where the state needs all parties'" if site != state == "all_party" else None
    ),
    "photos": _fewer_photos,
    **{name: _shorter for name in RETENTION_FIELDS},
}
