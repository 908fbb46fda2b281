"""Jobs: the seeds' validation rules, secrets sealed at rest, and the public (secret-free) view.

Rules (create and update alike; an update is merged into the job and validated whole):

- every job runs on an agent the user may see; the job belongs to that agent's tenant;
- the agent must run the job's engine, when it reported its engines (422 on ``engine``);
- ``disk_image`` needs ``disk_source_volume``; ``disk_image_format`` defaults to ``vhdx``
  (``vhdx`` or ``raw``); ``disk_temp_dir`` is optional; ``source_path`` is set to the volume;
- ``hyperv`` needs ``hyperv_config`` (VMs, enable_rct, consistency_level);
- ``files`` (alias ``kopia``) and ``sync`` need ``source_path`` or ``source_paths``;
- engine-specific fields on another engine are refused, naming the field;
- ``policy.verify_boot`` (proof of restore) only on files and disk_image jobs, and not for disk
  images on a Windows agent (the proof boots in QEMU and runs Linux checkers);
- the schedule is a valid 5-field cron expression in a known time zone;
- destination secrets are required on create and kept when omitted on update;
- the destination is given inline or as ``destination_id``, a storage destination of the job's
  tenant defined once (``services.destinations``): its settings and secrets are copied into the
  job and rewritten whenever the destination changes, so every reader of ``job.destination``
  (agents, maintenance, usage, the gateway) sees one shape either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.api.common import DiskImageFormat, Engine
from e3backup.api.jobs import HyperVConfig, Policy, Retention
from e3backup.api.volumes import parse_volume
from e3backup.server.db.models import Agent, HyperVVM, Job, StorageDestination, User
from e3backup.server.errors import Conflict, FieldError
from e3backup.server.scheduler import next_fire
from e3backup.server.schemas import (
    DestinationPublic,
    JobCreate,
    JobPublic,
    JobUpdate,
    LocalDestinationIn,
    S3DestinationIn,
    Schedule,
)
from e3backup.server.security import SecretBox

if TYPE_CHECKING:
    from e3backup.server.config import Settings

SECRET_FIELDS = ("secret_access_key", "repository_password")
SECRETS_BY_TYPE = {"s3": SECRET_FIELDS, "local": ("repository_password",)}


def secrets_aad(tenant_id: int) -> str:
    return f"job-destination:tenant:{tenant_id}"


def storage_destination_aad(tenant_id: int) -> str:
    return f"storage-destination:tenant:{tenant_id}"


def copy_destination(box: SecretBox, job: Job, dest: StorageDestination, kept: dict[str, Any]) -> None:
    """Write the storage destination's settings and secrets into the job (its own share
    credentials, from ``kept``, stay with it)."""
    secrets = box.open(dest.secrets_sealed, storage_destination_aad(dest.tenant_id))
    secrets |= {k: kept[k] for k in SHARE_SECRETS if k in kept}
    job.destination = {"type": dest.type, **dest.settings}
    job.destination_secrets = box.seal(secrets, secrets_aad(dest.tenant_id))
    job.destination_id = dest.id


def validate_schedule(schedule: Schedule | None) -> None:
    if schedule is None:
        return
    if len(schedule.cron.split()) != 5 or not croniter.is_valid(schedule.cron):
        raise FieldError("schedule.cron", f"not a valid 5-field cron expression: {schedule.cron!r}")
    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise FieldError("schedule.timezone", f"unknown time zone {schedule.timezone!r}") from e


def _resolve_agent(session: Session, user: User, spec: JobCreate) -> Agent:
    if spec.agent_id is None:
        if spec.engine is Engine.DISK_IMAGE:
            raise FieldError("agent_id", "disk_image jobs require an agent")
        raise FieldError("agent_id", "required: every job runs on an agent")
    agent = session.get(Agent, spec.agent_id)
    if agent is None or agent.revoked or not (user.is_admin or user.tenant_id == agent.tenant_id):
        raise FieldError("agent_id", f"no agent {spec.agent_id}")
    if not agent_runs(agent, spec.engine.value):
        runs = ", ".join(agent.engines or []) or "no engine"
        raise FieldError(
            "engine",
            f"agent {agent.hostname} ({agent.platform or agent.os}) cannot run {spec.engine.value} jobs; "
            f"it runs {runs}",
        )
    return agent


def agent_runs(agent: Agent, engine: str) -> bool:
    """Whether the agent reported ``engine`` among its engines (an agent that never reported
    its engines is not second-guessed)."""
    return agent.engines is None or engine in agent.engines


def _check_proof(spec: JobCreate, agent: Agent) -> None:
    """``verify_boot`` is offered only where the proof can run (docs/proof.md)."""
    if spec.policy.verify_boot == "off":
        return
    if spec.engine in (Engine.SYNC, Engine.HYPERV):
        raise FieldError("policy.verify_boot", f"proof of restore is for files and disk_image jobs, not "
                         f"{spec.engine.value} jobs")
    if spec.engine is Engine.DISK_IMAGE and (agent.platform == "win32" or agent.os.lower().startswith("win")):
        raise FieldError("policy.verify_boot", f"agent {agent.hostname} runs Windows: proving a disk image boots "
                         "it in QEMU and checks it with e2fsck/ntfsfix, which need a Linux agent")


def _check_engine_fields(spec: JobCreate) -> JobCreate:
    """The engine rules; returns the spec with defaults filled in."""
    disk_fields = ("disk_source_volume", "disk_image_format", "disk_temp_dir")
    if spec.engine is Engine.DISK_IMAGE:
        volume = (spec.disk_source_volume or "").strip()
        if not volume:
            raise FieldError("disk_source_volume", "required for disk_image jobs (e.g. C: or /dev/sda)")
        try:
            parse_volume(volume)  # the forms the agent accepts too (``api.volumes``)
        except ValueError as e:
            raise FieldError("disk_source_volume", str(e)) from None
        if spec.hyperv_config is not None:
            raise FieldError("hyperv_config", "only for hyperv jobs")
        return spec.model_copy(
            update={
                "disk_source_volume": volume,
                "disk_image_format": spec.disk_image_format or DiskImageFormat.VHDX,
                "disk_temp_dir": (spec.disk_temp_dir or "").strip() or None,
                "source_path": volume,
            }
        )
    for name in disk_fields:
        if getattr(spec, name) is not None:
            raise FieldError(name, "only for disk_image jobs")
    if spec.engine is Engine.HYPERV:
        if spec.hyperv_config is None:
            raise FieldError("hyperv_config", "required for hyperv jobs (vms, enable_rct, consistency_level)")
        return spec
    if spec.hyperv_config is not None:
        raise FieldError("hyperv_config", "only for hyperv jobs")
    if not spec.source_path.strip() and not spec.source_paths:
        raise FieldError("source_path", f"{spec.engine.value} jobs need source_path or source_paths")
    return spec


def split_secrets(
    given: S3DestinationIn | LocalDestinationIn, kept: dict[str, Any], field: str = "destination"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The destination's settings and its secrets (each required: given or kept)."""
    dest = given.model_dump(mode="json")
    secrets: dict[str, Any] = {}
    for name in SECRETS_BY_TYPE[dest["type"]]:
        value = dest.pop(name, None) or kept.get(name)
        if not value:
            raise FieldError(f"{field}.{name}", "required")
        secrets[name] = value
    for name in SECRET_FIELDS:
        dest.pop(name, None)
    return dest, secrets


