"""A real server process with a seeded site, a pharmacist who decides over the API, and tp-site runs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from remote_site_client import config as site_config
from remote_site_client.config import SiteConfig
from server.config import Config
from server.db.engine import Database
from server.db.migrate import upgrade
from server.directory import Directory
from server.security.auth import Auth
from server.security.passwords import Passwords
from tests.api.world import approval
from tests.api.world import rx_body as api_rx_body

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"
TECH = "tech_nd1"
PHARMACIST = "rph_nd"
NDC = "0378-1805-01"
OTHER_NDC = "0093-7214-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(data_dir: Path) -> str:
    """One site in North Dakota (without PV1), its technician (with a device token) and a licensed
    pharmacist."""
    config = Config(data_dir=data_dir, password_time_cost=1)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    try:
        await upgrade(db)
        passwords = Passwords(1)
        d = Directory(db, passwords)
        # Without data-entry verification: a test about fills enters a prescription and fills it at
        # once. The PV1 tests turn it on (tests/site_client/test_pv1_cli.py).
        await d.create_site(None, "ND-1", "Hettinger Drug", "ND", requires_pv1=False)
        await d.create_user(None, TECH, "Terry Tech", "technician", PASSWORD, site_code="ND-1")
        await d.create_user(None, PHARMACIST, "Pat Pharmacist", "pharmacist", PASSWORD)
        await d.add_license(None, PHARMACIST, "ND", "ND-1234", dt.date.today() + dt.timedelta(days=365))
        return await Auth(db, config, passwords).issue_device_token(None, TECH, "ND-1 counter")
    finally:
        await db.dispose()


class ServerProcess:
    """`tp-server serve` on a data folder: started, stopped politely, or killed, and started again."""

    def __init__(self, data_dir: Path, port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", "--data-dir", str(self.data_dir),
            "--host", "127.0.0.1", "--port", str(self.port),
            cwd=ROOT, stdout=log, stderr=log, env=env,
        )  # fmt: skip
        log.close()
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if self.proc.returncode is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError("server did not start")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.returncode is not None:
            self.proc = None
            return
        # The server runs a process pool: end the whole group we started, by its id.
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)


@dataclass
class Site:
    """The site's tp-site: its config file and data folder; runs the command line as a subprocess."""

    config_path: Path
    config: SiteConfig

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "TP_SITE_CONFIG": str(self.config_path), **extra}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "remote_site_client", *args]

    async def run(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Runs `tp-site ARGS` as a technician types it; `env` adds variables (a time zone, say)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            cwd=ROOT,
            env=self.env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(f"tp-site {args} timed out: {out.decode()} {err.decode()}") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args), cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def retarget(self, server_url: str) -> None:
        self.config = self.config.with_(server_url=server_url)
        site_config.save(self.config, self.config_path)


def make_site(tmp_path: Path, server_url: str, token: str, **tuning: Any) -> Site:
    cfg = SiteConfig(
        server_url=server_url,
        token=token,
        data_dir=tmp_path / "site-data",
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        **tuning,
    )
    path = tmp_path / "site-config" / "config.json"
    site_config.save(cfg, path)
    return Site(path, cfg)


class Pharmacist:
    """A pharmacist at the console, over the API: session cookie plus CSRF header."""

    def __init__(self, server_url: str) -> None:
        self.url = server_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def __aenter__(self) -> Pharmacist:
        async with self.http.post(
            self.url + "/api/v1/session", json={"username": PHARMACIST, "password": PASSWORD}
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            self.csrf = body["csrf_token"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        async with self.http.request(
            method, self.url + path, json=body, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            data = await resp.json()
            assert resp.status == status, (resp.status, data)
            return data

    async def decide(
        self, fill_id: str, outcome: str, reasons: list[str] | None = None, note: str | None = None
    ) -> Any:
        claimed = (await self.call("POST", f"/api/v1/fills/{fill_id}/claim"))["fill"]
        if outcome == "approve":
            # Confirms who they are first, as the console asks before an approval over a product-check flag.
            await self.call("POST", "/api/v1/session/proof", {"password": PASSWORD})
            return await self.call("POST", f"/api/v1/fills/{fill_id}/decision", approval(claimed))
        return await self.call(
            "POST",
            f"/api/v1/fills/{fill_id}/decision",
            {"version": claimed["version"], "outcome": outcome, "reason_codes": reasons or [], "note": note},
        )


async def site_api(server_url: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, server_url + path, json=body) as resp,
    ):
        return resp.status, await resp.json()


def rx_body(rx_number: str, ndc: str = NDC) -> dict[str, Any]:
    return api_rx_body(rx_number, ndc)


def copy_data(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


EXPIRY = date(2028, 6, 30)
