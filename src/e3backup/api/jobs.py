"""What a job carries to the agent: destination, policy flags, retention and Hyper-V settings.

These models are shared: the server validates user input with them and hands them to the agent
inside ``next_run``. Unknown keys are refused (``extra="forbid"``) so a misspelt flag is a clear
error naming the field instead of a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from e3backup.api.common import BackupType, ConsistencyLevel, Id, Int64, ShortText


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Policy(_Strict):
    """The seeds' policy JSON flags, validated by type and range.

    ``None`` means "agent default" (the defaults the seeds document are given per field).
    """

    disk_image_cbt: StrictBool = Field(
        True,
        validation_alias=AliasChoices("disk_image_cbt", "disk_image_change_tracking"),
        description="Use change tracking (CBT/USN, RCT) for incremental disk images. "
        "Alias: disk_image_change_tracking.",
    )
    disk_image_verify_every: Annotated[StrictInt, Field(ge=0, le=1000)] | None = Field(
        None,
        description="Every Nth disk-image incremental reads every used block and reports any change that "
        "change tracking missed (0: never; agent default 10).",
    )
    disk_image_bitmap: StrictBool = Field(
        True, description="Allow file-system-bitmap fulls (read only used blocks) without CBT."
    )
    disk_image_strict_read_errors: StrictBool | None = Field(
        None,
        description="Fail fast on disk read errors instead of zero-filling and warning. Unset: the agent's "
        "AGENT_DISK_IMAGE_STRICT_READ_ERRORS, else false.",
    )
    parallel_disk_reads: Annotated[StrictInt, Field(ge=1, le=64)] | None = Field(
        None, description="Parallel disk readers for this run (1-64, the engine's range too; default 2)."
    )
    disk_image_stall_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] | None = Field(
        None,
        description="A disk read that makes no progress this long (before the last ~1 %) gives "
        "DISK_IMAGE_STALLED (1-86400; default 300).",
    )
    disk_image_fail_on_stall: StrictBool = Field(
        False, description="A DISK_IMAGE_STALLED fails the run instead of waiting for the disk."
    )
    vss_consistency_level: ConsistencyLevel = Field(
        ConsistencyLevel.CRASH,
        description="Windows shadow copies (disk images and files): application asks the VSS writers (SQL "
        "Server, Exchange, Hyper-V, ...) to bring their data to a consistent state first (IVssBackupComponents; "
        "not yet run on a real Windows machine, docs/windows.md); crash takes the copy without them.",
    )
    vss_backup_type: Literal["copy", "full"] = Field(
        "copy", description="Application-consistent snapshots: copy (VSS_BT_COPY) leaves the applications' "
        "backup history and logs alone; full (VSS_BT_FULL) tells them a full backup was made, so e.g. SQL "
        "Server and Exchange may truncate their logs."
    )
    vss_writer_failure: Literal["warn", "fail"] = Field(
        "warn", description="A VSS writer that fails (named in VSS_WRITER_FAILED): warn keeps the snapshot "
        "(that writer's data is crash-consistent, the run a warning; a failed VSS sequence falls back to a "
        "crash-consistent copy); fail fails the run."
    )
    vss_exclude_writers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=64)
    ] = Field(
        default_factory=list, description="VSS writers left out of application-consistent snapshots, by name "
        "(as vssadmin list writers prints it) or writer id: they are not asked to freeze."
    )
    parallel_vms: Annotated[StrictInt, Field(ge=1, le=16)] | None = Field(
        None, description="Hyper-V: virtual machines backed up at the same time (1-16; default 2)."
    )
    max_memory_mb: Annotated[StrictInt, Field(ge=16, le=1_048_576)] | None = Field(
        None,
        description="Memory budget of this job's backups and restores in MiB (as the CLI's --max-memory): "
        "workers, queues, pack buffering and restore ranges are sized to stay under it; a budget too small "
        "for the run fails it at the start, saying what it needs. Unset: 256.",
    )
    restore_parallel_workers: Annotated[StrictInt, Field(ge=1, le=64)] | None = Field(
        None, description="Parallel disk-restore workers (1-64; agent default 8-16)."
    )
    restore_segment_size_mb: Annotated[StrictInt, Field(ge=1, le=1024)] | None = Field(
        None, description="Per-worker restore segment in MiB (1-1024; default 32)."
    )
    restore_kopia_parallel: Annotated[StrictInt, Field(ge=1, le=32)] | None = Field(
        None, description="Repository restore parallelism (1-32; default = workers)."
    )
    limit_upload: Annotated[StrictInt, Field(ge=1, le=10_000_000)] | None = Field(
        None, description="Upload bandwidth limit in KiB/s for this job's runs, every engine (as the CLI's "
        "--limit-upload); none: unlimited."
    )
    sync_delete: StrictBool = Field(
        True, description="Sync: delete from the destination what is gone from the source (off: keep it)."
    )
    sync_compare: Literal["mtime", "checksum"] = Field(
        "mtime", description="Sync: judge files by size and modification time, or by size and MD5 "
        "(reads every source file)."
    )
    sync_max_delete: Annotated[StrictInt, Field(ge=0, le=100)] = Field(
        50, description="Sync: delete nothing when more than this percentage of the destination's files "
        "would go (a vanished or emptied source); 100 turns the guard off."
    )
    sync_dry_run: StrictBool = Field(
        False, description="Sync: only report what would be copied and deleted; change nothing."
    )
    verify_boot: Literal["off", "daily", "weekly"] = Field(
        "off", description="Proof of restore after a backup, at most once a day or a week: an image snapshot is "
        "booted headless and screenshotted (a data disk's file systems are checked instead), a files "
        "snapshot has a random sample of files restored and hashed (docs/proof.md). Linux agents."
    )
    verify_boot_marker: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Boot proofs: the text on the guest's serial console that shows it is alive (default "
        "'login:'); without it, a screen that stops changing for 30 s counts."
    )
    rpo_hours: Annotated[StrictInt, Field(ge=1, le=8784)] | None = Field(
        None, description="Recovery point objective: the fleet view and alerts flag the job when its last "
        "successful backup is older than this many hours (default 24). Read by the server only."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ShareCredentials(_Strict):
    """Who a Windows agent connects a job's UNC shares (``\\\\server\\share``) as, for the run only.
    Stored sealed with the destination's secrets; an empty ``username`` removes them."""

    username: Annotated[str, Field(max_length=256)]
    password: Annotated[str, Field(max_length=1024)] = ""


