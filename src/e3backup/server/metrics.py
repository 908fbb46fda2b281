"""``/metrics`` in the Prometheus text format, and the request timing behind it.

Two kinds of figures:

- the fleet's, read from the database at scrape time (so every replica and every worker gives
  the same answer): agents enrolled and online, runs by kind and status, durations of finished
  runs (a histogram per kind), bytes read and uploaded by successful backups. Kept for
  ``DB_CACHE_SECONDS`` so frequent scrapes cost one set of queries;
- this process's: request latency by route (the route's template, never the raw path), the
  database pool, open live-update waits, whether this replica leads the scheduler and listens
  for live updates. Under ``--workers N`` the workers share them through
  ``PROMETHEUS_MULTIPROC_DIR`` (set by ``e3backup server --workers``).

Loopback callers get the page without credentials (a local Prometheus agent, ``curl``); any other
caller needs ``Authorization: Bearer <metrics_token>``, and without a configured token the page
is loopback only. Behind a reverse proxy on the same machine, turn on ``proxy_headers`` (or deny
``/metrics`` at the proxy), or every proxied caller would look like loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.sql.elements import ColumnElement
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e3backup.api.common import RunStatus
from e3backup.server.db.models import Agent, Run
from e3backup.server.state import ServerState

log = logging.getLogger(__name__)

DB_CACHE_SECONDS = 5.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DURATION_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)
FINAL_STATUSES = (RunStatus.SUCCESS, RunStatus.WARNING, RunStatus.FAILED, RunStatus.CANCELLED)

try:
    import prometheus_client
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError:  # a declared dependency; an environment made before it was added lacks it
    prometheus_client = None  # type: ignore[assignment]


def _seconds(dialect: str) -> ColumnElement[float]:
    """A finished run's duration in seconds, in the database's own date arithmetic."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", Run.finished_at - Run.started_at), Float)
    return cast((func.julianday(Run.finished_at) - func.julianday(Run.started_at)) * 86400.0, Float)


