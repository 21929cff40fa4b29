"""schemathesis against the OpenAPI document, as a pharmacist and as a site: no server error, and no
response that contradicts the document (status, content type, body).

The server runs in a thread of its own (schemathesis calls it synchronously over HTTP), on SQLite with
the test world's sites and people. Signing out and revoking device tokens are left out: a generated
request would take away the very credentials the rest of the run uses.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from server.api.openapi import document
from server.api.routes import ROUTES
from server.security.auth import SESSION_COOKIE
from tests.api.world import PASSWORD, World, build_world

# Thousands of generated requests: make test runs them, make test-fast does not.
pytestmark = pytest.mark.slow

# About 5,000 cases in all: two callers, every operation but the two left out.
EXAMPLES = 70
LEFT_OUT = {("DELETE", "/api/v1/session"), ("DELETE", "/api/v1/device-tokens/{token_id}")}

schema = schemathesis.openapi.from_dict(document(ROUTES)).exclude(
    func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in LEFT_OUT
)


class ServedWorld:
    """The test world served from a thread with its own event loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        url = f"sqlite+aiosqlite:///{tmp_path / 'fuzz.sqlite3'}"
        self.world: World = self._run(build_world(tmp_path, url))
        self.base_url = str(self.world.server.make_url("")).rstrip("/")

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self._run(self.world.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWorld]:
    s = ServedWorld(tmp_path_factory.mktemp("fuzz"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def pharmacist(served: ServedWorld) -> dict[str, str]:
    resp = requests.post(
        f"{served.base_url}/api/v1/session", json={"username": "nd_rph", "password": PASSWORD}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    return {
        "Cookie": f"{SESSION_COOKIE}={resp.cookies[SESSION_COOKIE]}",
        "X-CSRF-Token": resp.json()["csrf_token"],
        "Origin": served.base_url,
    }


@pytest.fixture(scope="module")
def site(served: ServedWorld) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.world.tokens['tech_nd1']}"}


# Left out: positive_data_acceptance, which takes any 400 to a schema-valid request for a failure. Rules
# across fields or against stored data (a rejection needs a reason code, a password its strength, a
# username its characters) answer such requests 400 with the reason: the schema alone cannot say them.
# And ignored_auth: it swaps in credentials of its own making, which the headers given here replace
# (tests/api/test_access.py proves every route refuses the anonymous and the roles it does not allow).
NOT_CHECKED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.ignored_auth]

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ
def test_the_api_answers_a_pharmacist_as_documented(
    case: schemathesis.Case, served: ServedWorld, pharmacist: dict[str, str]
) -> None:
    case.call_and_validate(
        base_url=served.base_url, headers=pharmacist, excluded_checks=NOT_CHECKED, timeout=30
    )


@schema.parametrize()
@FUZZ
def test_the_api_answers_a_site_as_documented(
    case: schemathesis.Case, served: ServedWorld, site: dict[str, str]
) -> None:
    case.call_and_validate(base_url=served.base_url, headers=site, excluded_checks=NOT_CHECKED, timeout=30)
