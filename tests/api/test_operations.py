"""What an operator relies on: health, metrics, several nodes on PostgreSQL, logs free of patient data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.app import create_app
from server.cli import main
from server.db.engine import Database
from server.db.migrate import alembic_config, upgrade
from server.realtime import journal
from server.realtime.bus import LocalBus, PostgresBus
from server.realtime.hub import Hub
from server.security.principal import Principal, Role
from tests.api.world import (
    World,
    approved_fill,
    build_world,
    queued_fill,
    rx_body,
    server_config,
    until_serving,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_health_and_metrics(world: World) -> None:
    anon = await world.anonymous()
    health = await anon.get("/healthz")
    body = await health.json()
    assert health.status == 200 and body["status"] == "ok"
    await approved_fill(world)
    text = await (await anon.get("/metrics")).text()
    assert 'tp_fills{state="approved"} 1.0' in text
    assert 'tp_turnaround_seconds_count{outcome="approved"} 1.0' in text
    assert "tp_http_requests_total" in text
    # The database's own path only where the server holds it (SQLite).
    for path in ("media", "uploads", *(["database"] if body["database"] == "sqlite" else [])):
        assert f'tp_storage_free_bytes{{path="{path}"}}' in text
    assert "Jane" not in text


async def test_patient_data_never_reaches_the_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tech = await world.device("tech_nd1")
    rx = await tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("RX1", patient_name="Zelda Uniquename")
    )
    fill = await queued_fill(world, tech, rx["id"])
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json={
            "version": claimed["version"],
            "outcome": "reject",
            "reason_codes": ["other"],
            "note": "Zelda Uniquename's label shows the wrong strength",
        },
    )
    # A duplicate prescription fails inside the database; its error names no patient either.
    await tech.json(
        "POST", "/api/v1/prescriptions", 409, json=rx_body("RX1", patient_name="Zelda Uniquename")
    )
    assert caplog.records, "the flow should have logged something"
    assert all("Zelda" not in r.getMessage() and "Uniquename" not in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
async def test_an_event_committed_on_one_node_reaches_a_console_on_another(
    tmp_path: Path, postgres_url: str
) -> None:
    database_url = postgres_url

    world = await build_world(tmp_path / "a", database_url)
    node_b = TestServer(create_app(server_config(tmp_path / "b", database_url), schema="none"))
    await node_b.start_server()
    try:
        rph_b = TestClient(node_b)
        await rph_b.start_server()
        resp = await rph_b.post(
            "/api/v1/session", json={"username": "nd_rph", "password": "correct-horse-battery"}
        )
        assert resp.status == 200
        ws = await rph_b.ws_connect("/api/v1/ws", headers={"Origin": str(rph_b.make_url("/")).rstrip("/")})
        assert (await ws.receive_json())["type"] == "hello"
        tech = await world.device("tech_nd1")
        rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
        fill = await queued_fill(world, tech, rx["id"])  # committed on node A
        async with asyncio.timeout(3):
            while True:
                event = await ws.receive_json()
                if event["type"] == "fill.queued":
                    break
        assert event["fill_id"] == fill["id"]
        await ws.close()
        await rph_b.close()
    finally:
        await node_b.close()
        await world.close()


@pytest.mark.postgres
async def test_a_committed_event_notifies_other_nodes_with_its_id_and_a_rolled_back_one_does_not(
    postgres_url: str,
) -> None:
    """Other nodes learn of a commit from its NOTIFY (the one-second poll is only a safety net)."""
    db = Database(postgres_url)
    await db.create_schema()
    bus = PostgresBus(db.url)
    await bus.start()
    try:
        for _ in range(2):
            async with db.write() as s:
                last = await journal.record(db, s, "fill.queued", site_id=None, us_state="ND", payload={})
        while not bus.unread(last.id - 1):  # the two NOTIFYs may wake the bus once or twice
            assert await bus.wait(5), "no NOTIFY arrived"
        assert not bus.unread(last.id)  # it named the newest event's own id
        await bus.wait(0)  # both have arrived: clear the wake-up

        with pytest.raises(RuntimeError):
            async with db.write() as s:
                await journal.record(db, s, "fill.queued", site_id=None, us_state="ND", payload={})
                raise RuntimeError("the change fails")
        assert not await bus.wait(0.5)
        assert not bus.unread(last.id)
    finally:
        await bus.stop()
        await db.dispose()


@pytest.mark.postgres
async def test_a_lost_listen_connection_is_made_again(postgres_url: str) -> None:
    """PostgreSQL ends the node's LISTEN connection (a restart, a failover, an idle timeout): the node
    connects again, looks for what it missed, and hears later NOTIFYs as before."""
    db = Database(postgres_url)
    await db.create_schema()
    bus = PostgresBus(db.url)
    await bus.start()
    try:
        async with db.write() as s:
            await s.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                )
            )
        assert await bus.wait(10), "the bus did not reconnect"
        assert bus.unread(10**9)  # it tells the hub to read the journal: NOTIFYs may have been lost
        async with db.write() as s:
            ev = await journal.record(db, s, "fill.queued", site_id=None, us_state="ND", payload={})
        while not bus.unread(ev.id - 1):
            assert await bus.wait(5), "no NOTIFY arrived on the new connection"
    finally:
        await bus.stop()
        await db.dispose()


async def test_concurrent_event_writers_never_let_a_reader_skip_an_id(database_url: str) -> None:
    """The cursor trap: a reader racing concurrent writers must see every id, in order, exactly once."""
    db = Database(database_url)
    await db.create_schema()
    hub = Hub(db, LocalBus() if db.is_sqlite else PostgresBus(db.url))
    seen: list[int] = []

    class Recorder:
        lagging = False
        principal = Principal(1, "admin", "Admin", Role.ADMIN, None, frozenset(), "session")

        def offer(self, ev: object, message: object) -> None:
            seen.append(ev.id)  # type: ignore[attr-defined]

    hub.add(Recorder())  # type: ignore[arg-type]
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            await hub.pump_once()
            await asyncio.sleep(0)

    async def writer(n: int) -> None:
        for i in range(25):
            async with db.write() as s:
                await journal.record(db, s, "test", site_id=1, us_state="ND", payload={"w": n, "i": i})
                await asyncio.sleep(0.001 * (i % 3))  # hold the transaction open a little

    read_task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(8)))
    async with asyncio.timeout(5):  # the reader reaches the last id while it runs, not in the last pump
        while not seen or seen[-1] < 8 * 25:
            await asyncio.sleep(0.01)
    stop.set()
    await read_task
    await hub.pump_once()
    assert seen == list(range(1, 8 * 25 + 1))
    await db.dispose()


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_the_server_stops_with_its_workers_and_nothing_but_its_own_lines(
    stop: str, tmp_path: Path, unused_tcp_port: int
) -> None:
    """Ctrl-C in the terminal (every process of the group signalled) or a service manager's SIGTERM
    (the server's alone): the server, its media workers and their helpers end, the exit is clean, and
    the output holds the server's own lines only: no worker's traceback, no native library's complaint
    on the way out, no library's chatter at start."""
    served = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--port",
            str(unused_tcp_port),
            "--data-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, as a terminal gives a command
    )
    try:
        until_serving(served, unused_tcp_port)
        if stop == "ctrl-c":
            os.killpg(served.pid, signal.SIGINT)
        else:
            served.send_signal(signal.SIGTERM)
        out, _ = served.communicate(timeout=60)
    finally:
        if served.poll() is None:
            os.killpg(served.pid, signal.SIGKILL)
            served.wait()
    text = out.decode(errors="replace")
    assert served.returncode == 0, text
    # What the server says of itself: where its console is, and the requests it answered.
    said = [x for x in text.splitlines() if not x.startswith("Console: ") and "aiohttp.access:" not in x]
    assert said == [], text
    deadline = time.monotonic() + 15
    while left := _in_session(served.pid):
        assert time.monotonic() < deadline, f"still running: {left}"
        time.sleep(0.1)


