"""Requests and responses of the agent API (``/api/agent/...``).

Every call but ``enroll`` carries ``Authorization: Bearer <agent token>``; the server scopes it
to that agent (a run, command or report of another agent is answered 404).

    enroll          POST /api/agent/enroll          EnrollRequest -> EnrollResponse
    next_run        POST /api/agent/next_run        NextRunRequest -> NextRunResponse
    update_run      POST /api/agent/update_run      UpdateRunRequest -> UpdateRunResponse
    push_events     POST /api/agent/push_events     PushEventsRequest -> PushEventsResponse
    commands        POST /api/agent/poll_commands   -> PollCommandsResponse
    ack command     POST /api/agent/ack_command     CommandAck -> CommandView
    disks report    POST /api/agent/report_disks    DiskReport -> DiskReportResponse
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field

from e3backup.api.common import (
    BackupType,
    CommandResult,
    CommandStatus,
    CommandType,
    DiskImageFormat,
    EngineField,
    EventDetails,
    EventLevel,
    Id,
    Int32,
    Int64,
    RunKind,
    RunStatus,
    ShortText,
)
from e3backup.api.jobs import (
    HyperVConfig,
    HyperVVMResult,
    HyperVVMRun,
    Policy,
    Retention,
    RunDestination,
    ShareCredentials,
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- enrollment ------------------------------------------------------------------------------


Engines = Annotated[list[EngineField], Field(max_length=16)]
Platform = Annotated[str, Field(max_length=32, description="sys.platform of the agent, e.g. linux, win32")]


class EnrollRequest(_Request):
    enrollment_token: Annotated[str, Field(min_length=1, max_length=512)]
    hostname: Annotated[str, Field(min_length=1, max_length=255)]
    os: Annotated[str, Field(min_length=1, max_length=64)] = Field(..., description="e.g. windows, linux")
    os_version: Annotated[str, Field(max_length=255)] = ""
    agent_version: Annotated[str, Field(max_length=64)] = ""
    engines: Engines | None = Field(
        None, description="The engines this agent can back up with (its dispatch table on its platform)."
    )
    platform: Platform | None = None


class EnrollResponse(BaseModel):
    agent_id: Id
    tenant_id: Id
    agent_token: str = Field(..., description="Shown once; the server keeps only its hash.")


# --- next_run --------------------------------------------------------------------------------


class UpdateEvent(_Request):
    """What the agent's last self-update attempt came to (sent with the next poll)."""

    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9_]+$")] = Field(
        ..., description="AGENT_UPDATED, AGENT_UPDATE_REFUSED or AGENT_UPDATE_ROLLED_BACK"
    )
    version: Annotated[str, Field(max_length=64)] = Field("", description="The version offered.")
    message: Annotated[str, Field(max_length=2000)] = ""
    at: AwareDatetime | None = None


class NextRunRequest(_Request):
    """Also the agent's heartbeat: the server records ``last_seen`` and the versions given."""

    agent_version: Annotated[str, Field(max_length=64)] | None = None
    os_version: Annotated[str, Field(max_length=255)] | None = None
    engines: Engines | None = Field(None, description="As in enrollment; the server keeps the latest.")
    platform: Platform | None = None
    build_platform: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="What a release is built for, e.g. linux-x86_64 (self-update picks the file by it)."
    )
    self_update: bool = Field(False, description="This agent can update itself (a single-file agent with a key).")
    update_event: UpdateEvent | None = None


class RunAssignment(BaseModel):
    """A run for the agent, with everything its engine needs, secrets included."""

    run_id: Id
    job_id: Id
    job_name: str
    kind: RunKind = RunKind.BACKUP
    engine: EngineField
    source_path: str = ""
    source_paths: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    destination: RunDestination
    policy: Policy = Field(default_factory=lambda: Policy.model_validate({}))
    retention: Retention = Field(default_factory=Retention)
    disk_source_volume: str | None = None
    disk_image_format: DiskImageFormat | None = None
    disk_temp_dir: str | None = None
    hyperv_config: HyperVConfig | None = None
    hyperv_vms: list[HyperVVMRun] = Field(default_factory=list)
    parent_snapshot_id: str | None = Field(None, description="Snapshot of the last good run of the job.")
    share_credentials: ShareCredentials | None = Field(
        None, description="Windows: connect the job's UNC shares as this user for the run."
    )
    restore: dict[str, Any] | None = Field(
        None, description="For restore runs: the restore command's options."
    )


class AgentUpdateOffer(BaseModel):
    """The version the agent's tenant wants, for its build platform: download, check, swap."""

    version: str
    build_platform: str
    sha256: str = Field(..., description="Hex SHA-256 of the file.")
    size: int
    signature: str = Field(..., description="Base64 Ed25519 signature of release_message(version, platform, sha256).")
    url: str = Field(..., description="Path of the download (agent token).")


