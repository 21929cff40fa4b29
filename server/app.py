"""The application factory: everything is built from a Config, opened and closed in one place."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from aiohttp import web

from server.api.media import make_tus_endpoint
from server.api.openapi import OPENAPI_DOCUMENT, document
from server.api.routes import ROUTES, TUS
from server.api.table import guard
from server.audit.anchors import AnchorFile, anchor_head
from server.compliance import retention
from server.compliance.checks import Compliance
from server.compliance.rules import load_rules
from server.config import Config
from server.consultations.mailbox import LocalMailbox, Mailbox, PostgresMailbox
from server.consultations.recordings import RecordingIntake
from server.consultations.service import ConsultationService
from server.consultations.signalling import SignallingRelay
from server.counselling.service import CounsellingService
from server.data_entry.originals import OriginalIntake
from server.data_entry.service import DataEntryService
from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import Consultation, Fill, Media, Site, utcnow
from server.db.partitions import CHECK_SECONDS, ensure_partitions
from server.directory import Directory
from server.failures import RepeatedFailures
from server.fills.intake import MediaIntake
from server.fills.lifecycle import FillService
from server.fills.queries import FillQueries
from server.media.serving import MediaAccess
from server.media.store import LocalMediaStore, MediaStore
from server.media.tus.endpoint import TusEndpoint
from server.media.workers import make_executor, warm_up
from server.operations.logs import keep_patient_data_out_of_logs
from server.operations.metrics import Metrics
from server.operations.storage import DataPaths
from server.prescriptions import Prescriptions
from server.realtime.bus import EventBus, LocalBus, PostgresBus
from server.realtime.hub import Hub
from server.security.access_log import AccessLog
from server.security.auth import Auth
from server.security.origin import is_https
from server.security.passwords import Passwords
from server.security.principal import Principal
from server.services import SERVICES, Services

log = logging.getLogger(__name__)
Schema = Literal["migrate", "create", "none"]
ABANDONED_UPLOAD_SECONDS = 24 * 3600
# With a data path short of room, an upload idle this long is abandoned: its site resumes or starts
# again, and the room it holds may be what another upload needs.
ABANDONED_UPLOAD_SECONDS_LOW_SPACE = 600
# A request body is read in pieces of up to twice this before the connection pauses reading.
READ_BUFSIZE = 512 * 1024


def may_read_media(actor: Principal, media: Media, site: Site, consultation: Consultation | None) -> bool:
    """A fill's evidence and a prescription's original are for whoever may see its site; a recording,
    for those its consultation names."""
    if consultation is not None:
        return ConsultationService.may_see_recording(consultation, site, actor)
    return actor.may_see_site(site.id, site.state)


def media_store(config: Config) -> MediaStore:
    """The bucket when object storage is configured, else the data dir's media folder."""
    if config.object_storage is not None:
        from server.media.s3 import S3MediaStore

        return S3MediaStore(config.object_storage)
    return LocalMediaStore(config.media_dir)


def load_compliance(config: Config) -> Compliance:
    """The state rules and the site rules of the config, checked: RulesError names the line and problem."""
    book = load_rules(config.compliance_rules, config.site_rules)
    return Compliance(book, supervision_minutes=config.supervision_minutes)


def build_services(
    config: Config,
    db: Database,
    metrics: Metrics,
    *,
    clock: Callable[..., object] | None = None,
    compliance: Compliance | None = None,
) -> Services:
    passwords = Passwords(
        config.password_time_cost,
        config.password_memory_kib,
        slots=config.password_hash_slots,
        queue=config.password_hash_queue,
    )
    bus: EventBus
    mailbox: Mailbox
    if db.is_sqlite:
        bus, mailbox = LocalBus(), LocalMailbox()
    else:
        postgres = PostgresBus(db.url)
        bus, mailbox = postgres, PostgresMailbox(db, postgres)

    def observe(fill: Fill) -> None:
        if fill.decided_at is not None:
            metrics.observe_decision(
                fill.submitted_at.timestamp() if fill.submitted_at else None,
                fill.decided_at.timestamp(),
                fill.state,
            )

    compliance = compliance or load_compliance(config)
    fills = FillService(
        db,
        config,
        clock=clock or utcnow,  # type: ignore[arg-type]
        on_decided=observe,
        compliance=compliance,
    )
    store = media_store(config)
    storage = DataPaths.of(config)
    executor = make_executor(config.media_workers)
    hub = Hub(db, bus, queue_size=config.event_queue_size)
    data_entry = DataEntryService(db, config, clock=fills.clock)
    consultations = ConsultationService(db, clock=fills.clock, compliance=compliance)
    counselling = CounsellingService(db, compliance, clock=fills.clock)
    # A counselling call that ends connected is the fill's counselling record, in the same transaction.
    consultations.outcomes = counselling
    auth, directory = Auth(db, config, passwords, clock=fills.clock), Directory(db, passwords)
    # A sign-out, a revocation, a deactivation, a license or site change reaches the live connections.
    auth.access_listeners.append(hub.access_changed)
    directory.access_listeners.append(hub.access_changed)
    # The same changes clear the identities this node remembers for a few seconds.
    directory.access_listeners.append(auth.access_changed)
    return Services(
        config=config,
        db=db,
        auth=auth,
        directory=directory,
        prescriptions=Prescriptions(db),
        data_entry=data_entry,
        fills=fills,
        queries=FillQueries(db, compliance, step_up_after_seconds=config.step_up_after_seconds),
        hub=hub,
        store=store,
        media=MediaAccess(db, may_read_media),
        media_executor=executor,
        metrics=metrics,
        intake=MediaIntake(fills, store, executor, config),
        originals=OriginalIntake(data_entry, store, executor, config),
        consultations=consultations,
        recordings=RecordingIntake(consultations, store, executor, config),
        signalling=SignallingRelay(hub, consultations, mailbox),
        storage=storage,
        access_log=AccessLog(db, fills.clock, storage.failure_in),
        compliance=compliance,
        counselling=counselling,
    )


async def sweep(services: Services, tus: TusEndpoint) -> None:
    """Puts fills and prescriptions whose pharmacist went quiet back in the queue; clears uploads
    abandoned for a day, or for ten minutes when a data path is short of room."""
    last_purge = 0.0
    failures = RepeatedFailures(
        log,
        "sweeping lapsed leases and stale uploads",
        services.storage.failure_in,
        meanwhile="lapsed claims stay with their pharmacist until a sweep succeeds",
        recovered="sweeping lapsed leases and stale uploads works again",
    )
    while True:
        await asyncio.sleep(services.config.lease_sweep_seconds)
        try:
            await services.fills.expire_leases()
            await services.data_entry.expire_leases()
            low = await asyncio.to_thread(low_on_space, services)
            if low or time.monotonic() - last_purge > 3600:
                last_purge = time.monotonic()
                await tus.purge_stale(ABANDONED_UPLOAD_SECONDS_LOW_SPACE if low else ABANDONED_UPLOAD_SECONDS)
        except Exception as exc:
            failures.failed(exc)
        else:
            failures.succeeded()


class Anchoring:
    """Anchors the audit chain's head at start, every `audit_anchor_seconds` and at shutdown. A failure
    is logged, never fatal: the next anchor covers the rows added meanwhile. A full disk is said once,
    in one line, however many anchors it stops."""

    def __init__(self, services: Services, anchors: AnchorFile) -> None:
        self.services = services
        self.anchors = anchors
        self.failures = RepeatedFailures(
            log,
            "anchoring the audit chain's head",
            services.storage.failure_in,
            meanwhile="the next anchor covers the rows added meanwhile",
            recovered="anchoring the audit chain's head works again",
        )

    async def now(self) -> None:
        try:
            await anchor_head(self.services.db, self.anchors, utcnow())
        except Exception as exc:
            self.failures.failed(exc)
        else:
            self.failures.succeeded()

    async def keep_on(self) -> None:
        while True:
            await asyncio.sleep(self.services.config.audit_anchor_seconds)
            await self.now()


async def keep_partitions(services: Services) -> None:
    """Makes the coming months' partitions of the tables that grow by time (PostgreSQL), now and daily;
    a failure is logged, and the DEFAULT partition takes the rows of a month not made yet."""
    while True:
        try:
            await ensure_partitions(services.db)
        except Exception:
            log.exception("making the coming months' partitions failed; will retry in an hour")
            await asyncio.sleep(3600)
            continue
        await asyncio.sleep(CHECK_SECONDS)


def until_hour(now: dt.datetime, hour: int) -> float:
    """Seconds from `now` to the next time the UTC clock shows `hour`:00."""
    start = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if start <= now:
        start += dt.timedelta(days=1)
    return (start - now).total_seconds()


async def keep_retaining(services: Services, hour: int) -> None:
    """Runs retention daily at `hour` UTC; a failure is logged and the next day's run tries again."""
    while True:
        await asyncio.sleep(until_hour(utcnow(), hour))
        try:
            report = await retention.run(
                services.db,
                services.store,
                services.compliance.book,
                now=services.fills.clock(),
                journal_days=services.config.event_journal_days,
                apply=True,
            )
            log.info("retention: %d records removed (audit row %s)", report.removed, report.audit_row)
            if missing := sum(line.files_missing for line in report.lines):
                log.warning("retention: %d files due were already missing from %s", missing, report.store)
        except retention.WrongMediaStore as exc:
            log.error("the daily retention run was refused: %s; it runs again tomorrow", exc)
        except Exception:
            log.exception("the daily retention run failed; it runs again tomorrow")


