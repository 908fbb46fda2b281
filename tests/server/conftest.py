"""Fixtures for the server tests: the app on SQLite and on a real PostgreSQL, a fake clock,
and actors (admin, tenant users, agents) that call the API with their own credentials."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from e3backup.server import Settings, create_app
from e3backup.server.db import make_engine, upgrade
from e3backup.server.db.models import Base
from tests.plugins.postgres import postgres_database, postgres_server  # noqa: F401

SECRET_KEY = "k3Y-for-tests-only-9f8e7d6c5b4a3928171605f4e3d2c1b0"
ADMIN_EMAIL = "admin@msp.example"
PASSWORD = "correct horse battery"
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, **kwargs: float) -> datetime:
        self._now += timedelta(**kwargs)
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now


@pytest.fixture(scope="session")
def _postgres_url(postgres_database: str) -> str:  # noqa: F811
    engine = make_engine(postgres_database)
    upgrade(engine)
    engine.dispose()
    return postgres_database


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "server.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every API test runs on both databases: a fresh SQLite file (a copy of a migrated one),
    or the shared PostgreSQL database emptied before the test. The app migrates on start too."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        shutil.copyfile(template, tmp_path / "server.db")
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    url: str = request.getfixturevalue("_postgres_url")
    engine = make_engine(url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_key": SECRET_KEY,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "scheduler_enabled": False,
        "command_poll_interval_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for the app; change with ``@pytest.mark.parametrize("settings_overrides", [{...}],
    indirect=True)``."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FakeClock, settings_overrides: dict[str, Any]) -> FastAPI:
    return create_app(make_settings(tmp_path / "data", database_url, **settings_overrides), clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=("203.0.113.7", 50000)) as c:
        yield c


@dataclass
class Actor:
    """Someone calling the API with their own credentials (cookie + CSRF, or a bearer token)."""

    client: TestClient
    headers: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        self.client.cookies.clear()
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    @property
    def id(self) -> int:
        return int(self.info["id"])


def login(client: TestClient, email: str, password: str = PASSWORD) -> Actor:
    client.cookies.clear()
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    token = r.cookies["e3_session"]
    client.cookies.clear()
    return Actor(
        client,
        {"Cookie": f"e3_session={token}", "X-CSRF-Token": r.json()["csrf_token"]},
        r.json()["user"],
    )


def make_admin(app: FastAPI, email: str = ADMIN_EMAIL) -> None:
    from e3backup.server.services import users

    state = app.state.e3
    with state.sessions() as session:
        users.create_user(session, state.passwords, state.clock.now(), email, PASSWORD, True, None)
        session.commit()


def enroll(client: TestClient, enrollment_token: str, hostname: str, os: str = "windows") -> Actor:
    r = client.post(
        "/api/agent/enroll",
        json={"enrollment_token": enrollment_token, "hostname": hostname, "os": os, "agent_version": "1.0"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return Actor(client, {"Authorization": f"Bearer {body['agent_token']}"}, {"id": body["agent_id"], **body})


def s3_destination(**overrides: Any) -> dict[str, Any]:
    dest = {
        "type": "s3",
        "endpoint": "https://s3.example.net",
        "bucket": "backups-acme",
        "prefix": "host1",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "s3-SECRET-do-not-leak-4711",
        "repository_password": "repo-PASSWORD-do-not-leak-0815",
    }
    dest.update(overrides)
    return dest


def files_job(agent_id: int, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "Documents",
        "engine": "files",
        "agent_id": agent_id,
        "source_path": "C:\\Users",
        "destination": s3_destination(),
    }
    job.update(overrides)
    return job


@dataclass
class World:
    """Two tenants, each with a user and an agent, and an MSP admin."""

    client: TestClient
    admin: Actor
    tenant_a: dict[str, Any]
    tenant_b: dict[str, Any]
    user_a: Actor
    user_b: Actor
    agent_a: Actor
    agent_b: Actor
    enroll_a: str

    def job(self, owner: Actor | None = None, **overrides: Any) -> dict[str, Any]:
        owner = owner or self.user_a
        agent = self.agent_a if owner is not self.user_b else self.agent_b
        r = owner.post("/api/jobs", json=files_job(agent.id, **overrides))
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.fixture
def world(app: FastAPI, client: TestClient) -> World:
    """Built directly through the services (one transaction) to keep tests fast; the endpoints
    that do the same (tenants, users, enroll, login) have their own tests."""
    from e3backup.api.agent import EnrollRequest
    from e3backup.server.services import agents, users

    state = app.state.e3
    now = state.clock.now()
    hours = state.settings.session_hours

    def actor(user: Any) -> Actor:
        row, token = users.start_session(session, user, now, hours)
        headers = {"Cookie": f"e3_session={token}", "X-CSRF-Token": row.csrf_token}
        return Actor(client, headers, users.user_public(user).model_dump(mode="json"))

    with state.sessions() as session:
        admin = actor(users.create_user(session, state.passwords, now, ADMIN_EMAIL, PASSWORD, True, None))
        tenants, people, bots, tokens = [], [], [], []
        for name, email, host in (
            ("Acme", "alice@acme.example", "acme-pc"),
            ("Globex", "bob@globex.example", "gx-srv"),
        ):
            tenant = users.create_tenant(session, name, now)
            people.append(
                actor(users.create_user(session, state.passwords, now, email, PASSWORD, False, tenant.id))
            )
            tokens.append(users.rotate_enrollment_token(tenant))
            enrolled = agents.enroll(
                session, EnrollRequest(enrollment_token=tokens[-1], hostname=host, os="windows"), now
            )
            assert enrolled is not None
            agent, agent_token = enrolled
            bots.append(Actor(client, {"Authorization": f"Bearer {agent_token}"}, {"id": agent.id}))
            tenants.append(users.tenant_public(tenant).model_dump(mode="json"))
        session.commit()
    return World(client, admin, tenants[0], tenants[1], people[0], people[1], bots[0], bots[1], tokens[0])