SHARE_SECRETS = ("share_username", "share_password")


@dataclass(frozen=True)
class GatewayServed:
    """What this server's repository gateway serves (``gateway_enabled``, ``gateway_local_roots``):
    gateway mode is offered and accepted only where it can run."""

    enabled: bool = True
    local_roots: tuple[Path, ...] = ()

    def refusal(self, destination: dict[str, Any]) -> str | None:
        """Why a job writing to ``destination`` cannot use the gateway, or None."""
        if not self.enabled:
            return "this server does not serve the repository gateway (gateway_enabled is off); use direct"
        if destination.get("type") == "local":
            from e3backup.gateway.stores import destination_location  # the gateway's own rule (no import cycle)

            try:
                destination_location(destination, list(self.local_roots))
            except Conflict:
                return (f"the folder {destination.get('path')} is on the agent machine: the gateway serves only "
                        "folders of the server under its gateway_local_roots; use direct")
        return None

    @classmethod
    def by(cls, settings: Settings) -> GatewayServed:
        return cls(settings.gateway_enabled, tuple(settings.gateway_local_roots))


def storage_mode(spec: JobCreate, job: Job, served: GatewayServed | None = None) -> str:
    """The mode asked for; else the job's own (an update that does not mention it); else gateway
    for S3 (agents never hold the bucket's keys) and direct for a folder of the agent machine.
    Gateway mode where ``served`` says the gateway cannot run is refused when asked for, and
    not chosen by default."""
    if spec.engine is Engine.SYNC:  # plain files in the bucket, not a repository: nothing to gateway
        if spec.storage_mode == "gateway":
            raise FieldError("storage_mode", "sync jobs copy plain files and cannot use the repository gateway")
        return "direct"
    refusal = served.refusal(job.destination) if served is not None else None
    if spec.storage_mode is not None:
        if spec.storage_mode == "gateway" and refusal is not None:
            raise FieldError("storage_mode", refusal)
        return spec.storage_mode
    if job.storage_mode and job.id is not None and (job.storage_mode != "gateway" or refusal is None):
        return job.storage_mode
    return "gateway" if job.destination.get("type") == "s3" and refusal is None else "direct"


