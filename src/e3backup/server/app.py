"""The app factory: settings in, FastAPI app out; nothing is built at import time.

On start (the lifespan) the Alembic migrations are applied and the scheduler thread starts.
Tests pass a fake clock, and may replace dependencies through ``app.dependency_overrides``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from e3backup import __version__
from e3backup.server.clock import Clock, SystemClock
from e3backup.server.cluster import sole
from e3backup.server.cluster.bus import Wakeups, bus_for
from e3backup.server.cluster.leader import leadership_for
from e3backup.server.config import Settings
from e3backup.server.db import make_engine, make_session_factory, upgrade
from e3backup.server.errors import ServiceError
from e3backup.server.metrics import Metrics, RequestTiming
from e3backup.server.metrics import router as metrics_router
from e3backup.server.problems import (
    FieldError,
    field_error_handler,
    request_validation_handler,
    service_error_handler,
)
from e3backup.server.routes import ROUTERS
from e3backup.server.routes.agent_lookups import AgentLookups
from e3backup.server.routes.agent_polls import AgentPolls
from e3backup.server.routes.poll_batches import PollBatcher
from e3backup.server.scheduler import Scheduler
from e3backup.server.security import PasswordHasher, SecretBox
from e3backup.server.security.body_limit import BodyLimit
from e3backup.server.security.headers import SecurityHeaders
from e3backup.server.security.ratelimit import rate_limiter_for
from e3backup.server.security.tokens import hash_token
from e3backup.server.services import agents as agents_service
from e3backup.server.services.alert_delivery import AlertWorker, MailSettings
from e3backup.server.state import ServerState
from e3backup.server.web import install as install_dashboard

log = logging.getLogger(__name__)


def build_state(settings: Settings, clock: Clock | None = None) -> ServerState:
    """Everything but the HTTP layer (also used by the CLI's create-admin / create-tenant)."""
    clock = clock or SystemClock()
    secret = settings.load_secret()
    url = settings.effective_database_url()
    engine = make_engine(url, settings.db_pool_size)
    sessions = make_session_factory(engine)
    waiters = Wakeups()
    bus = bus_for(url, waiters)
    bus.install(sessions)
    return ServerState(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        box=SecretBox(secret),
        passwords=PasswordHasher(settings.argon2_time_cost, settings.argon2_memory_kib),
        login_limiter=rate_limiter_for(url, sessions, clock, settings.login_attempts, settings.login_window_seconds),
        enroll_limiter=rate_limiter_for(
            url, sessions, clock, settings.enroll_attempts, settings.enroll_window_seconds
        ),
        waiters=waiters,
        bus=bus,
    )


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    state = build_state(settings, clock)
    mail = (
        MailSettings(settings.smtp_host, settings.smtp_port, settings.smtp_sender, settings.smtp_starttls,
                     settings.smtp_username, settings.smtp_password)
        if settings.smtp_host
        else None
    )
    alert_worker = AlertWorker(
        state.sessions, state.clock, state.box, mail, settings.agent_offline_after_seconds,
        settings.alert_offline_minutes, local_roots=list(settings.browse_local_roots),
    )
    from e3backup.gateway.worker import MaintenanceWorker

    worker = MaintenanceWorker(state, settings.scheduler_interval_seconds)

    def after_tick() -> None:
        worker.wake()  # maintenance the tick queued runs now, not at the worker's next interval
        alert_worker.tick()

    scheduler = Scheduler(
        state.sessions,
        state.clock,
        settings.scheduler_interval_seconds,
        (settings.maintenance_prune_days, settings.maintenance_check_days),
        after_tick=after_tick,
        leadership=leadership_for(settings.effective_database_url(), settings.leader_retry_seconds),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        claim = sole.claim(settings.effective_database_url())  # SQLite: no second server process
        try:
            await run_in_threadpool(upgrade, state.engine)
            state.bus.start()
            if settings.scheduler_enabled:
                scheduler.start()
            if settings.maintenance_worker_enabled:
                worker.start()
            log.info(
                "e3backup server ready (database: %s)", state.engine.url.render_as_string(hide_password=True)
            )
            yield
        finally:
            scheduler.stop()
            _app.state.agent_lookups.close()
            _app.state.poll_batcher.close()
            state.bus.stop()
            worker.stop()
            state.engine.dispose()
            claim.release()

    # /docs and /redoc would load their scripts from a public CDN on the dashboard's origin:
    # off; the OpenAPI document itself stays at /openapi.json for any viewer
    app = FastAPI(
        title="e3backup control plane",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    metrics = Metrics(state, lambda: scheduler.running and scheduler.leadership.is_leader())
    app.state.e3 = state
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    app.state.alerts = alert_worker
    app.state.maintenance_worker = worker
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(ValidationError, _pydantic_validation_handler)
    app.add_exception_handler(FieldError, field_error_handler)
    app.add_exception_handler(ServiceError, service_error_handler)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(metrics_router)
    install_dashboard(app)
    # outermost last: the proxy's client address and scheme, then headers, then the body limit,
    # then the agents' polls answered without the framework (routes/agent_polls.py)
    app.state.poll_batcher = PollBatcher(state)
    app.state.agent_lookups = AgentLookups(state)
    app.add_middleware(AgentPolls, state=state, batcher=app.state.poll_batcher, lookups=app.state.agent_lookups)
    app.add_middleware(
        BodyLimit,
        user_limit=settings.max_body_bytes,
        agent_limit=settings.max_agent_body_bytes,
        known_bearer=lambda token: run_in_threadpool(_known_bearer, state, token),
    )
    app.state.gateway_pool = None
    if settings.gateway_enabled:
        # restic's REST protocol at /gateway/: outside the body limit (packs are streamed) and the API
        from e3backup.gateway.app import Gateway, GatewayRouter
        from e3backup.gateway.inprocess import InProcessPool

        gateway = Gateway(state)
        app.add_middleware(GatewayRouter, gateway=gateway)
        app.state.gateway_pool = InProcessPool(gateway)  # the dashboard reads gateway-mode repositories through it
    app.add_middleware(SecurityHeaders, cookie_secure=settings.cookie_secure or settings.tls)
    app.add_middleware(RequestTiming, metrics=metrics)
    if settings.proxy_headers:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    return app


def _known_bearer(state: ServerState, token: str) -> bool:
    if state.agent_tokens.get(hash_token(token)) is not None:
        return True  # a live agent this process knows: no second lookup of its token
    with state.sessions() as session:
        return agents_service.known_bearer(session, token, state.clock.now())


async def _pydantic_validation_handler(request: Request, exc: Exception) -> Response:
    """A job update merged into the stored job and revalidated fails like a request would."""
    assert isinstance(exc, ValidationError)
    return await request_validation_handler(request, RequestValidationError(exc.errors()))


__all__ = ["build_state", "create_app"]
