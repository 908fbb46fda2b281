"""Secrets stay secret: never logged (even with SQL echo on), sealed at rest, strong server keys."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI

from e3backup.errors import UsageError
from e3backup.server.config import Settings
from e3backup.server.db.models import Base
from e3backup.server.security.secretbox import SecretBox, SecretBoxError
from tests.server.conftest import PASSWORD, World, enroll, login


def test_no_secret_or_token_reaches_the_logs(
    app: FastAPI, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # SQL statements and parameters
    try:
        job = world.job()
        world.user_a.patch(f"/api/jobs/{job['id']}", json={"destination": {"type": "local", "path": "/r"}})
        world.user_a.patch(
            f"/api/jobs/{job['id']}",
            json={
                "destination": {
                    "type": "s3",
                    "endpoint": "https://e.example",
                    "bucket": "bbb",
                    "access_key_id": "AK",
                    "secret_access_key": "s3-SECRET-do-not-leak-4711",
                    "repository_password": "short",
                }
            },
        )
        run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
        world.agent_a.post("/api/agent/next_run")
        image = world.job(engine="disk_image", disk_source_volume="C:", source_path="")
        r = world.user_a.post("/api/recovery/sessions", json={"job_id": image["id"], "snapshot_id": "s"})
        recovery_token = r.json()["session_token"]
        rotated = world.admin.post(f"/api/tenants/{world.tenant_a['id']}/enrollment-token").json()[
            "enrollment_token"
        ]
        agent = enroll(world.client, rotated, "logged-host")
        login(world.client, "alice@acme.example")
        world.client.post(
            "/api/auth/login", json={"email": "alice@acme.example", "password": "Wrong-" + PASSWORD}
        )
        assert run["id"]
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "INSERT INTO" in logged  # SQL logging was on: the check below is not vacuous
    assert "enrolled in tenant" in logged and "handed to agent" in logged and "failed sign-in" in logged
    for secret in (
        "s3-SECRET-do-not-leak-4711",
        "repo-PASSWORD-do-not-leak-0815",
        recovery_token,
        rotated,
        agent.info["agent_token"],
        world.user_a.headers["Cookie"].split("=", 1)[1],
        PASSWORD,
    ):
        assert secret not in logged


def test_secret_box_binds_the_tenant() -> None:
    box = SecretBox(b"x" * 48)
    sealed = box.seal({"secret_access_key": "k"}, "tenant:1")
    assert box.open(sealed, "tenant:1") == {"secret_access_key": "k"}
    with pytest.raises(SecretBoxError):
        box.open(sealed, "tenant:2")
    with pytest.raises(SecretBoxError):
        SecretBox(b"y" * 48).open(sealed, "tenant:1")


def test_secret_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    key = settings.load_secret()
    path = tmp_path / "d" / "secret.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    assert len(key) >= 32
    assert settings.load_secret() == key


def test_sqlite_database_files_are_private(tmp_path: Path) -> None:
    """The embedded database (sealed secrets, token hashes) and its WAL files are 0600, even
    under a lax umask, and a database left 0644 by an older version is tightened on start."""
    from e3backup.server.app import build_state
    from e3backup.server.db import upgrade

    old = os.umask(0o022)
    try:
        state = build_state(Settings(data_dir=tmp_path / "d"))
        upgrade(state.engine)
        with state.engine.connect() as conn:  # WAL mode: the -wal and -shm files exist now
            conn.exec_driver_sql("SELECT 1")
            db = tmp_path / "d" / "e3backup.db"
            for path in (db, db.with_name("e3backup.db-wal"), db.with_name("e3backup.db-shm")):
                assert path.exists(), path
                assert path.stat().st_mode & 0o777 == 0o600, (path, oct(path.stat().st_mode))
        state.engine.dispose()
        os.chmod(db, 0o644)
        build_state(Settings(data_dir=tmp_path / "d")).engine.dispose()
        assert db.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_readable_secret_key_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.load_secret()
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        settings.load_secret()


@pytest.mark.parametrize(
    "weak", ["changeme", "changethis-changethis-changethis-1", "a" * 40, "short-but-random-9"]
)
def test_weak_secret_keys_are_refused(tmp_path: Path, weak: str) -> None:
    with pytest.raises(UsageError, match="secret key"):
        Settings(data_dir=tmp_path, secret_key=weak).load_secret()


def test_listen_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        Settings(data_dir=tmp_path, listen="8080")
    s = Settings(data_dir=tmp_path, listen="0.0.0.0:9000")
    assert (s.host, s.port) == ("0.0.0.0", 9000)


def test_migrations_match_the_models(app: FastAPI, world: World) -> None:
    """The app migrated the database on start; the schema is exactly what the models say."""
    with app.state.e3.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