class Retention(_Strict):
    """How many snapshots to keep, restic-style ``--keep-*``. All ``None``: keep everything."""

    keep_last: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    keep_hourly: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    keep_daily: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    keep_weekly: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    keep_monthly: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    keep_yearly: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None


class HyperVConfig(_Strict):
    """Which VMs a ``hyperv`` job backs up and how (the seeds' ``hyperv_config``)."""

    vms: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        ..., min_length=1, max_length=1024, description="VM names on the Hyper-V host."
    )
    enable_rct: StrictBool = Field(True, description="Use Resilient Change Tracking for incrementals.")
    consistency_level: ConsistencyLevel = ConsistencyLevel.APPLICATION

    @field_validator("vms")
    @classmethod
    def _unique(cls, vms: list[str]) -> list[str]:
        if len(set(vms)) != len(vms):
            raise ValueError("VM names must be unique")
        return vms


class HyperVVMRun(BaseModel):
    """Per-VM state the agent needs for an incremental: last checkpoint and RCT IDs per disk."""

    vm_id: int
    vm_name: str
    vm_guid: str = ""
    last_checkpoint_id: str = ""
    last_rct_ids: dict[str, str] = Field(default_factory=dict, description="disk identifier -> RCT ID")


class HyperVVMResult(_Strict):
    """Per-VM outcome the agent reports in ``update_run``."""

    vm_id: Id | None = Field(None, description="Server VM id from hyperv_vms; or give vm_name")
    vm_name: Annotated[str, Field(max_length=256)] | None = None
    vm_guid: Annotated[str, Field(max_length=64)] | None = None
    backup_type: BackupType | None = None
    checkpoint_id: Annotated[str, Field(max_length=256)] = ""
    rct_ids: Annotated[dict[ShortText, ShortText], Field(max_length=256)] = Field(default_factory=dict)
    changed_bytes: Int64 = 0
    consistency_level: ConsistencyLevel | None = None
    error: Annotated[str, Field(max_length=4000)] | None = None


class S3Destination(_Strict):
    """An S3-compatible bucket. Secrets included: only ever sent to the agent in ``next_run``."""

    type: Literal["s3"] = "s3"
    endpoint: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^https?://\S+$")]
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")]
    prefix: Annotated[str, Field(max_length=1024)] = ""
    region: Annotated[str, Field(max_length=64)] = ""
    access_key_id: Annotated[str, Field(min_length=1, max_length=256)]
    secret_access_key: Annotated[str, Field(min_length=1, max_length=1024)]
    repository_password: Annotated[str, Field(min_length=8, max_length=1024)]


class LocalDestination(_Strict):
    """A repository in a local directory of the agent machine (the embedded demo)."""

    type: Literal["local"] = "local"
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    repository_password: Annotated[str, Field(min_length=8, max_length=1024)]


class GatewayDestination(_Strict):
    """A repository behind the server's repository gateway (a gateway-mode job): restic's REST
    protocol at ``url`` with ``token``, which may add objects and delete this agent's own locks but
    nothing else. The storage's credentials stay on the server; only ever sent in ``next_run``."""

    type: Literal["gateway"] = "gateway"
    url: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://\S+/$")]
    token: Annotated[str, Field(min_length=16, max_length=256)]
    repository_password: Annotated[str, Field(min_length=8, max_length=1024)]


Destination = Annotated[S3Destination | LocalDestination, Field(discriminator="type")]
#: What a run carries to the agent (or the recovery console): a gateway-mode job's destination is
#: the gateway, never the storage itself.
RunDestination = Annotated[S3Destination | LocalDestination | GatewayDestination, Field(discriminator="type")]

__all__ = [
    "Destination",
    "GatewayDestination",
    "HyperVConfig",
    "HyperVVMResult",
    "HyperVVMRun",
    "LocalDestination",
    "Policy",
    "Retention",
    "RunDestination",
    "S3Destination",
    "ShareCredentials",
]
