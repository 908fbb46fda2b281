"""What the recovery session hands the console, and how the console opens the repository with it.

Through the session (``get_run``, bearer session token) the server hands over, in memory only:

- the restore point: snapshot ID (full), the agent's host name and ID, the source backup run;
- the job's restore policy: ``restore_parallel_workers``, ``restore_segment_size_mb``;
- the repository access: the job's destination — for S3 the endpoint, bucket, prefix, region,
  access key ID and secret key; for a local destination its path — and the repository password.

The technician never types any of it and the console never writes it anywhere: no config file,
no cache directory (the repository is opened without a local cache), secrets registered with
the log redactor. Only the target disk is written.

For a gateway-mode job the destination is the repository gateway instead (``GatewayDestination``):
its URL and the session's own token, which the gateway lets read that job's repository and
nothing else; the storage credentials never reach the console (docs/gateway.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..agent.destination import AnyDestination, repository_location
from ..agent.logs import SECRETS
from ..api.agent import RunAssignment
from ..api.jobs import GatewayDestination, S3Destination
from ..errors import UsageError
from ..repo.repository import Repository
from ..store.retry import RetryPolicy
from ..store.url import open_store


@dataclass(frozen=True)
class RestorePoint:
    """The snapshot a recovery session may restore, and nothing else."""

    run_id: int
    snapshot_id: str
    hostname: str
    agent_id: int | None
    source_run_id: int | None
    job_name: str
    workers: int | None
    segment_size_mb: int | None


class RepositoryAccess(Protocol):
    """Opens the repository for the session's restore (read only; no local cache)."""

    @property
    def where(self) -> str:
        """Where the repository is, for messages (no secret)."""
        ...

    def open(self) -> Repository: ...


class DestinationAccess:
    """The job's own destination, as the session hands it over (until a gateway replaces it)."""

    def __init__(self, destination: AnyDestination, retry: RetryPolicy | None = None) -> None:
        self._dest = destination
        self._retry = retry
        SECRETS.add(destination.repository_password, getattr(destination, "secret_access_key", None),
                    getattr(destination, "token", None))

    @property
    def where(self) -> str:
        return repository_location(self._dest)[0]

    def open(self) -> Repository:
        location, options = repository_location(self._dest)
        if isinstance(self._dest, S3Destination | GatewayDestination) and self._retry is not None:
            options["retry"] = self._retry
        store = open_store(location, **options)
        return Repository.open(store, self._dest.repository_password.encode())


def restore_point(run: RunAssignment) -> RestorePoint:
    """The session's restore point; a run that is not a bare-metal restore of one full snapshot
    ID is refused (the console restores exactly what the dashboard chose, never ``latest``)."""
    restore = run.restore or {}
    snapshot = str(restore.get("snapshot_id", ""))
    if restore.get("type") != "bare_metal" or len(snapshot) != 64:
        raise UsageError(f"run {run.run_id} is not a bare-metal recovery of one snapshot")
    return RestorePoint(
        run_id=run.run_id,
        snapshot_id=snapshot,
        hostname=str(restore.get("hostname", "")),
        agent_id=restore.get("agent_id"),
        source_run_id=restore.get("source_run_id"),
        job_name=run.job_name,
        workers=run.policy.restore_parallel_workers,
        segment_size_mb=run.policy.restore_segment_size_mb,
    )


__all__ = ["DestinationAccess", "RepositoryAccess", "RestorePoint", "restore_point"]
