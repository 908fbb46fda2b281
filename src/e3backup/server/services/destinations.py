"""Storage destinations defined once per tenant: an S3 endpoint, bucket, prefix and credentials,
or a folder on the agent machine, with the repository password and an optional quota.

Jobs choose one by ``destination_id``; its settings and secrets are copied into each job
(``jobs.copy_destination``) and rewritten here whenever it changes, so agents, maintenance,
usage and the repository gateway read every job's destination the same way. The S3 secret key
and the repository password are sealed (``SecretBox``) and never returned: the public view says
only whether each is set, as for inline destinations.

"Test connection" runs on the server: the storage probe (DNS, TCP, TLS, HTTP) first, then the
credentials against the bucket, then the repository (none yet, opens, or the password is wrong).
A folder on an agent machine is tested by the server when it can read it (``browse_local_roots``);
otherwise the answer says so, names the server's roots, and gives the agents' own verdict: what
the latest run of a job on this destination (since it last changed) said when it opened the
repository there (``REPOSITORY_OPENED``/``INITIALIZED``), failed to (``REPOSITORY_FAILED``), or
was refused the folder (``RUN_REFUSED`` on ``destination.path``: outside the agent's
``local_destination_roots``); with no such run yet, "not tested" (``ok`` None) and how to test it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from e3backup.errors import E3Error, RepositoryNotFoundError, UsageError, WrongPasswordError
from e3backup.repo.repository import Repository
from e3backup.server.db.models import Agent, Job, Run, RunEvent, StorageDestination, User
from e3backup.server.errors import Conflict, FieldError, NotFound
from e3backup.server.schemas import (
    ConnectionVerdict,
    DestinationPublic,
    StorageDestinationCreate,
    StorageDestinationPublic,
    StorageDestinationUpdate,
)
from e3backup.server.security import SecretBox
from e3backup.server.services.jobs import (
    SECRETS_BY_TYPE,
    copy_destination,
    secrets_aad,
    split_secrets,
    storage_destination_aad,
)
from e3backup.server.services.repository_access import store_location
from e3backup.storage import probe
from e3backup.store.base import FileType
from e3backup.store.url import open_store


def visible(session: Session, user: User, tenant_ids: list[int] | None = None) -> list[StorageDestination]:
    query = select(StorageDestination).order_by(StorageDestination.tenant_id, StorageDestination.name)
    if not user.is_admin:
        query = query.where(StorageDestination.tenant_id == user.tenant_id)
    elif tenant_ids is not None:
        query = query.where(StorageDestination.tenant_id.in_(tenant_ids))
    return list(session.scalars(query))


def get_visible(session: Session, user: User, dest_id: int) -> StorageDestination:
    dest = session.get(StorageDestination, dest_id)
    if dest is None or not (user.is_admin or dest.tenant_id == user.tenant_id):
        raise NotFound(f"storage destination {dest_id} not found")
    return dest


def _check_name(session: Session, tenant_id: int, name: str, own_id: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise FieldError("name", "required")
    clash = session.scalar(
        select(StorageDestination.id).where(
            StorageDestination.tenant_id == tenant_id, func.lower(StorageDestination.name) == name.lower()
        )
    )
    if clash is not None and clash != own_id:
        raise FieldError("name", f"this tenant already has a destination named {name!r}")
    return name


def create(
    session: Session, box: SecretBox, user: User, spec: StorageDestinationCreate, now: datetime
) -> StorageDestination:
    if user.is_admin:
        if spec.tenant_id is None:
            raise FieldError("tenant_id", "MSP staff: say which tenant the destination belongs to")
        tenant_id = spec.tenant_id
    else:
        if spec.tenant_id not in (None, user.tenant_id):
            raise FieldError("tenant_id", "you manage the destinations of your own tenant only")
        assert user.tenant_id is not None
        tenant_id = user.tenant_id
    settings, secrets = split_secrets(spec.destination, {})
    dest = StorageDestination(
        tenant_id=tenant_id,
        name=_check_name(session, tenant_id, spec.name),
        type=settings.pop("type"),
        settings=settings,
        secrets_sealed=box.seal(secrets, storage_destination_aad(tenant_id)),
        quota_bytes=spec.quota_bytes,
        quota_warn_percent=spec.quota_warn_percent,
        created_at=now,
        updated_at=now,
    )
    session.add(dest)
    session.flush()
    return dest


def update(
    session: Session, box: SecretBox, dest: StorageDestination, patch: StorageDestinationUpdate, now: datetime
) -> list[Job]:
    """Apply the change and rewrite every job using the destination; returns those jobs."""
    if patch.name is not None:
        dest.name = _check_name(session, dest.tenant_id, patch.name, dest.id)
    if patch.destination is not None:
        kept = box.open(dest.secrets_sealed, storage_destination_aad(dest.tenant_id))
        if patch.destination.type != dest.type:
            kept = {}  # another kind of storage: its secrets must be given
        settings, secrets = split_secrets(patch.destination, kept)
        dest.type = settings.pop("type")
        dest.settings = settings
        dest.secrets_sealed = box.seal(secrets, storage_destination_aad(dest.tenant_id))
    if patch.clear_quota:
        dest.quota_bytes = None
    elif patch.quota_bytes is not None:
        dest.quota_bytes = patch.quota_bytes
    if patch.quota_warn_percent is not None:
        dest.quota_warn_percent = patch.quota_warn_percent
    dest.updated_at = now
    jobs = users_of(session, dest)
    for job in jobs:
        kept = box.open(job.destination_secrets, secrets_aad(job.tenant_id))
        copy_destination(box, job, dest, kept)
        job.updated_at = now
    session.flush()
    return jobs


def users_of(session: Session, dest: StorageDestination, live_only: bool = False) -> list[Job]:
    query = select(Job).where(Job.destination_id == dest.id).order_by(Job.id)
    if live_only:
        query = query.where(Job.deleted_at.is_(None))
    return list(session.scalars(query))


def delete(session: Session, dest: StorageDestination) -> None:
    """Refused while a job uses it; deleted jobs keep their copy (their snapshots stay restorable)."""
    live = users_of(session, dest, live_only=True)
    if live:
        names = ", ".join(j.name for j in live)
        raise Conflict(f"storage destination {dest.name} is used by {len(live)} job(s): {names}")
    for job in users_of(session, dest):
        job.destination_id = None
    session.delete(dest)
    session.flush()


def public(
    dest: StorageDestination, stored_bytes: int | None = None, jobs: list[int] | None = None
) -> StorageDestinationPublic:
    names = SECRETS_BY_TYPE.get(dest.type, ())
    s = dest.settings
    return StorageDestinationPublic(
        id=dest.id,
        tenant_id=dest.tenant_id,
        name=dest.name,
        destination=DestinationPublic(
            type=dest.type,
            endpoint=s.get("endpoint"),
            bucket=s.get("bucket"),
            prefix=s.get("prefix"),
            region=s.get("region"),
            access_key_id=s.get("access_key_id"),
            path=s.get("path"),
            has_secret_key="secret_access_key" in names,
            has_repository_password=True,
        ),
        quota_bytes=dest.quota_bytes,
        quota_warn_percent=dest.quota_warn_percent,
        stored_bytes=stored_bytes,
        jobs=jobs or [],
        created_at=dest.created_at,
        updated_at=dest.updated_at,
    )


def describe(dest: StorageDestination) -> str:
    s = dest.settings
    if dest.type == "s3":
        prefix = str(s.get("prefix") or "").strip("/")
        return f"s3 {s.get('endpoint')}/{s.get('bucket')}" + (f"/{prefix}" if prefix else "")
    return f"local {s.get('path')} (on the agent machine)"


def _verdict(ok: bool | None, code: str, message: str, steps: list[str]) -> ConnectionVerdict:
    steps.append(message)
    return ConnectionVerdict(ok=ok, code=code, message=message, steps=steps)


AGENT_CODES = ("REPOSITORY_OPENED", "REPOSITORY_INITIALIZED", "REPOSITORY_FAILED", "RUN_REFUSED")
RUNS_LOOKED_AT = 20


def agent_verdict(session: Session, dest: StorageDestination, local_roots: list[Path]) -> ConnectionVerdict:
    """For a folder on an agent machine that the server cannot read: the latest word of an agent
    that used it (since the destination last changed), or "not tested" saying how to test it."""
    path = str(dest.settings.get("path") or "")
    roots = ", ".join(str(r) for r in local_roots) or "none set"
    steps = [f"{path} is a folder on the agent machine, outside the server's browse_local_roots ({roots}): "
             "the server cannot open it, so the agents' own verdict is shown"]
    jobs = {j.id: j for j in users_of(session, dest)}
    runs = list(session.scalars(
        select(Run).where(Run.job_id.in_(jobs), Run.finished_at.is_not(None), Run.finished_at >= dest.updated_at)
        .order_by(Run.finished_at.desc(), Run.id.desc()).limit(RUNS_LOOKED_AT)
    )) if jobs else []
    for run in runs:
        said = session.scalars(
            select(RunEvent).where(RunEvent.run_id == run.id, RunEvent.code.in_(AGENT_CODES),
                                   or_(RunEvent.code != "RUN_REFUSED", RunEvent.message.contains("destination.path")))
            .order_by(RunEvent.id)
        ).first()
        if said is None:
            continue
        agent = session.get(Agent, run.agent_id) if run.agent_id is not None else None
        who = (f"agent {agent.hostname if agent else run.agent_id}, run #{run.id} of job "
               f"{jobs[run.job_id or 0].name} ({run.finished_at:%Y-%m-%d %H:%M} UTC)")
        ok = said.code in ("REPOSITORY_OPENED", "REPOSITORY_INITIALIZED")
        code = "AGENT_OPENED" if ok else "AGENT_REFUSED" if said.code == "RUN_REFUSED" else "AGENT_FAILED"
        return _verdict(ok, code, f"{who}: {said.code}: {said.message}", steps)
    return _verdict(None, "AGENT_NOT_TESTED", f"not tested: the server cannot read {path}, and no agent has used it "
                    "yet. The agent checks it when a job's run starts (the folder must lie under the agent's "
                    "local_destination_roots): run a job on this destination now and test again, or start the "
                    "server with --browse-local-root for a folder it shares with the agent", steps)


def check_connection(
    box: SecretBox, dest: StorageDestination, local_roots: list[Path], timeout: float = 5.0,
    session: Session | None = None,
) -> ConnectionVerdict:
    """Probe, then credentials, then the repository; the first failure is the verdict."""
    full: dict[str, Any] = {
        "type": dest.type,
        **dest.settings,
        **box.open(dest.secrets_sealed, storage_destination_aad(dest.tenant_id)),
    }
    steps: list[str] = []
    try:
        if dest.type == "s3":
            found = probe(str(full["endpoint"]), timeout)
            if not found.ok:
                return _verdict(False, found.code.value, found.message, steps)
            steps.append(f"{found.code.value}: {found.message}")
        try:
            location, options = store_location(full, local_roots)
        except Conflict as e:
            if session is not None and dest.type == "local":
                return agent_verdict(session, dest, local_roots)
            return _verdict(False, "OUT_OF_REACH", str(e), steps)
        password = str(full.get("repository_password") or "").encode()
        try:
            store = open_store(location, **options)
        except UsageError as e:
            return _verdict(False, "STORAGE_SETTINGS", str(e), steps)
        try:
            try:
                next(iter(store.list(FileType.KEY)), None)  # the bucket exists and the keys may list it
            except E3Error as e:
                return _verdict(False, "STORAGE_ACCESS", f"cannot list {location}: {e}", steps)
            steps.append(f"{location}: the credentials may list it")
            try:
                Repository.open(store, password)
            except RepositoryNotFoundError:
                return _verdict(
                    True, "REPOSITORY_NOT_YET", "no repository there yet: the first backup creates it", steps
                )
            except WrongPasswordError:
                return _verdict(
                    False,
                    "WRONG_PASSWORD",
                    "a repository is there, but the repository password does not open it",
                    steps,
                )
            except E3Error as e:
                return _verdict(False, "REPOSITORY_UNREADABLE", f"the repository cannot be read: {e}", steps)
            return _verdict(True, "REPOSITORY_OPENS", "the repository opens with its password", steps)
        finally:
            store.close()
            del password
    finally:
        full.clear()


__all__ = ["agent_verdict", "check_connection", "create", "delete", "describe", "get_visible", "public", "update",
           "users_of", "visible"]
