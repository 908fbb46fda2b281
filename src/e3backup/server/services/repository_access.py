"""The server reading a job's repository, for browsing and downloads, one request at a time.

The destination's secrets are unsealed when a request needs them and dropped when it ends: no
open repository, key or password outlives the request (nothing is cached between requests).
An S3 destination is read through the tenant's endpoint and credentials; a local destination
is a folder on the agent machine, which the server reads only when it lies under one of the
server's ``browse_local_roots`` (the same disk mounted on the server, or a test setup):
otherwise the answer says the repository is out of the server's reach.

On a dashboard user's behalf (``reader`` given), a **gateway-mode** job's repository is not read
with the storage credentials: it is read through the repository gateway of this process with a
read-only token issued for this one opening (``gateway_readers``, ``gateway.inprocess``), the way
the recovery console reads it. Whatever the request's code does, the gateway refuses any write or
delete. The server's own work (usage, quotas) passes no reader and reads directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from e3backup.errors import E3Error
from e3backup.gateway.inprocess import BASE_URL, InProcessPool
from e3backup.gateway.protocol import repo_path
from e3backup.repo.repository import Repository
from e3backup.server.clock import Clock
from e3backup.server.db.models import Job
from e3backup.server.errors import Conflict
from e3backup.server.security import SecretBox
from e3backup.server.services import gateway_readers
from e3backup.server.services.jobs import secrets_aad
from e3backup.store.base import Store
from e3backup.store.rest import RestStore
from e3backup.store.url import open_store


def _under(path: str, roots: list[Path]) -> bool:
    real = os.path.realpath(path)
    return any(real == str(r) or real.startswith(str(r).rstrip(os.sep) + os.sep)
               for r in (Path(os.path.realpath(root)) for root in roots))


def store_location(dest: dict[str, object], local_roots: list[Path]) -> tuple[str, dict[str, object]]:
    if dest.get("type") == "s3":
        prefix = str(dest.get("prefix") or "").strip("/")
        url = f"s3:{str(dest['endpoint']).rstrip('/')}/{dest['bucket']}" + (f"/{prefix}" if prefix else "")
        options: dict[str, object] = {"access_key": dest.get("access_key_id"),
                                      "secret_key": dest.get("secret_access_key")}
        if dest.get("region"):
            options["region"] = dest["region"]
        return url, options
    path = str(dest.get("path") or "")
    if not local_roots or not _under(path, local_roots):
        raise Conflict(f"the repository is in the folder {path} on the agent machine, out of the server's "
                       "reach (browse_local_roots); restore on the agent instead, or use an S3 destination")
    return path, {}


@dataclass(frozen=True)
class RepoRef:
    """What opening a job's repository needs, read from its row while the request's database
    session is open (a download streams after that session is gone); the secrets stay sealed."""

    job_id: int
    tenant_id: int
    destination: dict[str, Any]
    sealed_secrets: str
    storage_mode: str = "direct"

    @classmethod
    def of(cls, job: Job) -> RepoRef:
        return cls(job.id, job.tenant_id, dict(job.destination), job.destination_secrets, job.storage_mode)


@dataclass(frozen=True)
class GatewayReader:
    """Reading for a dashboard user: the gateway's in-process transport (None when this server
    does not serve the gateway) and what issuing a read-only token needs."""

    pool: InProcessPool | None
    sessions: sessionmaker[Session]
    clock: Clock
    user_id: int | None


def _gateway_store(reader: GatewayReader, job_id: int, token: str) -> Store:
    if reader.pool is None:
        raise Conflict(f"job {job_id}'s repository is read through the repository gateway, which this server "
                       "does not serve (gateway_enabled is off)")
    return RestStore(f"rest:{BASE_URL}{repo_path(job_id)}", password=token, pool=reader.pool.bound())


@contextmanager
def open_job_repository(box: SecretBox, ref: RepoRef, local_roots: list[Path],
                        reader: GatewayReader | None = None) -> Iterator[Repository]:
    """The job's repository with its index loaded, for the duration of the ``with`` block;
    through the gateway with a read-only token when ``reader`` is given and the job is in
    gateway mode."""
    through_gateway = reader is not None and ref.storage_mode == "gateway"
    dest = {**ref.destination, **box.open(ref.sealed_secrets, secrets_aad(ref.tenant_id))}
    try:
        location, options = ("", {}) if through_gateway else store_location(dest, local_roots)
        password = str(dest.get("repository_password") or "").encode()
    finally:
        dest.clear()
    token = None
    try:
        if reader is not None and through_gateway:
            token = gateway_readers.issue(reader.sessions, reader.clock.now(), ref.job_id, reader.user_id)
            store = _gateway_store(reader, ref.job_id, token)
        else:
            store = open_store(location, **options)
        repo = Repository.open(store, password)
        repo.load_index()
    except BaseException as e:
        if token is not None and reader is not None:
            gateway_readers.revoke(reader.sessions, token)
        if isinstance(e, E3Error):
            raise Conflict(f"the repository of job {ref.job_id} cannot be read: {e}") from e
        raise
    finally:
        options.clear()
        del password
    try:
        yield repo
    finally:
        repo.close()
        if token is not None and reader is not None:
            gateway_readers.revoke(reader.sessions, token)


__all__ = ["GatewayReader", "RepoRef", "open_job_repository", "store_location"]