def _in_session(sid: int) -> list[int]:
    """The processes of the session `sid` still running."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
    return found


def test_what_the_server_makes_is_its_user_s_alone_and_a_folder_open_to_others_is_said(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The data folder and the SQLite database a command makes admit no other user; a server started
    on a folder an earlier version (or an operator) left open to others says so, and how to close it."""
    data = tmp_path / "made"
    assert main(["migrate", "--data-dir", str(data)]) == 0
    database = data / "telepharmacy.sqlite3"
    assert [oct(p.stat().st_mode & 0o777) for p in (data, database)] == [oct(0o700), oct(0o600)]
    data.chmod(0o755)
    serve = ["serve", "--port", str(unused_tcp_port), "--data-dir", str(data)]
    served = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *serve],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        until_serving(served, unused_tcp_port)
        served.send_signal(signal.SIGTERM)
        out, _ = served.communicate(timeout=60)
    finally:
        if served.poll() is None:
            served.kill()
            served.wait()
    assert (
        f"tp-server: warning: the database folder {data} (mode 0755) lets other users in, and it holds"
        f" patients' records: chmod -R go= {data}"
    ) in out.decode().splitlines()


def test_a_database_that_cannot_be_opened_is_said_in_one_line(
    postgres_url: str, tmp_path: Path, unused_tcp_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped address, a database not made yet, a SQLite file where none can be: one line naming
    the database (its password hidden) and what went wrong, and exit status 2; no traceback."""
    refused = f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{unused_tcp_port}/pharmacy"
    missing = make_url(postgres_url).set(database="tp_not_made_yet").render_as_string(hide_password=False)
    nowhere = f"sqlite+aiosqlite:///{tmp_path}/a-file/not-a-folder/x.sqlite3"
    cases = [
        (refused, refused.replace("s3cret", "***"), "connection refused"),
        (missing, missing, 'database "tp_not_made_yet" does not exist'),
        (nowhere, nowhere, "unable to open the file (its folder and rights?)"),
    ]
    (tmp_path / "a-file").write_text("")
    for url, shown, why in cases:
        assert main(["migrate", "--data-dir", str(tmp_path / "data"), "--database-url", url]) == 2
        assert capsys.readouterr().err.splitlines() == [f"tp-server: cannot open the database {shown}: {why}"]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1/pharmacy", "postgresql://"),  # no driver named
        ("foo", "'foo'"),
        ("postgres:s3cret@127.0.0.1/pharmacy", "the URL given"),  # no scheme; the password left out
    ],
)
def test_a_database_url_the_server_cannot_open_is_said_in_one_line(
    url: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL naming no driver of the server's was a traceback of a missing module, and one that is not a
    URL a traceback of SQLAlchemy's; either is one line saying which URLs are opened, and nothing is
    made. The flag wins over the variable, which is not checked then."""
    monkeypatch.setenv("TP_DATABASE_URL", "sqlite+aiosqlite:///unused.sqlite3")
    data = tmp_path / "data"
    for command in (["migrate"], ["audit", "verify"]):
        assert main([command[0], "--data-dir", str(data), "--database-url", url, *command[1:]]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"tp-server: --database-url (or TP_DATABASE_URL): {said} is not a database URL tp-server opens;"
            " give postgresql+asyncpg://USER@HOST/DATABASE or sqlite+aiosqlite:///PATH"
        ]
    assert not data.exists()
    monkeypatch.setenv("TP_DATABASE_URL", url)
    given = f"sqlite+aiosqlite:///{tmp_path / 'given.sqlite3'}"
    assert main(["migrate", "--data-dir", str(data), "--database-url", given]) == 0


# The commands other than `migrate` and `serve`, with what each needs; some write rows.
NOT_MIGRATING = (
    ["audit", "verify"],
    ["audit", "export", "--from", "2026-11-01", "--to", "2026-11-30"],
    ["retention", "run"],
    ["retention", "run", "--apply"],
    ["admin", "tokens"],
    ["admin", "site", "--code", "ND-1", "--name", "Hettinger Drug", "--state", "ND"],
    ["reference", "status"],
)


def _on(command: list[str], *db: str) -> list[str]:
    """The command with the database's options where its parser takes them (after the subcommand's
    own name for retention and reference)."""
    at = 2 if command[0] in ("retention", "reference") else 1
    return [*command[:at], *db, *command[at:]]


def test_a_data_folder_with_no_database_is_said_in_one_line_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped data folder was made, with an empty database in it, and the command reported on it:
    an intact audit chain of 0 rows, a retention run applied. Now the folder is named, with the
    setting that named it (TP_DATA_DIR wins over --data-dir), and nothing is made; `migrate` makes it."""
    monkeypatch.delenv("TP_DATA_DIR", raising=False)
    typo = tmp_path / "typo-dir"
    for command in NOT_MIGRATING:
        assert main(_on(command, "--data-dir", str(typo))) == 2, command
        assert capsys.readouterr().err.splitlines() == [
            f"tp-server: no database at {typo / 'telepharmacy.sqlite3'}: check --data-dir (or TP_DATA_DIR),"
            " or make a new database with `tp-server migrate`"
        ]
    monkeypatch.setenv("TP_DATA_DIR", str(typo))
    assert main(["audit", "--data-dir", str(tmp_path / "meant"), "verify"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"tp-server: no database at {typo / 'telepharmacy.sqlite3'}: TP_DATA_DIR names the data folder"
        f" ({typo}), whatever --data-dir says; correct it, or make a new database with `tp-server migrate`"
    ]
    assert list(tmp_path.iterdir()) == []
    assert main(["migrate"]) == 0
    assert main(["audit", "verify"]) == 0


def _head() -> str:
    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


async def _migrate_to(url: str, revision: str) -> None:
    db = Database(url)
    try:
        await upgrade(db, revision)
    finally:
        await db.dispose()


async def _revision(url: str, changed_to: str | None = None) -> str:
    """The database's schema revision, after setting it to `changed_to` if given (as a newer version
    of the code would leave it)."""
    db = Database(url)
    try:
        async with db.write() as s:
            if changed_to is not None:
                await s.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": changed_to})
            return str((await s.execute(text("SELECT version_num FROM alembic_version"))).scalar_one())
    finally:
        await db.dispose()


def test_only_migrate_changes_the_schema_and_the_other_commands_refuse_one_behind_the_code(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin host newly installed ran `audit verify` on the shared database, and it migrated it under
    servers still running the old code; a retention dry run, listing tokens, a report did the same.
    Now only `migrate` (and `serve`) changes the schema: the other commands refuse one behind the code
    in one line, and leave it as it is."""
    db = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    shown = make_url(database_url).render_as_string(hide_password=True)
    head = _head()
    older = str(ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision)
    asyncio.run(_migrate_to(database_url, older))
    for command in NOT_MIGRATING:
        assert main(_on(command, *db)) == 2, command
        assert capsys.readouterr().err.splitlines() == [
            f"tp-server: the database {shown} is at schema revision {older}, behind this version's {head}:"
            " run `tp-server migrate` first"
        ]
    assert asyncio.run(_revision(database_url)) == older
    assert main(["migrate", *db]) == 0
    for command in NOT_MIGRATING:
        assert main(_on(command, *db)) == 0, command


