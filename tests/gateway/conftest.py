"""A server with its repository gateway on a real socket (uvicorn in a thread, SQLite), and rows
for agents and gateway-mode jobs written straight into its database (the API that creates them
is tested in tests/server)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e3backup.server import Settings, create_app
from e3backup.server.db.models import Agent, Job, RecoverySession, Run, Tenant, User
from e3backup.server.security.tokens import AGENT, RECOVERY, gateway_token, hash_token, new_token
from e3backup.server.services.jobs import secrets_aad
from e3backup.server.state import ServerState
from tests.helpers import PASSWORD
from tests.plugins.seaweedfs import SeaweedServer
from tests.server.live import serve_in_thread

SECRET_KEY = "k3Y-for-gateway-tests-only-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@dataclass
class Actor:
    agent_id: int
    agent_token: str

    @property
    def token(self) -> str:
        return gateway_token(self.agent_token)


@dataclass
class GatewayWorld:
    url: str
    state: ServerState
    repos: Path
    _seq: list[int] = field(default_factory=lambda: [0])

    def tenant(self) -> int:
        self._seq[0] += 1
        with self.state.sessions() as s:
            t = Tenant(name=f"tenant-{self._seq[0]}", created_at=NOW)
            s.add(t)
            s.commit()
            return t.id

    def agent(self, tenant_id: int, hostname: str = "pc1") -> Actor:
        token = new_token(AGENT)
        with self.state.sessions() as s:
            a = Agent(tenant_id=tenant_id, hostname=hostname, os="linux", token_hash=hash_token(token),
                      gateway_token_hash=hash_token(gateway_token(token)), revoked=False, created_at=NOW,
                      last_seen_at=None)
            s.add(a)
            s.commit()
            return Actor(a.id, token)

    def job(self, actor: Actor, destination: dict[str, Any], secrets: dict[str, Any] | None = None,
            mode: str = "gateway", retention: dict[str, Any] | None = None) -> int:
        with self.state.sessions() as s:
            tenant_id = s.get(Agent, actor.agent_id).tenant_id  # type: ignore[union-attr]
            sealed = self.state.box.seal({"repository_password": PASSWORD, **(secrets or {})}, secrets_aad(tenant_id))
            j = Job(tenant_id=tenant_id, agent_id=actor.agent_id, name=f"job-{self._seq[0]}", engine="files",
                    source_path="/data", destination=destination, destination_secrets=sealed,
                    retention=retention or {}, storage_mode=mode, created_at=NOW, updated_at=NOW)
            s.add(j)
            s.commit()
            return j.id

    def local_job(self, actor: Actor, name: str, **kw: Any) -> tuple[int, Path]:
        path = self.repos / name
        return self.job(actor, {"type": "local", "path": str(path)}, **kw), path

    def s3_job(self, actor: Actor, s3: SeaweedServer, bucket: str, prefix: str, **kw: Any) -> int:
        dest = {"type": "s3", "endpoint": s3.endpoint, "bucket": bucket, "prefix": prefix,
                "access_key_id": s3.access_key}
        return self.job(actor, dest, {"secret_access_key": s3.secret_key}, **kw)

    def recovery_token(self, job_id: int) -> str:
        """A live recovery session's token for a restore run of ``job_id`` (read-only at the gateway)."""
        token = new_token(RECOVERY)
        now = datetime.now(UTC)
        with self.state.sessions() as s:
            job = s.get(Job, job_id)
            assert job is not None
            self._seq[0] += 1
            user = User(email=f"tech{self._seq[0]}@msp.example", password_hash="x", role="msp_admin",
                        created_at=now)
            run = Run(tenant_id=job.tenant_id, job_id=job.id, agent_id=None, kind="restore", trigger="recovery",
                      status="running", created_at=now)
            s.add_all([user, run])
            s.flush()
            s.add(RecoverySession(tenant_id=job.tenant_id, run_id=run.id, token_hash=hash_token(token),
                                  created_by=user.id, created_at=now, expires_at=now + timedelta(hours=1)))
            s.commit()
        return token

    def rest_url(self, job_id: int, token: str | None = None) -> str:
        auth = f"e3backup:{token}@" if token else ""
        return f"rest:{self.url.replace('://', '://' + auth)}/gateway/job-{job_id}/"


@pytest.fixture(scope="module")
def gateway_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayWorld]:
    base = tmp_path_factory.mktemp("gateway")
    repos = base / "repos"
    repos.mkdir()
    settings = Settings(
        data_dir=base / "data", database_url=f"sqlite:///{base / 'server.db'}", secret_key=SECRET_KEY,
        argon2_time_cost=1, argon2_memory_kib=1024, scheduler_enabled=False, gateway_local_roots=[repos],
        maintenance_worker_enabled=False,
    )
    app = create_app(settings)
    with serve_in_thread(app) as url:
        yield GatewayWorld(url, app.state.e3, repos)
