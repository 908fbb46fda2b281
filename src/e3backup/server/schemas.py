"""Pydantic models of the user API, named by use (``XCreate``, ``XUpdate``, ``XPublic``).

Agent-facing models live in :mod:`e3backup.api`. Nothing here ever carries a destination secret
back out: ``DestinationPublic`` says only whether each secret is set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from e3backup.api.common import (
    BackupType,
    CommandPayload,
    CommandStatus,
    CommandType,
    DiskImageFormat,
    Engine,
    EngineField,
    Id,
    RunKind,
    RunStatus,
)
from e3backup.api.jobs import HyperVConfig, Policy, Retention, ShareCredentials
from e3backup.server.security.roles import Role

Name = Annotated[str, Field(min_length=1, max_length=200)]
PathText = Annotated[str, Field(min_length=1, max_length=4096)]
# the agent refuses more (agent/validate.py): the server stops them at the door
SourcePaths = Annotated[list[PathText], Field(max_length=1000)]
Excludes = Annotated[list[PathText], Field(max_length=10_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth, tenants, users --------------------------------------------------------------------


class LoginRequest(_In):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    totp_code: Annotated[str, Field(max_length=16)] | None = Field(
        None, description="The 6-digit code of the user's authenticator app, when two-factor is on."
    )


class TotpSetup(BaseModel):
    secret: str
    otpauth_uri: str


class TotpCode(_In):
    code: Annotated[str, Field(min_length=6, max_length=16)]


class _Out(BaseModel):
    """A public view, read from the ORM row it shows (``Model.model_validate(row)``)."""

    model_config = ConfigDict(from_attributes=True)


class UserPublic(_Out):
    id: int
    email: str
    role: Role
    is_admin: bool = Field(..., description="MSP staff (role msp_admin): every tenant.")
    tenant_id: int | None
    disabled: bool
    created_at: datetime
    totp_enabled: bool = False


class LoginResponse(BaseModel):
    user: UserPublic
    csrf_token: str = Field(..., description="Send as X-CSRF-Token on unsafe requests.")
    expires_at: datetime


class TenantCreate(_In):
    name: Name


class TenantPublic(_Out):
    id: int
    name: str
    has_enrollment_token: bool = Field(..., description="A token that still works (not expired or used up).")
    enrollment_token_expires_at: datetime | None = None
    enrollment_token_uses_left: int | None = Field(None, description="None: any number of agents.")
    created_at: datetime


class AgentVersionSet(_In):
    version: Annotated[str, Field(max_length=64, pattern=r"^[0-9A-Za-z.+_-]*$")] | None = Field(
        ..., description="The agent version this tenant's agents should run (a stored release); null or empty: "
                         "none offered (no self-updates)."
    )


class AgentReleasePublic(_Out):
    id: int
    version: str
    build_platform: str
    size: int
    sha256: str
    created_at: datetime


class AgentVersionPublic(BaseModel):
    tenant_id: int
    wanted_version: str | None = Field(None, description="The version offered to its agents (null: none).")
    releases: list[AgentReleasePublic] = Field(default_factory=list, description="Stored releases to choose from.")


class EnrollmentTokenCreate(_In):
    expires_in_hours: Annotated[float, Field(gt=0, le=24 * 90)] = Field(
        7 * 24, description="The token stops working after this (default 7 days, at most 90)."
    )
    max_uses: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="How many agents may enroll with it (default: any number until it expires)."
    )


class EnrollmentTokenPublic(BaseModel):
    tenant_id: int
    enrollment_token: str = Field(..., description="Shown once; replaces the previous token.")
    expires_at: datetime
    uses_left: int | None


class UserCreate(_In):
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    password: Annotated[str, Field(min_length=10, max_length=1024)]
    is_admin: StrictBool = Field(False, description="MSP staff (the same as role msp_admin).")
    role: Role | None = Field(None, description="admin (default for tenant users), operator, read_only, msp_admin.")
    tenant_id: Id | None = Field(None, description="Required for tenant users, absent for MSP staff.")


class UserUpdate(_In):
    password: Annotated[str, Field(min_length=10, max_length=1024)] | None = None
    disabled: StrictBool | None = None
    role: Role | None = Field(None, description="A tenant user's role (admin, operator, read_only).")
    reset_totp: StrictBool | None = Field(None, description="Turn the user's second factor off (a lost phone).")


# --- agents ----------------------------------------------------------------------------------


class AgentPublic(_Out):
    id: int
    tenant_id: int
    hostname: str
    os: str
    os_version: str
    agent_version: str
    online: bool = Field(False, description="Seen within the server's offline threshold (not a column).")
    last_seen_at: datetime | None
    revoked: bool
    created_at: datetime
    disks_reported_at: datetime | None
    engines: list[str] | None = Field(None, description="Engines the agent reported it runs; null: never said.")
    platform: str = ""
    display_name: str | None = None
    paused: bool = False
    wanted_version: str = Field("", description="The agent version its tenant wants (the server's own unless set).")
    out_of_date: bool = Field(False, description="The agent reports a version older than the wanted one.")
    update_event: dict[str, Any] | None = Field(None, description="What the last self-update attempt came to.")


class AgentUpdate(_In):
    display_name: Annotated[str, Field(max_length=255)] | None = Field(
        None, description="The console's name for the machine (empty: its hostname again)."
    )
    paused: StrictBool | None = Field(None, description="Paused: no new backup runs (scheduled or run-now).")


class JobClone(_In):
    name: Name | None = None
    agent_ids: Annotated[list[Id], Field(max_length=1000)] | None = Field(
        None, description="A template: one copy of the job per agent (same tenant); none: one copy on its agent."
    )


class AgentDisks(BaseModel):
    agent_id: int
    reported_at: datetime | None
    disks: list[dict[str, Any]] = Field(default_factory=list)
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    restore_roots: list[str] = Field(default_factory=list, description="Folders the agent restores into.")
    allowed_devices: list[str] = Field(default_factory=list, description="Devices an image may be restored onto.")
    hyperv_vms: list[dict[str, Any]] | None = Field(
        default=None, description="The agent's Hyper-V VMs (null: no Hyper-V host there)."
    )
    hyperv_error: str | None = Field(default=None, description="Why the VMs could not be listed.")


class DiskRefreshPending(BaseModel):
    """The agent did not answer in time: retry with ``command_id`` to keep waiting for it."""

    detail: str
    command_id: int
    retry: bool = True


# --- jobs ------------------------------------------------------------------------------------


class S3DestinationIn(_In):
    """S3 destination as a user gives it; secrets may be omitted on update to keep them."""

    type: Literal["s3"]
    endpoint: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^https?://\S+$")]
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")]
    prefix: Annotated[str, Field(max_length=1024)] = ""
    region: Annotated[str, Field(max_length=64)] = ""
    access_key_id: Annotated[str, Field(min_length=1, max_length=256)]
    secret_access_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    repository_password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None


class LocalDestinationIn(_In):
    type: Literal["local"]
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    repository_password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None


DestinationIn = Annotated[S3DestinationIn | LocalDestinationIn, Field(discriminator="type")]
StorageMode = Literal["direct", "gateway"]


class DestinationPublic(BaseModel):
    type: str
    endpoint: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    path: str | None = None
    has_secret_key: bool
    has_repository_password: bool


QuotaBytes = Annotated[int, Field(ge=1, le=1 << 62)]


class StorageDestinationCreate(_In):
    """A tenant's storage defined once; jobs name it by ``destination_id``. The S3 secret and the
    repository password are required here and never returned."""

    name: Name
    destination: DestinationIn
    quota_bytes: QuotaBytes | None = Field(None, description="Stored bytes (after dedup) at which new backups stop.")
    quota_warn_percent: Annotated[int, Field(ge=1, le=100)] = 80
    tenant_id: Id | None = Field(None, description="MSP staff: the tenant it belongs to.")


class StorageDestinationUpdate(_In):
    """Fields to change; secrets left out are kept. Every job using it gets the change."""

    name: Name | None = None
    destination: DestinationIn | None = None
    quota_bytes: QuotaBytes | None = None
    clear_quota: StrictBool = False
    quota_warn_percent: Annotated[int, Field(ge=1, le=100)] | None = None


class StorageDestinationPublic(BaseModel):
    id: int
    tenant_id: int
    name: str
    destination: DestinationPublic
    quota_bytes: int | None
    quota_warn_percent: int
    stored_bytes: int | None = Field(None, description="Measured from its repositories' indexes (None: not yet).")
    jobs: list[int] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class TenantQuota(_In):
    quota_bytes: QuotaBytes | None = Field(None, description="Stored bytes over all its repositories; None: no quota.")


class TenantQuotaPublic(BaseModel):
    tenant_id: int
    quota_bytes: int | None
    stored_bytes: int | None


class ConnectionVerdict(BaseModel):
    """'Test connection': the storage probe's verdict, then the credentials and the repository."""

    ok: bool | None = Field(..., description="None: not tested (an agent folder the server cannot read, "
                            "that no agent has used yet)")
    code: str
    message: str
    steps: list[str]


