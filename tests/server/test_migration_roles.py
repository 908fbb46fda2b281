"""Migration 0004 on a database with data, on SQLite and PostgreSQL: MSP administrators become
``msp_admin``, tenant users ``admin`` (what they could do before), and enrollment tokens made
before it get an expiry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from e3backup.server.db import make_engine, upgrade
from tests.plugins.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    import psycopg

    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = "e3mig_" + uuid.uuid4().hex[:8]
    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, dbname="postgres", autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield server.url(name)


def test_roles_and_token_expiry_from_an_older_database(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine, "0003")
    created = datetime(2026, 1, 5, 9, 0)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, enrollment_token_hash, created_at) VALUES "
                 "(1, 'Acme', :h, :t), (2, 'Globex', NULL, :t)"),
            {"h": "ab" * 32, "t": created},
        )
        conn.execute(
            text("INSERT INTO users (email, password_hash, is_admin, tenant_id, disabled, created_at) VALUES "
                 "('ops@msp.example', 'x', :yes, NULL, :no, :t), ('alice@acme.example', 'x', :no, 1, :no, :t)"),
            {"yes": True, "no": False, "t": created},
        )
    before = datetime.now(UTC).replace(tzinfo=None)
    upgrade(engine)
    with engine.connect() as conn:
        roles = dict(conn.execute(text("SELECT email, role FROM users")).all())
        expiries = dict(conn.execute(text("SELECT name, enrollment_token_expires_at FROM tenants")).all())
        uses = set(conn.execute(text("SELECT enrollment_token_uses_left FROM tenants")).scalars())
    engine.dispose()
    assert roles == {"ops@msp.example": "msp_admin", "alice@acme.example": "admin"}
    assert expiries["Globex"] is None
    acme = expiries["Acme"]
    acme = datetime.fromisoformat(acme) if isinstance(acme, str) else acme  # SQLite: text
    assert abs(acme - (before + timedelta(days=7))) < timedelta(minutes=1)
    assert uses == {None}
