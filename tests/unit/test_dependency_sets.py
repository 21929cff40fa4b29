"""pyproject.toml's dependency sets against requirements.lock and against each other.

The lock pins the `dev` tree that `make` installs; each role's set is checked through the installed
packages' own metadata, so a dependency that drags in another role's drivers fails here, before any
install does.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NAME = canonicalize_name(PROJECT["name"])
# Installed to build the project in place (`pip install --no-build-isolation -e .`), required by nothing.
BUILD_ONLY = {canonicalize_name("setuptools")}
SERVER_ONLY = {"sqlalchemy", "aiosqlite", "asyncpg", "alembic", "argon2-cffi", "prometheus-client"}


def lock_pins() -> dict[NormalizedName, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def own_requirements(extras: set[str]) -> list[Requirement]:
    """The project's requirements for these extras, its references to its own extras followed."""
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PROJECT["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == NAME:
                todo += req.extras
            else:
                found.append(req)
    return found


def closure(extras: set[str]) -> set[NormalizedName]:
    """Every distribution an install of the project with these extras brings (from installed metadata)."""
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    todo = own_requirements(extras)
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(req.name) or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(dep)
    return {name for name, _ in seen}


def test_every_pin_in_pyproject_is_the_locked_version() -> None:
    lock = lock_pins()
    for req in own_requirements(set(PROJECT["optional-dependencies"])):
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req} is not an exact pin"
        assert lock.get(canonicalize_name(req.name)) == spec.version, (
            f"pyproject pins {req}, requirements.lock {lock.get(canonicalize_name(req.name))}"
        )


def test_lock_holds_the_dev_tree_and_nothing_else() -> None:
    locked = set(lock_pins())
    tree = closure({"dev"})
    assert sorted(tree - locked) == [], "in the dev tree but not pinned in requirements.lock"
    assert sorted(locked - tree - BUILD_ONLY) == [], "pinned in requirements.lock but required by nothing"


def test_installed_versions_are_the_locked_ones() -> None:
    for name, version in lock_pins().items():
        assert importlib.metadata.version(name) == version, f"{name}: run `make` to install the lock"


def test_a_site_install_brings_no_server_drivers_and_a_server_install_no_webrtc() -> None:
    assert closure({"site"}) & SERVER_ONLY == set()
    server = closure({"server"})
    assert "aiortc" not in server
    assert "websockets" not in server
    assert {"av", "sqlalchemy", "alembic"} <= server


def test_test_and_bench_tools_stay_out_of_the_roles() -> None:
    roles = closure({"site"}) | closure({"server"})
    assert {"tuspy", "psutil", "pytest", "playwright"} & roles == set()
