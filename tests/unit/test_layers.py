"""The layers of the code, checked by reading every import of server/ and remote_site_client/.

Every import counts: at module level, inside functions, under TYPE_CHECKING, relative ones, and
``__import__``/``importlib.import_module`` of a constant name. The rules:

- The domain never imports the API: only ``server.api`` itself, the application factory
  (``server.app``) and the command line that starts it (``server.cli``) import ``server.api``.
  The API may import the domain.
- The database layer imports nothing above it: ``server.db`` imports only ``server.db`` (not even
  ``server.config`` or ``server.errors``: it is handed a URL, and its errors are SQLAlchemy's).
- Media storage and processing know no domain: ``server.media`` imports only ``server.media``,
  ``server.db``, ``server.evidence``, ``server.config`` and ``server.errors``. Who may read a medium
  is a policy handed to it where the app is made.
- Security and the audit trail do not import each other: the trail sits just above the database
  (``server.audit`` imports only ``server.audit`` and ``server.db``) and records any ``Actor``, so
  only the one way remains, security appending sign-ins to the trail as every service does.
- The shared product rules (``server.evidence``) import nothing else of ``server``.
- The site client imports nothing of ``server`` but ``server.evidence``.
- No import cycle between the packages of ``server`` (``server.fills``, ``server.api``, a top-level
  module such as ``server.directory``, ...), nor between any two modules, even through an import
  inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping, Set
from pathlib import Path

import pytest

from server.media.workers import PRELOAD

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("server", "remote_site_client")

# Who may import the API besides the API itself.
API_USERS = ("server.app", "server.cli")
# For each layer: the only parts of the code (within CHECKED) it may import.
ONLY = {
    "server.db": ("server.db",),
    "server.media": ("server.media", "server.db", "server.evidence", "server.config", "server.errors"),
    "server.audit": ("server.audit", "server.db"),
    "server.evidence": ("server.evidence",),
    "remote_site_client": ("remote_site_client", "server.evidence"),
}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: str) -> tuple[str, bool]:
    """The dotted name of the module at a path relative to the repository, and whether it is a package."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported_names(path: str, source: str, modules: Set[str] = frozenset()) -> set[str]:
    """Every module name the source imports, anywhere in it.

    ``from a import b`` is a.b when that is one of the modules (or a is a top-level package), else a.
    """
    name, is_package = module_name(path)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in modules or origin in CHECKED else origin)
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {n for n in found if any(within(n, top) for top in CHECKED)}