class Schedule(_In):
    cron: Annotated[str, Field(min_length=1, max_length=200)] = Field(..., description="5-field cron")
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"


class JobCreate(_In):
    name: Name
    engine: EngineField
    agent_id: Id | None = None
    source_path: Annotated[str, Field(max_length=4096)] = ""
    source_paths: SourcePaths = Field(default_factory=list)
    exclude: Excludes = Field(default_factory=list)
    disk_source_volume: Annotated[str, Field(max_length=1024)] | None = None
    disk_image_format: DiskImageFormat | None = None
    disk_temp_dir: Annotated[str, Field(max_length=4096)] | None = None
    hyperv_config: HyperVConfig | None = None
    destination: DestinationIn | None = Field(None, description="Given inline, or ``destination_id``.")
    destination_id: Id | None = Field(None, description="A storage destination of the tenant, defined once.")
    storage_mode: StorageMode | None = Field(
        default=None, description="direct: the agent gets the storage credentials; gateway: it writes append-only "
        "through the repository gateway and never sees them. Default: gateway for S3, direct for a local folder.",
    )
    share_credentials: ShareCredentials | None = None
    schedule: Schedule | None = None
    retention: Retention = Field(default_factory=Retention)
    policy: Policy = Field(default_factory=lambda: Policy.model_validate({}))
    enabled: StrictBool = True