def _share_secrets(spec: JobCreate, kept: dict[str, Any]) -> dict[str, Any]:
    """The job's share credentials, sealed with the destination's secrets: the new ones, none (an
    empty user name), or the stored ones when the spec does not mention them."""
    share = spec.share_credentials
    if share is None:
        return {k: kept[k] for k in SHARE_SECRETS if k in kept}
    return {"share_username": share.username, "share_password": share.password} if share.username else {}


def share_credentials(box: SecretBox, job: Job) -> dict[str, str] | None:
    """For the agent's run assignment only."""
    secrets = box.open(job.destination_secrets, secrets_aad(job.tenant_id))
    if not secrets.get("share_username"):
        return None
    return {"username": secrets["share_username"], "password": secrets.get("share_password", "")}


def save_job(
    session: Session,
    box: SecretBox,
    user: User,
    spec: JobCreate,
    now: datetime,
    job: Job | None = None,
    served: GatewayServed | None = None,
) -> Job:
    """Validate ``spec`` and write it into ``job`` (or a new job); ``served``: what the server's
    gateway can serve (None: not checked)."""
    spec = _check_engine_fields(spec)
    agent = _resolve_agent(session, user, spec)
    _check_proof(spec, agent)
    validate_schedule(spec.schedule)
    kept = box.open(job.destination_secrets, secrets_aad(job.tenant_id)) if job is not None else {}
    stored: StorageDestination | None = None
    destination: dict[str, Any]
    secrets: dict[str, Any]
    if spec.destination_id is not None:
        if spec.destination is not None:
            raise FieldError("destination_id", "give a destination or a destination_id, not both")
        stored = session.get(StorageDestination, spec.destination_id)
        if stored is None or stored.tenant_id != agent.tenant_id:
            raise FieldError("destination_id", f"no storage destination {spec.destination_id} for this agent's tenant")
        destination, secrets = {}, {}
    elif spec.destination is None:
        raise FieldError("destination", "required: a destination or a destination_id")
    else:
        if job is not None and job.destination_id is not None:
            kept = {k: kept[k] for k in SHARE_SECRETS if k in kept}  # a new inline one: no stored secrets
        destination, secrets = split_secrets(spec.destination, kept)
    secrets |= _share_secrets(spec, kept)
    schedule_changed = True
    if job is None:
        job = Job(created_at=now)
        session.add(job)
    else:
        schedule_changed = (job.schedule_cron, job.schedule_timezone, job.enabled) != (
            spec.schedule.cron if spec.schedule else None,
            spec.schedule.timezone if spec.schedule else "UTC",
            spec.enabled,
        )
    job.tenant_id = agent.tenant_id
    job.agent_id = agent.id
    job.name = spec.name
    job.engine = spec.engine.value
    job.source_path = spec.source_path
    job.source_paths = list(spec.source_paths)
    job.exclude = list(spec.exclude)
    job.disk_source_volume = spec.disk_source_volume
    job.disk_image_format = spec.disk_image_format.value if spec.disk_image_format else None
    job.disk_temp_dir = spec.disk_temp_dir
    job.hyperv_config = spec.hyperv_config.model_dump(mode="json") if spec.hyperv_config else None
    if stored is not None:
        copy_destination(box, job, stored, secrets)
    else:
        job.destination = destination
        job.destination_secrets = box.seal(secrets, secrets_aad(agent.tenant_id))
        job.destination_id = None
    job.storage_mode = storage_mode(spec, job, served)
    job.schedule_cron = spec.schedule.cron if spec.schedule else None
    job.schedule_timezone = spec.schedule.timezone if spec.schedule else "UTC"
    job.retention = spec.retention.model_dump(mode="json", exclude_none=True)
    job.policy = spec.policy.model_dump(mode="json", exclude_none=True)
    job.enabled = spec.enabled
    job.updated_at = now
    if schedule_changed:
        job.next_run_at = (
            next_fire(job.schedule_cron, job.schedule_timezone, now)
            if job.schedule_cron and job.enabled
            else None
        )
    session.flush()
    if spec.hyperv_config is not None:
        _sync_hyperv_vms(session, job, spec.hyperv_config)
    return job


