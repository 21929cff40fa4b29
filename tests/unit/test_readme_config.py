"""The README's configuration tables name every setting the code reads, and nothing else."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from pathlib import Path

from remote_site_client import cli as site_cli
from remote_site_client.config import SiteConfig
from server import cli as server_cli

ROOT = Path(__file__).resolve().parents[2]
ENV_NAME = re.compile(r"^TP_[A-Z0-9_]+$")


def _table_names(heading: str) -> set[str]:
    """The backquoted names in the first column of the table under `### heading` of the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n### {heading}\n", 1)[1].split("\n#", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def _environment_reads(folder: Path) -> set[str]:
    """TP_* names the code under `folder` reads from the environment: `environ.get(NAME)`, `env[NAME]`."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }

        def name_of(expr: ast.expr, constants: dict[str, str] = constants) -> str | None:
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                return expr.value
            if isinstance(expr, ast.Name):
                return constants.get(expr.id)
            return None

        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                owner, key = ast.unparse(node.func.value), name_of(node.args[0])
            elif isinstance(node, ast.Subscript):
                owner, key = ast.unparse(node.value), name_of(node.slice)
            else:
                continue
            if key and ENV_NAME.match(key) and owner.split(".")[-1] in ("environ", "env"):
                found.add(key)
    return found


def _options(parser: argparse.ArgumentParser, *commands: str) -> set[str]:
    """The option strings of a parser (its own, then of each sub-command named), `--help` aside."""
    names: set[str] = set()
    for p in [parser, *(_subparser(parser, c) for c in commands)]:
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                names.update(action.option_strings)
    return names


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise AssertionError(f"no sub-command {command}")


def test_server_settings_are_the_readmes() -> None:
    in_code = _environment_reads(ROOT / "server") | _options(server_cli.parser(), "serve")
    assert _table_names("Server (`tp-server`)") == in_code


def test_site_client_settings_are_the_readmes() -> None:
    in_code = (
        _environment_reads(ROOT / "remote_site_client")
        | _options(site_cli.parser(), "enroll")
        | {f.name for f in dataclasses.fields(SiteConfig)}
    )
    assert _table_names("Site client (`tp-site`)") == in_code


def test_the_scan_finds_a_setting_read_by_name_or_through_a_constant(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text(
        "import os\n"
        'SHINY = "TP_SHINY"\n'
        "env = os.environ\n"
        "a = os.environ.get(SHINY)\n"
        'b = env["TP_OTHER"]\n'
        'c = {"TP_NOT_READ": 1}.get("TP_NOT_READ")\n'
    )
    assert _environment_reads(tmp_path) == {"TP_SHINY", "TP_OTHER"}