class JobUpdate(_In):
    """Fields to change; the result is validated by the same rules as a new job."""

    name: Name | None = None
    engine: EngineField | None = None
    agent_id: Id | None = None
    source_path: Annotated[str, Field(max_length=4096)] | None = None
    source_paths: SourcePaths | None = None
    exclude: Excludes | None = None
    disk_source_volume: Annotated[str, Field(max_length=1024)] | None = None
    disk_image_format: DiskImageFormat | None = None
    disk_temp_dir: Annotated[str, Field(max_length=4096)] | None = None
    hyperv_config: HyperVConfig | None = None
    destination: DestinationIn | None = None
    destination_id: Id | None = None
    storage_mode: StorageMode | None = Field(
        default=None, description="direct: the agent gets the storage credentials; gateway: it writes append-only "
        "through the repository gateway and never sees them. Unchanged when omitted.",
    )
    share_credentials: ShareCredentials | None = None
    schedule: Schedule | None = None
    retention: Retention | None = None
    policy: Policy | None = None
    enabled: StrictBool | None = None


class JobPublic(BaseModel):
    id: int
    tenant_id: int
    agent_id: int | None
    name: str
    engine: Engine
    source_path: str
    source_paths: list[str]
    exclude: list[str]
    disk_source_volume: str | None
    disk_image_format: DiskImageFormat | None
    disk_temp_dir: str | None
    hyperv_config: HyperVConfig | None
    destination: DestinationPublic
    destination_id: int | None = None
    storage_mode: StorageMode = "direct"
    schedule: Schedule | None
    retention: Retention
    policy: Policy
    enabled: bool
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


# --- runs, events, commands ------------------------------------------------------------------


class RunPublic(_Out):
    id: int
    tenant_id: int
    job_id: int | None
    agent_id: int | None
    kind: RunKind
    trigger: str
    status: RunStatus
    scheduled_for: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    progress_pct: float | None
    bytes_total: int | None
    bytes_processed: int | None
    bytes_uploaded: int | None
    files_total: int | None
    files_processed: int | None
    speed_bytes_per_sec: float | None
    eta_seconds: int | None
    snapshot_id: str | None
    backup_type: BackupType | None
    disk_manifests_json: dict[str, Any] | None
    hyperv_results: list[dict[str, Any]] | None
    sync_result: dict[str, Any] | None = None
    error_summary: str | None
    cancel_requested: bool
    summary: dict[str, Any] | None = None
    snapshot_removed_at: datetime | None = None


class CommandCreate(_In):
    """A command for an agent. ``restore`` and ``maintenance`` create a run the agent reports on."""

    type: Literal[CommandType.RESTORE, CommandType.MAINTENANCE, CommandType.HYPERV_RESTORE]
    job_id: Id = Field(..., description="The job whose repository the command works on.")
    payload: CommandPayload = Field(
        default_factory=dict,
        description="restore: snapshot_id, target_path or target_disk, paths; maintenance: mode",
    )