def _sync_hyperv_vms(session: Session, job: Job, config: HyperVConfig) -> None:
    known = set(session.scalars(select(HyperVVM.vm_name).where(HyperVVM.job_id == job.id)))
    for name in config.vms:
        if name not in known:
            session.add(HyperVVM(job_id=job.id, vm_name=name, last_rct_ids={}))
    session.flush()


def spec_of(job: Job) -> dict[str, Any]:
    """The job as a JobCreate-shaped dict (destination secrets left out)."""
    schedule = {"cron": job.schedule_cron, "timezone": job.schedule_timezone} if job.schedule_cron else None
    return {
        "name": job.name,
        "engine": job.engine,
        "agent_id": job.agent_id,
        "source_path": "" if job.engine == Engine.DISK_IMAGE.value else job.source_path,
        "source_paths": job.source_paths,
        "exclude": job.exclude,
        "disk_source_volume": job.disk_source_volume,
        "disk_image_format": job.disk_image_format,
        "disk_temp_dir": job.disk_temp_dir,
        "hyperv_config": job.hyperv_config,
        "destination": None if job.destination_id is not None else dict(job.destination),
        "destination_id": job.destination_id,
        "storage_mode": job.storage_mode,
        "schedule": schedule,
        "retention": job.retention,
        "policy": job.policy,
        "enabled": job.enabled,
    }


def merged_spec(job: Job, patch: JobUpdate) -> JobCreate:
    spec = spec_of(job)
    changes = patch.model_dump(mode="json", exclude_unset=True)
    if "engine" in changes and changes["engine"] != job.engine:
        # fields of the old engine do not carry over to a new one
        for name in ("disk_source_volume", "disk_image_format", "disk_temp_dir", "hyperv_config"):
            spec[name] = None
    if changes.get("destination") is not None:
        spec["destination_id"] = None
    if changes.get("destination_id") is not None:
        spec["destination"] = None
    spec.update(changes)
    return JobCreate.model_validate(spec)


def destination_public(job: Job) -> DestinationPublic:
    dest = job.destination
    names = SECRETS_BY_TYPE.get(dest.get("type", ""), ())
    return DestinationPublic(
        type=dest.get("type", ""),
        endpoint=dest.get("endpoint"),
        bucket=dest.get("bucket"),
        prefix=dest.get("prefix"),
        region=dest.get("region"),
        access_key_id=dest.get("access_key_id"),
        path=dest.get("path"),
        has_secret_key="secret_access_key" in names and bool(job.destination_secrets),
        has_repository_password=bool(job.destination_secrets),
    )


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id,
        tenant_id=job.tenant_id,
        agent_id=job.agent_id,
        name=job.name,
        engine=Engine(job.engine),
        source_path=job.source_path,
        source_paths=job.source_paths,
        exclude=job.exclude,
        disk_source_volume=job.disk_source_volume,
        disk_image_format=DiskImageFormat(job.disk_image_format) if job.disk_image_format else None,
        disk_temp_dir=job.disk_temp_dir,
        hyperv_config=HyperVConfig.model_validate(job.hyperv_config) if job.hyperv_config else None,
        destination=destination_public(job),
        destination_id=job.destination_id,
        storage_mode="gateway" if job.storage_mode == "gateway" else "direct",
        schedule=Schedule(cron=job.schedule_cron, timezone=job.schedule_timezone)
        if job.schedule_cron
        else None,
        retention=Retention.model_validate(job.retention),
        policy=Policy.model_validate(job.policy),
        enabled=job.enabled,
        next_run_at=job.next_run_at,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def destination_with_secrets(box: SecretBox, job: Job) -> dict[str, Any]:
    """The destination as the agent needs it. Only for ``next_run``/recovery ``get_run``."""
    secrets = box.open(job.destination_secrets, secrets_aad(job.tenant_id))
    return {**job.destination, **{k: v for k, v in secrets.items() if k not in SHARE_SECRETS}}


__all__ = [
    "GatewayServed",
    "agent_runs",
    "copy_destination",
    "destination_public",
    "destination_with_secrets",
    "job_public",
    "merged_spec",
    "save_job",
    "spec_of",
    "split_secrets",
    "storage_destination_aad",
    "validate_schedule",
]
