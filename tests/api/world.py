"""A small pharmacy network for API tests: sites in two states, people, prescriptions, clients."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientWebSocketResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from server.app import create_app
from server.config import Config
from server.db.engine import Database
from server.db.models import ConsoleSession, utcnow
from server.db.models import User as DbUser
from server.evidence.kinds import VIDEO_KINDS
from server.services import SERVICES, Services

PASSWORD = "correct-horse-battery"


def server_config(tmp_path: Path, database_url: str, **overrides: Any) -> Config:
    return Config(
        data_dir=tmp_path / "data",
        database_url=database_url,
        password_time_cost=1,
        password_memory_kib=1024,
        media_workers=0,
        lease_sweep_seconds=0.2,
        **overrides,
    )


class ServerClock:
    """The server's clock in a test: the real time, moved on at will, so a lease runs out without a wait.

    It keeps running between moves, so fills made one after another keep their order by age.
    """

    def __init__(self) -> None:
        self.ahead = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return utcnow() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += dt.timedelta(seconds=seconds)


def until_serving(served: subprocess.Popen[Any], port: int, timeout: float = 60) -> None:
    """Waits until `tp-server serve`, started as `served`, answers /healthz on `port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            assert time.monotonic() < deadline and served.poll() is None, "the server did not start"
            time.sleep(0.2)


class FullDisk:
    """A service's database with its disk full while `full` is set: each write is refused as SQLite
    refuses it (counted in `refused`); everything else is the database's own."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.full = True
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        if self.full:
            self.refused += 1
            raise OperationalError("UPDATE", {}, sqlite3.OperationalError("database or disk is full"))
        async with self.db.write() as s:
            yield s

    async def said_once(self, caplog: pytest.LogCaptureFixture) -> str:
        """Waits until three writes were refused; the one error logged meanwhile, without a traceback."""
        for _ in range(100):
            if self.refused >= 3:
                break
            await asyncio.sleep(0.05)
        assert self.refused >= 3
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(failures) == 1, [r.getMessage() for r in failures]
        assert failures[0].exc_info is None and "Traceback" not in caplog.text
        return failures[0].getMessage()

    async def room_again(self, caplog: pytest.LogCaptureFixture, line: str) -> None:
        """Frees the disk and waits until `line` is logged."""
        self.full = False
        for _ in range(100):
            if line in caplog.text:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never logged: {line}")


@dataclass
class User:
    """One signed-in person: a console session (cookie + CSRF) or a site device token."""

    client: TestClient[web.Request, web.Application]
    username: str
    csrf: str | None = None
    token: str | None = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if self.csrf:
            h["X-CSRF-Token"] = self.csrf
        return h

    async def request(self, method: str, path: str, **kw: Any) -> ClientResponse:
        kw["headers"] = self._headers(kw.get("headers"))
        return await self.client.request(method, path, **kw)

    async def get(self, path: str, **kw: Any) -> ClientResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> ClientResponse:
        return await self.request("POST", path, **kw)

    async def step_up(self) -> None:
        """Proves who they are again with the password (no second factor enrolled), as the console's
        prompt does before a decision that asks for it (a product-check flag overridden, Schedule II)."""
        await self.json("POST", "/api/v1/session/proof", json={"password": PASSWORD})

    async def json(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        resp = await self.request(method, path, **kw)
        body = await resp.json()
        assert resp.status == status, (resp.status, body)
        return body


@dataclass
class World:
    server: TestServer
    services: Services
    clock: ServerClock
    clients: list[TestClient[web.Request, web.Application]] = field(default_factory=list)
    sites: dict[str, int] = field(default_factory=dict)
    prescriptions: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    async def anonymous(self) -> TestClient[web.Request, web.Application]:
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    async def login(self, username: str) -> User:
        client = await self.anonymous()
        resp = await client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
        body = await resp.json()
        assert resp.status == 200, body
        return User(client, username, csrf=body["csrf_token"])

    async def set_stage(self, username: str, stage: str) -> None:
        """Puts the user's newest console session in a stage (a route that serves only that stage)."""
        async with self.services.db.write() as s:
            newest = await s.scalar(
                select(func.max(ConsoleSession.id))
                .join(DbUser, DbUser.id == ConsoleSession.user_id)
                .where(DbUser.username == username)
            )
            await s.execute(update(ConsoleSession).where(ConsoleSession.id == newest).values(stage=stage))
        self.services.auth.forget_all()

    async def device(self, username: str) -> User:
        client = await self.anonymous()
        return User(client, username, token=self.tokens[username])

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        await self.server.close()


async def build_world(tmp_path: Path, database_url: str, *, pv1: bool = False, **config: Any) -> World:
    """Sites: ND-1 and ND-2 in North Dakota, MN-1 in Minnesota. Pharmacists: nd_rph (ND), mn_rph (MN),
    both_rph (ND and MN), lapsed_rph (ND license expired). Technicians: tech_nd1, tech_nd2, tech_mn1.

    The sites do without data-entry verification (PV1) unless `pv1`: a test about fills makes a
    prescription and fills it at once, and the PV1 tests turn it on."""
    clock = ServerClock()
    app = create_app(server_config(tmp_path, database_url, **config), schema="create", clock=clock)
    server = TestServer(app)
    await server.start_server()
    svc = app[SERVICES]
    world = World(server, svc, clock)
    d = svc.directory
    for code, name, state in (
        ("ND-1", "Hettinger Drug", "ND"),
        ("ND-2", "Mott Pharmacy", "ND"),
        ("MN-1", "Lake Bronson Rx", "MN"),
    ):
        world.sites[code] = (await d.create_site(None, code, name, state, requires_pv1=pv1)).id
    await d.create_user(None, "admin", "Ada Admin", "admin", PASSWORD)
    today = dt.date.today()
    for username, states in (
        ("nd_rph", [("ND", 365)]),
        ("mn_rph", [("MN", 365)]),
        ("both_rph", [("ND", 365), ("MN", 365)]),
        ("lapsed_rph", [("ND", -1)]),
    ):
        await d.create_user(None, username, username.replace("_", " ").title(), "pharmacist", PASSWORD)
        for state, days in states:
            await d.add_license(None, username, state, f"{state}-{username}", today + dt.timedelta(days=days))
    for username, site in (("tech_nd1", "ND-1"), ("tech_nd2", "ND-2"), ("tech_mn1", "MN-1")):
        await d.create_user(None, username, username, "technician", PASSWORD, site_code=site)
        world.tokens[username] = await svc.auth.issue_device_token(None, username, f"{site} counter")
    return world


def rx_body(rx_number: str, ndc: str = "0378-1805-01", **over: Any) -> dict[str, Any]:
    body = {
        "rx_number": rx_number,
        "patient_name": "Jane Q. Patient",
        "patient_dob": "1948-02-29",
        "prescriber": "Dr. Ruth Prescriber",
        "drug": "Metformin HCl",
        "strength": "500 mg",
        "dosage_form": "tablet",
        "ndc": ndc,
        "quantity": 60,
        "days_supply": 30,
        "directions": "Take one tablet by mouth twice daily with meals",
        "fill_type": "new",
    }
    body.update(over)
    return body


def new_fill_id() -> str:
    return str(uuid.uuid4())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tus_metadata(**values: str) -> str:
    import base64

    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def upload(
    user: User,
    fill_id: str,
    kind: str,
    data: bytes,
    filename: str = "photo.jpg",
    *,
    claimed_sha256: str | None = None,
) -> ClientResponse:
    """Uploads one file over tus in a single PATCH; returns the final response."""
    meta = tus_metadata(fill_id=fill_id, kind=kind, filename=filename, sha256=claimed_sha256 or sha256(data))
    created = await user.post(
        "/api/v1/uploads",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta},
    )
    if created.status != 201:
        return created
    return await user.request(
        "PATCH",
        created.headers["Location"],
        data=data,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )


_PHOTO_CACHE: dict[tuple[str, int], bytes] = {}
# Photos of fills that pass no seed: each fill its own, so no fill looks like a reused photo of another.
_FRESH_SEEDS = itertools.count(10_000)


def photo(kind: str, seed: int = 0) -> bytes:
    """A small plain JPEG per kind, different per seed (to the eye and to the perceptual hash), cached."""
    import io
    import random

    from PIL import Image, ImageDraw

    key = (kind, seed)
    if key not in _PHOTO_CACHE:
        # A coarse random pattern of light and dark patches, drawn from (kind, seed): any two differ in
        # about half of the perceptual hash's bits, far beyond what counts as a reused photo.
        rng = random.Random(f"{kind}:{seed}")
        patches = Image.new("L", (16, 12))
        patches.putdata([rng.randrange(30, 226) for _ in range(16 * 12)])
        im = Image.merge("RGB", [patches.point(lambda v, k=k: min(255, v + k)) for k in (20, 10, 0)]).resize(
            (1280, 960), Image.Resampling.BILINEAR
        )
        draw = ImageDraw.Draw(im)
        for i in range(0, 1280, 40):
            draw.line([(i, 0), (1280 - i, 960)], fill=(seed * 7 % 255, 60, 90), width=3)
        draw.text((40, 40), f"{kind} {seed}", fill=(0, 0, 0))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        _PHOTO_CACHE[key] = buf.getvalue()
    return _PHOTO_CACHE[key]


REQUIRED = ("stock_bottle", "pills", "vial_label")


async def queued_fill(
    world: World,
    tech: User,
    rx_id: int,
    *,
    priority: str = "routine",
    barcodes: list[str] | None = None,
    seed: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Creates, photographs and submits a fill (with any other `fields` of its body, such as
    counted_quantity); returns it as the server shows it (queued).

    Its photos are its own unless two fills are given the same seed."""
    if seed is None:
        seed = next(_FRESH_SEEDS)
    fill_id = new_fill_id()
    await tech.json(
        "POST",
        "/api/v1/fills",
        201,
        json={
            "id": fill_id,
            "prescription_id": rx_id,
            "priority": priority,
            "barcodes": barcodes or [],
            **fields,
        },
    )
    for i, kind in enumerate(REQUIRED):
        resp = await upload(tech, fill_id, kind, photo(kind, seed * 10 + i))
        assert resp.status == 204, (resp.status, await resp.text())
    return dict(await tech.json("POST", f"/api/v1/fills/{fill_id}/submit"))


def approval(fill: dict[str, Any], reason: str = "verified_visually") -> dict[str, Any]:
    """An approval of the fill as the console sends it once everything was seen: every photo and video
    on screen, and each flag acknowledged with `reason`."""
    return {
        "version": fill["version"],
        "outcome": "approve",
        "views_seen": [
            {"media_id": m["id"], "seconds": 2.5, "max_zoom": 1.0, "played_fraction": 1.0}
            if m["kind"] in VIDEO_KINDS
            else {"media_id": m["id"], "seconds": 2.5, "max_zoom": 1.0}
            for m in fill["media"]
        ],
        "acknowledgements": [{"flag": f["code"], "reason": reason} for f in fill["flags"]],
    }


async def verified(world: World, rx_id: int, pharmacist: str = "nd_rph") -> dict[str, Any]:
    """Verifies a prescription's data entry (PV1) as a pharmacist licensed in its site's state, as the
    console does (claim, look at the source, then verify the version claimed, each difference from the
    message confirmed and every page of the original seen); returns the prescription's PV1 view. For
    a world built with pv1=True: a fill of a prescription is refused until this is done."""
    rph = await world.login(pharmacist)
    claimed = await rph.json("POST", f"/api/v1/prescriptions/{rx_id}/claim")
    return dict(await rph.json("POST", f"/api/v1/prescriptions/{rx_id}/verification", json=checked(claimed)))


def checked(view: dict[str, Any]) -> dict[str, Any]:
    """A verification of the PV1 view as the console sends it once everything was checked."""
    return {
        "version": view["prescription"]["version"],
        "outcome": "verify",
        "differences_confirmed": view["source"]["differences"],
        "original_seen": [page["id"] for page in view["original"]],
    }


async def approved_fill(world: World) -> str:
    """A fill of ND-1 submitted, claimed and approved by nd_rph; returns its id."""
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, tech, rx["id"])
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json=approval(claimed),
    )
    return str(fill["id"])


async def connect(user: User) -> ClientWebSocketResponse:
    """The user's websocket, past its hello: a console by its Origin, a site by its device token."""
    headers = (
        {"Authorization": f"Bearer {user.token}"}
        if user.token
        else {"Origin": str(user.client.make_url("/")).rstrip("/")}
    )
    ws = await user.client.ws_connect("/api/v1/ws", headers=headers)
    assert (await ws.receive_json())["type"] == "hello"
    return ws


@dataclass
class Nodes:
    world: World  # node A: built with the test world
    b: TestServer
    clients: list[TestClient[Any, Any]]

    async def login(self, server: TestServer, username: str) -> User:
        client = TestClient(server)
        await client.start_server()
        self.clients.append(client)
        resp = await client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
        assert resp.status == 200
        return User(client, username, csrf=(await resp.json())["csrf_token"])

    async def device(self, server: TestServer, username: str) -> User:
        client = TestClient(server)
        await client.start_server()
        self.clients.append(client)
        return User(client, username, token=self.world.tokens[username])


@contextlib.asynccontextmanager
async def two_nodes(tmp_path: Path, postgres_url: str, **config: Any) -> AsyncIterator[Nodes]:
    """Two server instances on one PostgreSQL database, each with its own data dir and these `config`
    settings: the test world on A, and B."""
    world = await build_world(tmp_path / "a", postgres_url, **config)
    b = TestServer(create_app(server_config(tmp_path / "b", postgres_url, **config), schema="none"))
    await b.start_server()
    n = Nodes(world, b, [])
    try:
        yield n
    finally:
        for c in n.clients:
            await c.close()
        await b.close()
        await world.close()