def test_a_database_made_by_a_newer_version_is_said_in_one_line(
    database_url: str, tmp_path: Path, unused_tcp_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate` and `serve` on a database a newer version had migrated ended in Alembic's traceback
    (Can't locate revision); they, and every other command, say so in one line and change nothing."""
    db = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    assert main(["migrate", *db]) == 0
    asyncio.run(_revision(database_url, changed_to="9999"))
    shown = make_url(database_url).render_as_string(hide_password=True)
    newer = (
        f"the database {shown} was made by a newer version of tp-server (schema revision 9999; this"
        f" version's is {_head()}): run that version"
    )
    capsys.readouterr()
    for command in (["migrate"], *NOT_MIGRATING):
        assert main(_on(command, *db)) == 2, command
        assert capsys.readouterr().err.splitlines() == [f"tp-server: {newer}"]
    serve = ["serve", "--port", str(unused_tcp_port), *db]
    served = subprocess.run(
        [sys.executable, "-m", "server.cli", *serve], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert served.returncode == 2 and served.stderr.splitlines() == [f"tp-server: {newer}"], served.stderr
    assert asyncio.run(_revision(database_url)) == "9999"


def test_an_empty_postgresql_database_is_left_to_migrate(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database made for the server and not migrated yet (or another one, named by mistake) is not
    given the server's tables by a command that reads."""
    db = ["--data-dir", str(tmp_path / "data"), "--database-url", postgres_url]
    assert main(["audit", *db, "verify"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"tp-server: the database {postgres_url} has no schema yet: run `tp-server migrate` first"
    ]
    assert not (tmp_path / "data").exists()
    assert main(["migrate", *db]) == 0
    assert main(["audit", *db, "verify"]) == 0


def test_a_port_already_taken_is_said_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = subprocess.run(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert served.returncode == 2, served.stderr
    assert served.stderr.splitlines() == [
        f"tp-server: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
    assert "Console:" not in served.stdout  # it never listened


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("nosuchhost.invalid", "Name or service not known"),  # before anything is opened
        ("192.0.2.1", "cannot assign requested address"),  # an address of another computer
    ],
)
def test_an_address_to_listen_on_that_is_not_this_computer_s_is_said_in_one_line(
    tmp_path: Path, host: str, said: str
) -> None:
    serve = [sys.executable, "-m", "server.cli", "serve", "--host", host, "--port", "8093"]
    served = subprocess.run(
        [*serve, "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert served.returncode == 2, served.stderr
    assert served.stderr.splitlines() == [f"tp-server: cannot listen on {host}:8093: {said}"]


def test_a_second_server_on_one_sqlite_database_is_refused_while_the_first_serves(
    tmp_path: Path, unused_tcp_port_factory: Callable[[], int]
) -> None:
    """Two servers on one SQLite database started without a word, and each one's consoles missed the
    other's live events. The second is refused; the other commands still run beside the first."""
    first, second = unused_tcp_port_factory(), unused_tcp_port_factory()

    def serve(port: int) -> list[str]:
        return [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)]

    served = subprocess.Popen(serve(first), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_serving(served, first)
        refused = subprocess.run(serve(second), cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines() == [
            f"tp-server: another server is serving {tmp_path / 'telepharmacy.sqlite3'}: on SQLite one server "
            "serves a database (several servers need PostgreSQL)"
        ]
        assert main(["admin", "--data-dir", str(tmp_path), "tokens"]) == 0
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(60)
    # Once the first has stopped, another may serve.
    again = subprocess.Popen(serve(second), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_serving(again, second)
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(60)


def test_the_demo_says_a_host_name_that_names_nothing_before_seeding(tmp_path: Path) -> None:
    demo = [sys.executable, "-m", "demo", "--host", "nosuchhost.invalid", "--port", "8093"]
    ran = subprocess.run(
        [*demo, "--data-dir", str(tmp_path / "demo")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.splitlines() == [
        "python -m demo: cannot listen on nosuchhost.invalid:8093: Name or service not known"
    ]
    assert not (tmp_path / "demo").exists()  # nothing seeded


def test_a_date_mistyped_or_a_period_backwards_is_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An inspector's export from the 5th to the 1st is refused, not answered with no rows; a day that
    is not a date is named by the command line."""
    data = ["--data-dir", str(tmp_path)]
    assert main(["audit", *data, "export", "--from", "2026-12-05", "--to", "2026-12-01"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: The period ends (2026-12-01) before it starts (2026-12-05)."
    ]
    with pytest.raises(SystemExit) as stopped:
        main(
            [
                "admin",
                *data,
                "license",
                "--username",
                "x",
                "--state",
                "ND",
                "--number",
                "1",
                "--expires",
                "2028-13-01",
            ]
        )
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tp-server admin license: error: argument --expires: '2028-13-01' is not a date (YYYY-MM-DD)"
    )


def _no_larger_than(limit: int) -> Callable[[], None]:
    """For a child process: its files stop growing at `limit` bytes, a write past it failing with
    EFBIG (as a full disk fails a write) instead of the signal that would end the process."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_report_is_written_whole_or_not_at_all(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export cut short by a full disk left a CSV an inspector would read as the whole trail, and a
    traceback; a folder that does not exist was a traceback after the work. Now either is one line,
    exit status 2, and no file; a report written is readable by the operator only (it names patients)."""
    data = ["--data-dir", str(tmp_path / "data"), "--database-url", postgres_url]
    assert main(["migrate", *data]) == 0
    for code in ("ND-1", "ND-2", "ND-3"):  # rows in the trail
        assert (
            main(["admin", *data, "site", "--code", code, "--name", f"Pharmacy {code}", "--state", "ND"]) == 0
        )
    export = ["audit", *data, "export", "--from", "2026-01-01", "--to", "2099-12-31"]
    capsys.readouterr()

    assert main([*export, "--out", str(tmp_path / "no-such-folder" / "trail.csv")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'no-such-folder' / 'trail.csv'} cannot be written: No such file or directory."
    ]

    out = tmp_path / "trail.csv"
    cut = subprocess.run(
        [sys.executable, "-m", "server.cli", *export, "--out", str(out)],
        preexec_fn=_no_larger_than(300), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cut.returncode == 2 and "Traceback" not in cut.stderr, cut.stderr
    assert cut.stderr.splitlines() == [
        f"error: {out} cannot be written: File too large; nothing was written."
    ]
    assert list(tmp_path.glob("*trail.csv*")) == []

    assert main([*export, "--out", str(out)]) == 0
    assert out.read_text().count("site.created") == 3
    # A patient's access report of no one, by the API's rule for the name.
    access = ["audit", *data, "access", "--dob", "1950-01-01", "--from", "2026-01-01", "--to", "2026-12-31"]
    capsys.readouterr()
    assert main([*access, "--patient-name", "", "--out", str(tmp_path / "access.csv")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: '--patient-name' must be text of 1 to 200 characters."
    ]
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("TP_AUDIT_ANCHOR_SECONDS", "hourly", "TP_AUDIT_ANCHOR_SECONDS: 'hourly' is not a number"),
        ("TP_PORT", "80800", "TP_PORT: '80800' must be from 0 to 65535"),
        ("TP_ICE_SERVERS", "stun:stun.example.org", "TP_ICE_SERVERS: not JSON"),
    ],
)
def test_a_setting_the_server_cannot_run_with_is_said_in_one_line(
    name: str,
    value: str,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"tp-server: {said}"]