class NextRunResponse(BaseModel):
    run: RunAssignment | None = None
    update: AgentUpdateOffer | None = None


# --- update_run ------------------------------------------------------------------------------


class SyncRunResult(BaseModel):
    """What a ``sync`` run did (it has no snapshot): the counters of its summary."""

    model_config = ConfigDict(extra="ignore")

    destination: Annotated[str, Field(max_length=2048)] = ""
    dry_run: bool = False
    files_new: Int64 = 0
    files_changed: Int64 = 0
    files_transferred: Int64 = 0
    files_unchanged: Int64 = 0
    files_deleted: Int64 = 0
    files_kept: Int64 = 0
    deletes_refused: Int64 = 0
    files_skipped: Int64 = 0
    bytes_transferred: Int64 = 0
    source_files: Int64 = 0
    source_bytes: Int64 = 0
    error_count: Int64 = 0
    errors: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=100)


class UpdateRunRequest(_Request):
    """Progress or the outcome of a run. Every field but ``run_id`` is optional: send what changed.

    ``snapshot_id`` also accepts the seeds' name ``manifest_id``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    run_id: Id
    status: RunStatus | None = None
    progress_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    bytes_total: Int64 | None = None
    bytes_processed: Int64 | None = None
    bytes_uploaded: Int64 | None = None
    files_total: Int64 | None = None
    files_processed: Int64 | None = None
    speed_bytes_per_sec: Annotated[float, Field(ge=0)] | None = None
    eta_seconds: Int32 | None = None
    snapshot_id: Annotated[str, Field(max_length=128)] | None = Field(
        None, validation_alias=AliasChoices("snapshot_id", "manifest_id")
    )
    backup_type: BackupType | None = None
    disk_manifests_json: (
        Annotated[dict[ShortText, Annotated[str, Field(max_length=128)]], Field(max_length=256)] | None
    ) = Field(None, description="disk/volume -> snapshot (manifest) ID, for multi-disk images")
    hyperv_results: Annotated[list[HyperVVMResult], Field(max_length=1024)] | None = None
    sync_result: SyncRunResult | None = None
    error_summary: Annotated[str, Field(max_length=4000)] | None = None
    summary: Annotated[dict[ShortText, float], Field(max_length=64)] | None = Field(
        None, description="The engine's counters: files new/changed/unmodified, bytes read/added/stored..."
    )
    snapshots_removed: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=100_000)] | None = (
        Field(None, description="Snapshots the job's retention forgot after this backup.")
    )


class RunStatusView(BaseModel):
    """A run's state as the server holds it (also ``get_run_status`` of recovery sessions).

    The server reads it from its run row (``from_attributes``: ``run_id`` is the row's ``id``).
    """

    model_config = ConfigDict(from_attributes=True)

    run_id: int = Field(validation_alias=AliasChoices("run_id", "id"))
    job_id: int | None
    kind: RunKind
    status: RunStatus
    progress_pct: float | None = None
    bytes_total: int | None = None
    bytes_processed: int | None = None
    bytes_uploaded: int | None = None
    speed_bytes_per_sec: float | None = None
    eta_seconds: int | None = None
    snapshot_id: str | None = None
    backup_type: BackupType | None = None
    error_summary: str | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


class UpdateRunResponse(BaseModel):
    run: RunStatusView
    cancel_requested: bool = Field(False, description="The user asked to cancel: stop and report cancelled.")


# --- push_events -----------------------------------------------------------------------------


class AgentEvent(_Request):
    """One event. ``seq`` is the agent's sequence number within the run: a resent event with a
    ``seq`` the server already has is ignored, so batches can be retried safely."""

    seq: Id
    ts: AwareDatetime | None = Field(None, description="When it happened on the agent (with its zone).")
    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9_]+$")]
    level: EventLevel | None = Field(None, description="Defaults to the code's level.")
    message: Annotated[str, Field(max_length=8000)] = ""
    details: EventDetails = Field(default_factory=dict)


class PushEventsRequest(_Request):
    run_id: Id
    events: list[AgentEvent] = Field(..., max_length=1000)


class PushEventsResponse(BaseModel):
    accepted: int = Field(..., description="Events stored by this call.")
    duplicates: int = Field(..., description="Events ignored because their seq was already stored.")
    last_seq: int | None = Field(None, description="Highest seq the server holds for this run.")
    dropped: int = Field(0, description="Events not stored: the run reached the server's cap.")


# --- commands --------------------------------------------------------------------------------


class CommandView(BaseModel):
    """A command as the agent sees it; the server reads it from its row (``command_id`` is ``id``)."""

    model_config = ConfigDict(from_attributes=True)

    command_id: int = Field(validation_alias=AliasChoices("command_id", "id"))
    type: CommandType
    status: CommandStatus
    run_id: int | None = None
    job_id: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    acknowledged_at: datetime | None = None
    completed_at: datetime | None = None


class PollCommandsResponse(BaseModel):
    """Pending commands, oldest first. A restore command's run is then fetched and reported on
    with ``update_run``/``push_events`` like a backup run (its ``run_id`` is in the command)."""

    commands: list[CommandView]


class CommandAck(_Request):
    """``acknowledged`` when the agent takes a command, then ``completed`` or ``failed``.

    For ``list_disks`` the ``result`` is a :class:`DiskReport` (also stored as the agent's disks).
    """

    command_id: Id
    status: CommandStatus
    result: CommandResult | None = None
    error: Annotated[str, Field(max_length=4000)] | None = None


# --- disks and volumes -----------------------------------------------------------------------


class Volume(BaseModel):
    path: Annotated[str, Field(min_length=1, max_length=1024)] = Field(..., description="C: or /dev/sda1")
    label: Annotated[str, Field(max_length=256)] = ""
    filesystem: Annotated[str, Field(max_length=64)] = ""
    mount_point: ShortText = ""
    size_bytes: Int64 = 0
    free_bytes: Int64 | None = None


class Disk(BaseModel):
    path: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        ..., description=r"\\.\PhysicalDrive0 or /dev/sda"
    )
    model: Annotated[str, Field(max_length=256)] = ""
    size_bytes: Int64 = 0
    partition_style: Annotated[str, Field(max_length=16)] = Field("", description="gpt, mbr or raw")
    volumes: list[Volume] = Field(default_factory=list, max_length=256)


class HyperVDiskInfo(BaseModel):
    identifier: Annotated[str, Field(max_length=256)]
    path: Annotated[str, Field(max_length=4096)]
    size: Int64 = 0
    file_size: Int64 = 0
    controller: Annotated[str, Field(max_length=64)] = ""


class HyperVVmInfo(BaseModel):
    """One VM of the agent's Hyper-V host (discovery: the job wizard picks VMs from these)."""

    id: Annotated[str, Field(max_length=64)]
    name: Annotated[str, Field(max_length=256)]
    state: Annotated[str, Field(max_length=32)] = ""
    generation: Annotated[int, Field(ge=0, le=2, description="1 or 2; 0: not known")] = 0
    version: Annotated[str, Field(max_length=16)] = ""
    rct_supported: bool = False
    change_tracking: bool = False
    guest_os: Annotated[str, Field(max_length=32)] = ""
    integration_services: dict[Annotated[str, Field(max_length=128)], bool] = Field(default_factory=dict)
    disks: list[HyperVDiskInfo] = Field(default_factory=list, max_length=256)


class DiskReport(BaseModel):
    disks: list[Disk] = Field(default_factory=list, max_length=256)
    hyperv_vms: list[HyperVVmInfo] | None = Field(
        default=None, max_length=4096, description="The Hyper-V host's VMs; null: this agent has no Hyper-V host."
    )
    hyperv_error: Annotated[str, Field(max_length=4000)] | None = Field(
        default=None, description="Why the VMs could not be listed (after retries)."
    )
    volumes: list[Volume] = Field(
        default_factory=list, max_length=1024, description="Volumes not on a listed disk too."
    )
    restore_roots: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=256,
        description="Folders this agent restores into (its restore_roots): the dashboard offers these.",
    )
    allowed_devices: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=256,
        description="Devices an image may be restored onto (its allowed_devices).",
    )


class DiskReportResponse(BaseModel):
    reported_at: datetime


def release_message(version: str, build_platform: str, sha256_hex: str) -> bytes:
    """What a release's Ed25519 signature signs: the file's digest bound to its version and
    platform, so an old signed file cannot be offered as a newer version or another platform."""
    return b"\0".join([b"e3backup-agent-release-v1", version.encode(), build_platform.encode(), sha256_hex.encode()])


__all__ = [
    "AgentEvent",
    "AgentUpdateOffer",
    "CommandAck",
    "CommandView",
    "Disk",
    "DiskReport",
    "DiskReportResponse",
    "EnrollRequest",
    "EnrollResponse",
    "HyperVDiskInfo",
    "HyperVVmInfo",
    "NextRunRequest",
    "NextRunResponse",
    "PollCommandsResponse",
    "PushEventsRequest",
    "PushEventsResponse",
    "RunAssignment",
    "RunStatusView",
    "SyncRunResult",
    "UpdateEvent",
    "UpdateRunRequest",
    "UpdateRunResponse",
    "Volume",
    "release_message",
]
