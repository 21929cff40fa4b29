"""Shared fixtures: a database per test on SQLite and on PostgreSQL, a running app, a seeded world."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.config import ObjectStorage
from tests.api.world import Nodes, two_nodes
from tests.object_storage import moto_server, new_bucket

PG_ADMIN_DSN = os.environ.get("TP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TESTS = Path(__file__).parent
# Each folder of tests is one kind (pyproject.toml registers the markers): `-m "unit or api"` picks some.
KIND_OF_FOLDER = {
    "unit": "unit",
    "api": "api",
    "migration": "migration",
    "site_client": "site",
    "browser": "browser",
    "consult": "consult",
    "station": "station",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its kind, and with what it needs: PostgreSQL or the browser."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in KIND_OF_FOLDER:
            item.add_marker(KIND_OF_FOLDER[folder])
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_url" in fixtures:
            item.add_marker("postgres")
        if "browser" in fixtures:
            item.add_marker("browser")


def _pg_reachable() -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    ok = _pg_reachable()
    if not ok and os.environ.get("TP_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (TP_REQUIRE_POSTGRES=1) but {PG_ADMIN_DSN} is unreachable")
    return ok


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _postgres_database(available: bool) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    if not available:
        pytest.skip("PostgreSQL unreachable (CI sets TP_REQUIRE_POSTGRES=1 and fails instead)")
    name = f"tp_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool) -> Iterator[str]:
    """A fresh, empty database for one test: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
        return
    with _postgres_database(postgres_available) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_available: bool) -> Iterator[str]:
    """For what only PostgreSQL does: several server nodes on one database."""
    with _postgres_database(postgres_available) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
async def nodes(tmp_path: Path, postgres_url: str) -> AsyncIterator[Nodes]:
    """Two server instances on one PostgreSQL database (tests/api/world.py)."""
    async with two_nodes(tmp_path, postgres_url) as n:
        yield n


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, started once for the session in its own process (tests/object_storage.py)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def object_storage(s3_endpoint: str) -> ObjectStorage:
    """A new, empty bucket on the S3 test server, as the server's settings name it."""
    return new_bucket(s3_endpoint)