def package_of(name: str) -> str | None:
    """The package of server a module belongs to (server.fills, server.directory), None for others."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "server" and len(parts) > 1 else None


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Each group of more than one node that import one another, sorted (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def violations(sources: Mapping[str, str]) -> list[str]:
    """Every broken rule, one line each, for sources given as {path relative to the repository: text}."""
    found: list[str] = []
    modules = {module_name(path)[0] for path in sources}
    edges: dict[str, set[str]] = {}
    module_edges: dict[str, set[str]] = {}
    for path, source in sorted(sources.items()):
        importer, _ = module_name(path)
        for target in sorted(imported_names(path, source, modules)):
            if target in modules and target != importer:
                module_edges.setdefault(importer, set()).add(target)
            if within(target, "server.api") and not any(
                within(importer, allowed) for allowed in ("server.api", *API_USERS)
            ):
                found.append(f"{importer} imports {target}: the domain never imports the API")
            for layer, allowed in ONLY.items():
                if within(importer, layer) and not any(within(target, a) for a in allowed):
                    found.append(f"{importer} imports {target}: {layer} imports only {', '.join(allowed)}")
            source_package, target_package = package_of(importer), package_of(target)
            if source_package and target_package and source_package != target_package:
                edges.setdefault(source_package, set()).add(target_package)
    found.extend(f"import cycle between {', '.join(group)}" for group in _cycles(edges))
    found.extend(f"import cycle between modules {', '.join(group)}" for group in _cycles(module_edges))
    return found


def code_sources() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for top in CHECKED
        for path in sorted((ROOT / top).rglob("*.py"))
    }


def test_the_code_keeps_its_layers() -> None:
    sources = code_sources()
    assert "server/db/models.py" in sources and "remote_site_client/prepare.py" in sources
    assert violations(sources) == []


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        (
            "server/fills/bad.py",
            "from server.api.shapes import detail_view\n",
            "server.fills.bad imports server.api.shapes: the domain never imports the API",
        ),
        (
            "server/fills/bad.py",
            "def later() -> None:\n    from server.api import table\n",
            "server.fills.bad imports server.api: the domain never imports the API",
        ),
        (
            "server/fills/__init__.py",
            "from ..api import table\n",
            "server.fills imports server.api: the domain never imports the API",
        ),
        (
            "server/consultations/bad.py",
            "import server.api.table\n",
            "server.consultations.bad imports server.api.table: the domain never imports the API",
        ),
        (
            "server/db/bad.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from server.media.ingest import X\n",
            "server.db.bad imports server.media.ingest: server.db imports only server.db",
        ),
        (
            "server/db/bad.py",
            "from server import config\n",
            "server.db.bad imports server.config: server.db imports only server.db",
        ),
        (
            "server/media/bad.py",
            "from server.consultations.service import ConsultationService\n",
            "server.media.bad imports server.consultations.service: server.media imports only",
        ),
        (
            "server/media/bad.py",
            "from server.security.principal import Principal\n",
            "server.media.bad imports server.security.principal: server.media imports only",
        ),
        (
            "server/audit/bad.py",
            "from ..security import principal\n",
            "server.audit.bad imports server.security: server.audit imports only",
        ),
        (
            "server/evidence/bad.py",
            "import importlib\nimportlib.import_module('server.media.images')\n",
            "server.evidence.bad imports server.media.images: server.evidence imports only",
        ),
        (
            "remote_site_client/bad.py",
            "from server.media.images import EXIF_ORIENTATION\n",
            "remote_site_client.bad imports server.media.images: remote_site_client imports only",
        ),
    ],
)
def test_a_bad_import_is_reported(path: str, source: str, expected: str) -> None:
    found = violations({path: source})
    assert any(line.startswith(expected) for line in found), found


def test_an_import_cycle_between_packages_is_reported() -> None:
    sources = {
        "server/reports/dashboard.py": "from server.directory import Directory\n",
        "server/directory.py": "def later() -> None:\n    from server.reports import dashboard\n",
    }
    assert violations(sources) == [
        "import cycle between server.directory, server.reports",
        "import cycle between modules server.directory, server.reports.dashboard",
    ]


def test_an_import_cycle_inside_a_package_is_reported() -> None:
    sources = {
        "server/api/openapi.py": "def document() -> None:\n    from server.api.routes import ROUTES\n",
        "server/api/routes.py": "from server.api import system\n",
        "server/api/system.py": "from server.api.openapi import document\n",
    }
    assert violations(sources) == [
        "import cycle between modules server.api.openapi, server.api.routes, server.api.system"
    ]


def test_what_the_layers_allow_is_not_reported() -> None:
    sources = {
        "server/api/fills.py": "from server.fills.queries import FillQueries\nfrom . import shapes\n",
        "server/app.py": "from server.api.routes import ROUTES\n",
        "server/media/ingest.py": "from server.db.models import Media\nfrom server.evidence import x\n",
        "server/security/auth.py": "from server.audit import chain\n",
        "remote_site_client/prepare.py": "from server.evidence.orientation import EXIF_ORIENTATION\n",
    }
    assert violations(sources) == []


def test_what_the_media_workers_run_imports_no_database_code() -> None:
    """A media worker imports the modules of its jobs: the database layer there would cost each worker
    about 25 MB of memory for nothing."""
    worker_modules = [
        "server.media.workers",
        "server.media.ingest",
        "server.pharmacy_systems.fhir",
        "server.pharmacy_systems.ncpdp",
        *PRELOAD,
    ]
    code = (
        f"import importlib, sys\nfor m in {worker_modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'aiosqlite', "
        "'asyncpg') or m.startswith('server.db')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
