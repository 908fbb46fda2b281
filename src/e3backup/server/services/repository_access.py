"""The server reading a job's repository, for browsing and downloads, one request at a time.

The destination's secrets are unsealed when a request needs them and dropped when it ends: no
open repository, key or password outlives the request (nothing is cached between requests).
An S3 destination is read through the tenant's endpoint and credentials; a local destination
is a folder on the agent machine, which the server reads only when it lies under one of the
server's ``browse_local_roots`` (the same disk mounted on the server, or a test setup):
otherwise the answer says the repository is out of the server's reach.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e3backup.errors import E3Error
from e3backup.repo.repository import Repository
from e3backup.server.db.models import Job
from e3backup.server.errors import Conflict
from e3backup.server.security import SecretBox
from e3backup.server.services.jobs import secrets_aad
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

    @classmethod
    def of(cls, job: Job) -> RepoRef:
        return cls(job.id, job.tenant_id, dict(job.destination), job.destination_secrets)


@contextmanager
def open_job_repository(box: SecretBox, ref: RepoRef, local_roots: list[Path]) -> Iterator[Repository]:
    """The job's repository with its index loaded, for the duration of the ``with`` block."""
    dest = {**ref.destination, **box.open(ref.sealed_secrets, secrets_aad(ref.tenant_id))}
    try:
        location, options = store_location(dest, local_roots)
        password = str(dest.get("repository_password") or "").encode()
    finally:
        dest.clear()
    try:
        store = open_store(location, **options)
        repo = Repository.open(store, password)
        repo.load_index()
    except E3Error as e:
        raise Conflict(f"the repository of job {ref.job_id} cannot be read: {e}") from e
    finally:
        options.clear()
        del password
    try:
        yield repo
    finally:
        repo.close()


__all__ = ["RepoRef", "open_job_repository", "store_location"]
