"""A site installed with the `site` dependencies alone: tp-site runs and every module of it imports.

A fresh virtualenv, the project installed from a copy of its sources as `.[site]` at the locked
versions (pip reaches the package index; its cache makes the second run quick). The server's database
drivers and migrations must not be there, and the site client must load nothing of server/ but the
evidence rules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "server", "remote_site_client", "pharmacist_console")

# Every module but __main__ (which runs the program); prints what was imported, and from server/.
IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import remote_site_client
names = [m.name for m in pkgutil.walk_packages(remote_site_client.__path__, "remote_site_client.")]
for name in names:
    if not name.endswith(".__main__"):
        importlib.import_module(name)
print(json.dumps([names, sorted(m for m in sys.modules if m.split(".")[0] == "server")]))
"""

SERVER_ONLY = ("sqlalchemy", "asyncpg", "alembic", "aiosqlite", "argon2", "prometheus_client")
NOT_INSTALLED = f"""
import importlib.util, json
print(json.dumps([m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m) is not None]))
"""


def run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.site
@pytest.mark.timeout(240)
def test_site_group_alone_runs_tp_site(tmp_path: Path) -> None:
    # A copy, so that building the package leaves nothing (build/, *.egg-info) in the working tree.
    src = tmp_path / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / "bin"
    run(
        bin_dir / "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", ROOT / "requirements.lock", f"{src}[site]",
    )  # fmt: skip

    assert "enroll" in run(bin_dir / "tp-site", "--help")
    modules, from_server = json.loads(run(bin_dir / "python", "-c", IMPORT_EVERY_MODULE))
    in_tree = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "remote_site_client").rglob("*.py")
    } - {"remote_site_client"}
    assert set(modules) == in_tree
    assert [m for m in from_server if m != "server" and not m.startswith("server.evidence")] == []
    assert json.loads(run(bin_dir / "python", "-c", NOT_INSTALLED)) == []