class FleetCollector:
    """The database's figures, collected when Prometheus scrapes (cached a few seconds)."""

    def __init__(self, state: ServerState, is_leader: Callable[[], bool]) -> None:
        self._state = state
        self._is_leader = is_leader
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

    def describe(self) -> list[Any]:
        return []  # collected on demand; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > DB_CACHE_SECONDS:
                self._cached = (time.monotonic(), self._read())
            families = self._cached[1]
        yield from families
        yield from self._process()

    def _read(self) -> list[Any]:
        state = self._state
        now = state.clock.now()
        online_since = now - timedelta(seconds=state.settings.agent_offline_after_seconds)
        with state.sessions() as s:
            enrolled, online = s.execute(
                select(
                    func.count(Agent.id),
                    func.count(case((Agent.last_seen_at >= online_since, Agent.id))),
                ).where(Agent.revoked.is_(False))
            ).one()
            by_status = s.execute(select(Run.kind, Run.status, func.count(Run.id)).group_by(Run.kind, Run.status)).all()
            seconds = _seconds(s.get_bind().dialect.name)
            finished = and_(Run.started_at.is_not(None), Run.finished_at.is_not(None))
            buckets = [func.sum(case((seconds <= b, 1), else_=0)) for b in DURATION_BUCKETS]
            durations = s.execute(
                select(Run.kind, func.count(Run.id), func.coalesce(func.sum(seconds), 0.0), *buckets)
                .where(finished).group_by(Run.kind)
            ).all()
            done = (RunStatus.SUCCESS.value, RunStatus.WARNING.value)
            read, uploaded = s.execute(
                select(func.coalesce(func.sum(Run.bytes_processed), 0), func.coalesce(func.sum(Run.bytes_uploaded), 0))
                .where(Run.kind == "backup", Run.status.in_(done))
            ).one()
        agents = GaugeMetricFamily("e3backup_agents", "Enrolled agents (not revoked), and those seen recently",
                                   labels=["state"])
        agents.add_metric(["enrolled"], enrolled)
        agents.add_metric(["online"], online)
        runs = GaugeMetricFamily("e3backup_runs", "Runs in the database by kind and status", labels=["kind", "status"])
        seen = {(k, st): n for k, st, n in by_status}
        for kind in sorted({k for k, _ in seen} | {"backup"}):
            for status in RunStatus:
                runs.add_metric([kind, status.value], seen.get((kind, status.value), 0))
        hist = HistogramMetricFamily("e3backup_run_duration_seconds", "Durations of finished runs, by kind",
                                     labels=["kind"])
        for kind, count, total, *cumulative in durations:
            points = [(str(b), int(n or 0)) for b, n in zip(DURATION_BUCKETS, cumulative, strict=True)]
            hist.add_metric([kind], [*points, ("+Inf", int(count))], float(total or 0.0))
        read_family = CounterMetricFamily("e3backup_backup_read_bytes", "Bytes read by successful backup runs")
        read_family.add_metric([], int(read or 0))
        up_family = CounterMetricFamily("e3backup_backup_uploaded_bytes",
                                        "Bytes uploaded to repositories by successful backup runs")
        up_family.add_metric([], int(uploaded or 0))
        return [agents, runs, hist, read_family, up_family]

    def _process(self) -> Iterable[Any]:
        state = self._state
        leader = GaugeMetricFamily("e3backup_scheduler_leader", "1 on the replica that runs the scheduler, else 0")
        leader.add_metric([], 1 if self._is_leader() else 0)
        listening = GaugeMetricFamily("e3backup_live_updates_listening",
                                      "1 while this replica receives live-update notifications")
        listening.add_metric([], 1 if state.bus.connected else 0)
        waits = GaugeMetricFamily("e3backup_live_waits", "Open live-update streams and agent-answer waits here")
        waits.add_metric([], state.waiters.count())
        pool = GaugeMetricFamily("e3backup_db_pool_connections", "This process's database pool", labels=["state"])
        p: Any = state.engine.pool
        if all(hasattr(p, a) for a in ("size", "checkedout", "checkedin", "overflow")):
            pool.add_metric(["size"], p.size())
            pool.add_metric(["checked_out"], p.checkedout())
            pool.add_metric(["idle"], p.checkedin())
            pool.add_metric(["overflow"], max(p.overflow(), 0))
        return [leader, listening, waits, pool]


class Metrics:
    """The registry of one app, the latency histogram and the collector of the fleet."""

    def __init__(self, state: ServerState, is_leader: Callable[[], bool]) -> None:
        self.available = prometheus_client is not None
        if not self.available:
            log.warning("prometheus-client is not installed: /metrics answers 503 (run scripts/setup.sh)")
            return
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "e3backup_http_request_duration_seconds", "Request latency by route (its template) and method",
            ["method", "route"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.fleet = FleetCollector(state, is_leader)
        self.registry.register(self.fleet)

    def observe(self, method: str, route: str, seconds: float) -> None:
        if self.available:
            self.latency.labels(method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        if self._multiprocess:  # the workers' latencies merged from their files, the rest from here
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self.fleet)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestTiming:
    """ASGI middleware: each HTTP request's time to its last body byte, by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.metrics.available:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                self.metrics.observe(scope["method"], route, time.perf_counter() - start)

        await self.app(scope, receive, timed_send)


router = APIRouter(include_in_schema=False)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get("/metrics")
async def metrics_page(request: Request) -> Response:
    state: ServerState = request.app.state.e3
    metrics: Metrics = request.app.state.metrics
    if not _loopback(request):
        token = state.settings.metrics_token
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if token is None:
            raise HTTPException(status_code=403, detail="metrics are served to loopback clients only "
                                "(set metrics_token to allow others with a bearer token)")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(status_code=401, detail="metrics token required (Authorization: Bearer)",
                                headers={"WWW-Authenticate": "Bearer"})
    if not metrics.available:
        raise HTTPException(status_code=503, detail="prometheus-client is not installed on this server")
    body, content_type = await run_in_threadpool(metrics.render)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


__all__ = ["FleetCollector", "Metrics", "RequestTiming", "router"]