def low_on_space(services: Services) -> bool:
    return min(services.storage.free_bytes().values()) < services.config.min_free_bytes


# Every answer, errors included: nothing sniffed, framed or kept. An answer that says itself how it may
# be kept or what its page may load (the console's own files) keeps its word.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000; includeSubDomains"
# The product without its version or its libraries': nothing to match against a list of known flaws.
SERVER_NAME = "telepharmacy"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Sets the headers every response carries. As an on_response_prepare hook it sees each response
    as it is sent, raised HTTPExceptions too (the router's 404 and 405, the tus endpoint's errors)."""
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER_NAME
    if is_https(request, request.app[SERVICES].config.trusted_proxies):
        headers["Strict-Transport-Security"] = HSTS


def background_tasks(services: Services, tus: TusEndpoint, anchoring: Anchoring) -> list[asyncio.Task[None]]:
    """What a running server does on its own: returning lapsed leases and stale uploads, anchoring the
    audit trail, making the coming months' partitions (PostgreSQL) and the daily retention run."""
    tasks = [
        asyncio.create_task(sweep(services, tus), name="sweeper"),
        asyncio.create_task(anchoring.keep_on(), name="audit anchors"),
    ]
    if not services.db.is_sqlite:
        tasks.append(asyncio.create_task(keep_partitions(services), name="partitions"))
    hour = services.config.retention_hour
    if hour is not None:
        tasks.append(asyncio.create_task(keep_retaining(services, hour), name="retention"))
    return tasks


def create_app(
    config: Config, *, schema: Schema = "migrate", clock: Callable[..., object] | None = None
) -> web.Application:
    """Builds the server. Resources open on startup and close on cleanup, in cleanup_ctx."""
    keep_patient_data_out_of_logs()
    # Checked before anything opens: a bad rules file stops the server here, naming the line.
    compliance = load_compliance(config)
    # Made here, not with the other services, so its middleware counts requests from the first one.
    metrics = Metrics()
    app = web.Application(
        middlewares=[metrics.middleware],
        client_max_size=1024 * 1024,
        # A connection reads up to twice this before pausing: a photo arrives in a few reads instead of
        # a pause and a resume every 128 KiB (aiohttp's default of 64 KiB).
        handler_args={"read_bufsize": READ_BUFSIZE},
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.upload_dir.mkdir(parents=True, exist_ok=True)
        db = Database(config.effective_database_url)
        if schema == "migrate":
            await upgrade(db)
        elif schema == "create":
            await db.create_schema()
        services = build_services(config, db, metrics, clock=clock, compliance=compliance)
        try:
            # A bucket that is missing or refuses us, or a site's rules looser than its state's, stops
            # the start rather than the first upload or claim.
            await services.store.open()
            await compliance.check_sites(db)
        except BaseException:
            services.media_executor.shutdown(wait=False, cancel_futures=True)
            await db.dispose()
            raise
        app[SERVICES] = services
        app[TUS] = tus = make_tus_endpoint(services)
        await services.hub.start()
        await services.signalling.start()
        await services.access_log.start()
        if config.media_workers > 0:
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(
                    loop.run_in_executor(services.media_executor, warm_up, services.store)
                    for _ in range(config.media_workers)
                )
            )
        anchoring = Anchoring(services, AnchorFile(config.data_dir))
        await anchoring.now()
        tasks = background_tasks(services, tus, anchoring)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await anchoring.now()
            await services.signalling.stop()
            await services.hub.stop()
            await services.access_log.stop()
            services.media_executor.shutdown(wait=True, cancel_futures=True)
            await services.store.close()
            await db.dispose()

    app.cleanup_ctx.append(resources)
    app.on_response_prepare.append(security_headers)

    async def close_sockets(app: web.Application) -> None:
        # Websockets end on shutdown, not after it: aiohttp would otherwise wait for them.
        if SERVICES in app:
            await app[SERVICES].hub.close_all()

    app.on_shutdown.append(close_sockets)

    async def authenticate(request: web.Request):  # type: ignore[no-untyped-def]
        return await request.app[SERVICES].auth.authenticate(request)

    for route in ROUTES:
        app.router.add_route(route.method, route.path, guard(route, authenticate), name=None)
    app[OPENAPI_DOCUMENT] = document(ROUTES)
    return app