class CommandPublic(_Out):
    id: int
    agent_id: int
    type: CommandType
    status: CommandStatus
    run_id: int | None
    job_id: int | None
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    acknowledged_at: datetime | None
    completed_at: datetime | None


class RecoverySessionCreate(_In):
    job_id: Id
    snapshot_id: Annotated[str, Field(min_length=1, max_length=128)]
    target_disk: Annotated[str, Field(max_length=1024)] = ""


class RecoverySessionPublic(BaseModel):
    run_id: int
    session_token: str = Field(..., description="Shown once; enter it in the recovery console.")
    session_expires_at: datetime


class RecoveryCodeCreate(_In):
    agent_id: Id
    snapshot_id: Annotated[str, Field(min_length=1, max_length=128)]


class RecoveryCodePublic(BaseModel):
    code: str = Field(..., description="Shown once; typed into the recovery console. Single use.")
    expires_at: datetime = Field(..., description="When the code stops working if unused.")
    agent_id: int
    snapshot_id: str


class RecoveryRedeem(_In):
    code: Annotated[str, Field(min_length=1, max_length=64)]


class RecoveryRevoked(BaseModel):
    run_id: int
    sessions_ended: int
    run_status: RunStatus


# --- alerts ------------------------------------------------------------------------------------

AlertRule = Literal["run_failed", "run_warning", "rpo_missed", "agent_offline", "proof_failed", "storage_quota"]
ALL_RULES: list[AlertRule] = ["run_failed", "run_warning", "rpo_missed", "agent_offline", "proof_failed",
                              "storage_quota"]


class AlertChannelCreate(_In):
    kind: Literal["email", "webhook"]
    target: Annotated[str, Field(min_length=3, max_length=2048, description="An email address or an https URL.")]
    secret: Annotated[str, Field(min_length=16, max_length=256)] | None = Field(
        None, description="Webhooks: the HMAC-SHA256 signing secret (required; never shown again)."
    )
    rules: Annotated[list[AlertRule], Field(min_length=1, max_length=8)] = Field(
        default_factory=lambda: list(ALL_RULES)
    )
    summary: Literal["none", "daily", "weekly"] = "none"
    tenant_id: Id | None = Field(None, description="MSP staff: the tenant (none: every tenant).")


class AlertChannelPublic(_Out):
    id: int
    tenant_id: int | None
    kind: str
    target: str
    rules: list[str]
    summary: str
    next_summary_at: datetime | None
    enabled: bool
    created_at: datetime


class AlertIncidentPublic(_Out):
    id: int
    tenant_id: int
    rule: str
    subject: str
    title: str
    details: dict[str, Any]
    opened_at: datetime
    cleared_at: datetime | None


# --- audit log ---------------------------------------------------------------------------------


class AuditEventPublic(_Out):
    id: int
    ts: datetime
    tenant_id: int | None
    user_id: int | None
    actor: str
    action: str
    target_type: str | None
    target_id: int | None
    ip: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    total: int
    offset: int
    items: list[AuditEventPublic]


__all__ = [
    "ALL_RULES",
    "AgentDisks",
    "AgentPublic",
    "AgentUpdate",
    "AlertChannelCreate",
    "AlertChannelPublic",
    "AlertIncidentPublic",
    "AlertRule",
    "AuditEventPublic",
    "AuditPage",
    "CommandCreate",
    "CommandPublic",
    "ConnectionVerdict",
    "DestinationIn",
    "DestinationPublic",
    "DiskRefreshPending",
    "EnrollmentTokenCreate",
    "EnrollmentTokenPublic",
    "JobClone",
    "JobCreate",
    "JobPublic",
    "JobUpdate",
    "LocalDestinationIn",
    "LoginRequest",
    "LoginResponse",
    "RecoveryCodeCreate",
    "RecoveryCodePublic",
    "RecoveryRedeem",
    "RecoveryRevoked",
    "RecoverySessionCreate",
    "RecoverySessionPublic",
    "RunPublic",
    "S3DestinationIn",
    "Schedule",
    "StorageDestinationCreate",
    "StorageDestinationPublic",
    "StorageDestinationUpdate",
    "StorageMode",
    "TenantCreate",
    "TenantPublic",
    "TenantQuota",
    "TenantQuotaPublic",
    "TotpCode",
    "TotpSetup",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
]
