"""From a run's destination to an open repository: URL, storage preflight, open or init.

A gateway-mode job's destination is the server's repository gateway (``rest:`` URL, token in
the HTTP basic password): the agent never holds the storage's credentials and may only add to
the repository (docs/gateway.md). For S3 and the gateway the preflight (``storage.probe``) runs
first, so an unreachable endpoint fails the run
with a ``STORAGE_*`` event that says where it breaks. A repository that does not exist yet is
created (the job's first run). Secrets stay in memory: they are registered with the log
redactor and never put in a URL, an event or a log line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..api.jobs import GatewayDestination, LocalDestination, S3Destination
from ..errors import RepositoryNotFoundError
from ..events import EventCode
from ..storage.probe import ProbeResult, probe
from .client import AgentError
from .logs import SECRETS
from .reporter import RunReporter

if TYPE_CHECKING:
    from ..repo import KDFParams, Repository


class StorageUnavailable(AgentError):
    """The storage preflight failed (the event says how)."""


AnyDestination = S3Destination | LocalDestination | GatewayDestination


def repository_location(dest: AnyDestination) -> tuple[str, dict[str, Any]]:
    if isinstance(dest, LocalDestination):
        return dest.path, {}
    if isinstance(dest, GatewayDestination):  # the token goes in a header, never in the URL
        return "rest:" + dest.url, {"username": "e3backup", "password": dest.token, "upload_connections": 8}
    prefix = dest.prefix.strip("/")
    url = f"s3:{dest.endpoint.rstrip('/')}/{dest.bucket}" + (f"/{prefix}" if prefix else "")
    options: dict[str, Any] = {"access_key": dest.access_key_id, "secret_key": dest.secret_access_key}
    if dest.region:
        options["region"] = dest.region
    return url, options


def preflight(
    dest: AnyDestination,
    reporter: RunReporter,
    prober: Callable[[str], ProbeResult] = probe,
) -> None:
    """Register the destination's secrets with the log redactor; for S3, probe the endpoint (a
    ``STORAGE_*`` event) and raise ``StorageUnavailable`` when it cannot be reached."""
    SECRETS.add(dest.repository_password, getattr(dest, "secret_access_key", None), getattr(dest, "token", None))
    if isinstance(dest, S3Destination | GatewayDestination):
        result = prober(dest.endpoint if isinstance(dest, S3Destination) else "rest:" + dest.url)
        reporter.event(result.code, result.message, **result.details)
        if not result.ok:
            raise StorageUnavailable(f"storage preflight failed: {result.code.value}: {result.message}")


def open_repository(
    dest: AnyDestination,
    reporter: RunReporter,
    *,
    create: bool = True,
    kdf: KDFParams | None = None,
    prober: Callable[[str], ProbeResult] = probe,
    limit_upload: float | None = None,
) -> Repository:
    """Open (or, with ``create``, initialise) the run's repository; ``limit_upload`` in KiB/s."""
    from ..repo import Repository  # at the first run: the idle agent does not hold the repository code
    from ..store.url import open_store

    location, options = repository_location(dest)
    preflight(dest, reporter, prober)
    store = open_store(location, limit_upload=limit_upload, **options)
    password = dest.repository_password.encode()
    try:
        repo = Repository.open(store, password)
        reporter.event(EventCode.REPOSITORY_OPENED, f"repository {location} opened")
    except RepositoryNotFoundError:
        if not create:
            raise
        repo = Repository.init(store, password, kdf)
        reporter.event(EventCode.REPOSITORY_INITIALIZED, f"new repository created at {location}")
    if isinstance(dest, S3Destination | GatewayDestination):
        from ..repo.cache import Cache, default_cache_dir

        repo.cache = Cache(default_cache_dir(), repo.config.id)
    return repo


__all__ = ["AnyDestination", "StorageUnavailable", "open_repository", "preflight", "repository_location"]
