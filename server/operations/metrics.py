"""Prometheus metrics: requests, queue depth by state, turnaround from submission to decision."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from server.db.engine import Database
from server.db.models import Fill
from server.fills.rules import FillState
from server.operations.storage import DataPaths


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tp_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "tp_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.queue_depth = Gauge("tp_fills", "Fills by state", ["state"], registry=self.registry)
        self.free_bytes = Gauge(
            "tp_storage_free_bytes",
            "Free bytes on each data path's file system",
            ["path"],
            registry=self.registry,
        )
        self.turnaround = Histogram(
            "tp_turnaround_seconds",
            "Seconds from submission to decision",
            ["outcome"],
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=self.registry,
        )

    def observe_decision(self, submitted_at: float | None, decided_at: float, outcome: str) -> None:
        if submitted_at is not None:
            self.turnaround.labels(outcome).observe(max(0.0, decided_at - submitted_at))

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - start)

    async def render(self, db: Database, storage: DataPaths) -> web.Response:
        async with db.read() as s:
            counts = dict((await s.execute(select(Fill.state, func.count()).group_by(Fill.state))).all())
        for state in FillState:
            self.queue_depth.labels(state.value).set(counts.get(state, 0))
        for role, free in (await asyncio.to_thread(storage.free_bytes)).items():
            self.free_bytes.labels(role).set(free)
        resp = web.Response(body=generate_latest(self.registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp
