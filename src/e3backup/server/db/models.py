"""Tables of the server (SQLAlchemy 2.0). Secrets are stored sealed, tokens as SHA-256 hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from e3backup.server.db.types import UTCDateTime
from e3backup.server.security.roles import Permission, allows


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Tenant(Base):
    """One of the MSP's customers."""

    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    enrollment_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrollment_token_expires_at: Mapped[datetime | None]
    enrollment_token_uses_left: Mapped[int | None]  # None: any number of agents
    created_at: Mapped[datetime]
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)  # stored bytes over all its repositories
    # self-update: the agent version this tenant's agents should run (None: no updates offered)
    agent_version_wanted: Mapped[str | None] = mapped_column(String(64))

    @property
    def has_enrollment_token(self) -> bool:
        return self.enrollment_token_hash is not None


class User(Base):
    """MSP staff (role ``msp_admin``, no tenant) or a tenant's user (``admin``, ``operator``,
    ``read_only``; sees only its tenant). See ``security.roles``."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # second factor: the sealed TOTP secret; enabled once a code from it was checked
    totp_secret_sealed: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def is_admin(self) -> bool:
        """MSP staff: every tenant."""
        return self.role == "msp_admin"

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)


class UserSession(Base):
    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    user: Mapped[User] = relationship(lazy="joined")


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    os: Mapped[str] = mapped_column(String(64))
    os_version: Mapped[str] = mapped_column(String(255), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    disks: Mapped[dict[str, Any] | None]
    disks_reported_at: Mapped[datetime | None]
    # what the agent reports it can run (None: an agent that never said; nothing is filtered)
    engines: Mapped[list[Any] | None]
    platform: Mapped[str] = mapped_column(String(32), default="")
    display_name: Mapped[str | None] = mapped_column(String(255))  # the console's name; hostname stays
    paused: Mapped[bool] = mapped_column(Boolean, default=False)  # no new backup runs
    deleted_at: Mapped[datetime | None]  # revoked and hidden; its runs keep their history
    # SHA-256 of the agent's repository-gateway token (derived from its agent token; see gateway.tokens)
    gateway_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    update_event: Mapped[dict[str, Any] | None]  # the last self-update attempt's outcome (api.agent.UpdateEvent)

    @property
    def name(self) -> str:
        return self.display_name or self.hostname


class AgentRelease(Base):
    """A signed single-file agent the server offers (file: ``DATA_DIR/agent-releases/<sha256>``)."""

    __tablename__ = "agent_releases"
    __table_args__ = (UniqueConstraint("version", "build_platform"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    build_platform: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    engine: Mapped[str] = mapped_column(String(32))
    source_path: Mapped[str] = mapped_column(Text, default="")
    source_paths: Mapped[list[Any]] = mapped_column(default=list)
    exclude: Mapped[list[Any]] = mapped_column(default=list)
    disk_source_volume: Mapped[str | None] = mapped_column(String(1024))
    disk_image_format: Mapped[str | None] = mapped_column(String(16))
    disk_temp_dir: Mapped[str | None] = mapped_column(String(4096))
    hyperv_config: Mapped[dict[str, Any] | None]
    destination: Mapped[dict[str, Any]] = mapped_column(comment="destination without secrets")
    destination_secrets: Mapped[str] = mapped_column(Text, comment="SecretBox-sealed secrets")
    # a storage destination defined once (its settings and secrets are copied into the two
    # columns above and rewritten when it changes); None: the destination was given inline
    destination_id: Mapped[int | None] = mapped_column(
        ForeignKey("storage_destinations.id", ondelete="RESTRICT"), index=True
    )
    schedule_cron: Mapped[str | None] = mapped_column(String(200))
    schedule_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    retention: Mapped[dict[str, Any]] = mapped_column(default=dict)
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # deleted jobs stay as rows (hidden): their runs keep the destination, so snapshots restore
    deleted_at: Mapped[datetime | None]
    # "direct": the agent gets the storage credentials; "gateway": it writes append-only through
    # the repository gateway and never sees them (e3backup.gateway)
    storage_mode: Mapped[str] = mapped_column(String(16), default="direct")


class HyperVVM(Base):
    """Per-VM chain state of a hyperv job: last checkpoint and RCT IDs (for incrementals)."""

    __tablename__ = "hyperv_vms"
    __table_args__ = (UniqueConstraint("job_id", "vm_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    vm_name: Mapped[str] = mapped_column(String(256))
    vm_guid: Mapped[str] = mapped_column(String(64), default="")
    last_checkpoint_id: Mapped[str] = mapped_column(String(256), default="")
    last_rct_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_backup_type: Mapped[str | None] = mapped_column(String(16))
    last_backup_at: Mapped[datetime | None]


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_agent_status", "agent_id", "status"),
        # each job's last run, last success and recent failures (overview, jobs list, alerts) read
        # this index alone, not every run's row
        Index("ix_runs_job_outcome", "job_id", "kind", "status", "finished_at"),
        # a job's fire time makes one run, whichever replica's scheduler (or two at once) got there
        Index("uq_runs_job_scheduled_for", "job_id", "scheduled_for", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), default="backup")
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    scheduled_for: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    progress_pct: Mapped[float | None] = mapped_column(Float)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    bytes_processed: Mapped[int | None] = mapped_column(BigInteger)
    bytes_uploaded: Mapped[int | None] = mapped_column(BigInteger)
    files_total: Mapped[int | None] = mapped_column(BigInteger)
    files_processed: Mapped[int | None] = mapped_column(BigInteger)
    speed_bytes_per_sec: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[int | None]
    snapshot_id: Mapped[str | None] = mapped_column(String(128))
    backup_type: Mapped[str | None] = mapped_column(String(16))
    disk_manifests_json: Mapped[dict[str, Any] | None]
    hyperv_results: Mapped[list[Any] | None]
    sync_result: Mapped[dict[str, Any] | None] = mapped_column(comment="what a sync run did (api.SyncRunResult)")
    error_summary: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[dict[str, Any] | None] = mapped_column(comment="the engine's counters (new, changed...)")
    # set when retention forgot the run's snapshot: no restore is offered from it any more
    snapshot_removed_at: Mapped[datetime | None]

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None or self.started_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
    restore: Mapped[dict[str, Any] | None] = mapped_column(comment="restore options for restore runs")


class RunEvent(Base):
    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int | None]
    ts: Mapped[datetime]
    received_at: Mapped[datetime]
    code: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_agent_status", "agent_id", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class RecoverySession(Base):
    """A token for the recovery console, scoped to one restore run; expiry slides on activity."""

    __tablename__ = "recovery_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class RepositoryMaintenance(Base):
    """The prune/check schedule of one repository (a destination, whichever jobs share it)."""

    __tablename__ = "repository_maintenance"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    repo_key: Mapped[str] = mapped_column(String(64), unique=True)
    where: Mapped[str] = mapped_column(Text, default="")  # the destination in words (no secret)
    next_prune_at: Mapped[datetime]
    next_check_at: Mapped[datetime]
    last_prune_at: Mapped[datetime | None]
    last_check_at: Mapped[datetime | None]
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    last_status: Mapped[str | None] = mapped_column(String(16))
    # stored bytes read from the repository's index (``services.quotas``), measured again after
    # each successful backup into it
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger)
    measured_at: Mapped[datetime | None]
    measure_error: Mapped[str | None] = mapped_column(Text)
    measure_needed: Mapped[bool] = mapped_column(Boolean, default=True)


class StorageDestination(Base):
    """A tenant's storage defined once (an S3 bucket and prefix, or a folder on the agent
    machine) with the repository password, used by any number of its jobs. ``settings`` holds
    no secret; ``secrets_sealed`` holds the S3 secret key and the repository password."""

    __tablename__ = "storage_destinations"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_storage_destinations_tenant_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))  # s3 | local
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secrets_sealed: Mapped[str] = mapped_column(Text)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quota_warn_percent: Mapped[int] = mapped_column(default=80)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AlertChannel(Base):
    """Where a tenant's alerts go (``tenant_id`` None: the MSP's own, for every tenant): an email
    address or a webhook URL (signed with its sealed secret), which rules, and the summary."""

    __tablename__ = "alert_channels"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # email | webhook
    target: Mapped[str] = mapped_column(String(2048))
    secret_sealed: Mapped[str | None] = mapped_column(Text)
    rules: Mapped[list[Any]] = mapped_column(default=list)
    summary: Mapped[str] = mapped_column(String(16), default="none")  # none | daily | weekly
    next_summary_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class AlertIncident(Base):
    """One incident: a rule true for a subject (``job:5``, ``agent:3``) from ``opened_at`` until
    ``cleared_at``. Alerts go out once when it opens and once when it clears."""

    __tablename__ = "alert_incidents"
    __table_args__ = (Index("ix_alert_incidents_open", "rule", "subject", "cleared_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]


class AlertDelivery(Base):
    """One message to one channel, sent by the alert worker, retried with back-off."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("alert_channels.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("alert_incidents.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))  # opened | cleared | summary
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what, when (sign-ins, job changes, restores, recoveries). Rows are only added;
    ``actor`` keeps the email so the trail survives the user's deletion."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_ts", "tenant_id", "ts"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[int | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RecoveryCode(Base):
    """A one-time code for the recovery console: one agent's image snapshot, redeemed once for a
    restore run and its session. Stored as a hash; ``used_at`` is set by the single redeem."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    source_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    snapshot_id: Mapped[str] = mapped_column(String(128))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)


class RateLimitAttempt(Base):
    """One sign-in or enrollment attempt counted against ``key``: in flight until it ends, then
    kept as a failure (``failed_at``) for the window, or deleted. In the database so that every
    replica counts against the same budget (PostgreSQL; SQLite's one process counts in memory)."""

    __tablename__ = "rate_limit_attempts"
    __table_args__ = (Index("ix_rate_limit_attempts_key", "key", "failed_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    started_at: Mapped[datetime]
    failed_at: Mapped[datetime | None]


class GatewayLock(Base):
    """A lock file an agent created through the gateway: an agent may delete only its own."""

    __tablename__ = "gateway_locks"
    __table_args__ = (UniqueConstraint("job_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]


class GatewayReadToken(Base):
    """A read-only gateway token the server issues itself for one dashboard request (a browse, a
    download) on a gateway-mode job: issued when the request opens the repository, deleted when
    it closes it; ``expires_at`` only bounds a row a crashed process left behind."""

    __tablename__ = "gateway_read_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


__all__ = [
    "Agent",
    "AlertChannel",
    "AlertDelivery",
    "AlertIncident",
    "AuditEvent",
    "Base",
    "Command",
    "GatewayLock",
    "GatewayReadToken",
    "HyperVVM",
    "Job",
    "RateLimitAttempt",
    "RecoveryCode",
    "RecoverySession",
    "RepositoryMaintenance",
    "Run",
    "RunEvent",
    "StorageDestination",
    "Tenant",
    "User",
    "UserSession",
]


class Proof(Base):
    """A proof of restore of one backup run's snapshot, as the agent reported it (``docs/proof.md``).
    The screenshot (PNG) is stored in the row: every replica serves it, nothing on a server's disk."""

    __tablename__ = "proofs"
    __table_args__ = (Index("ix_proofs_job_finished", "job_id", "finished_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    snapshot_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # boot | fsck | files
    verdict: Mapped[str] = mapped_column(String(16))  # passed | failed
    reason: Mapped[str] = mapped_column(Text, default="")
    checks: Mapped[list[Any]] = mapped_column(default=list)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    received_at: Mapped[datetime]
    screenshot: Mapped[bytes | None] = mapped_column(LargeBinary)
