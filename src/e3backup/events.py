"""Event codes shared by the engines, the agent, the server and the dashboard.

The names are the original system's (the seeds); its ``KOPIA_*`` stage events are the
``REPOSITORY_*`` events here, named for what happens. Each code carries a default level and the
human meaning the dashboard shows next to it (what happened and what to check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EventCode(StrEnum):
    # storage preflight (the agent runs it before opening the repository)
    STORAGE_OK = "STORAGE_OK"
    STORAGE_DNS_FAILED = "STORAGE_DNS_FAILED"
    STORAGE_TCP_REFUSED = "STORAGE_TCP_REFUSED"
    STORAGE_TCP_TIMEOUT = "STORAGE_TCP_TIMEOUT"
    STORAGE_TLS_FAILED = "STORAGE_TLS_FAILED"
    STORAGE_HTTP_BLOCKED = "STORAGE_HTTP_BLOCKED"
    STORAGE_ENDPOINT_UNREACHABLE = "STORAGE_ENDPOINT_UNREACHABLE"
    # repository stages (the seeds' KOPIA_* events)
    REPOSITORY_OPENED = "REPOSITORY_OPENED"
    REPOSITORY_INITIALIZED = "REPOSITORY_INITIALIZED"
    REPOSITORY_LOCKED = "REPOSITORY_LOCKED"
    REPOSITORY_SNAPSHOT_STARTED = "REPOSITORY_SNAPSHOT_STARTED"
    REPOSITORY_INDEX_WRITTEN = "REPOSITORY_INDEX_WRITTEN"
    REPOSITORY_SNAPSHOT_SAVED = "REPOSITORY_SNAPSHOT_SAVED"
    REPOSITORY_FAILED = "REPOSITORY_FAILED"
    # disk image engine
    DISK_IMAGE_STREAM_START = "DISK_IMAGE_STREAM_START"
    DISK_IMAGE_READ_PLAN_FALLBACK = "DISK_IMAGE_READ_PLAN_FALLBACK"
    DISK_IMAGE_READ_RECOVERED = "DISK_IMAGE_READ_RECOVERED"
    DISK_IMAGE_CHANGE_MAP_IGNORED = "DISK_IMAGE_CHANGE_MAP_IGNORED"
    DISK_IMAGE_CHANGE_TRACKING = "DISK_IMAGE_CHANGE_TRACKING"
    DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE = "DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE"
    DISK_IMAGE_CHANGE_TRACKING_MISSED = "DISK_IMAGE_CHANGE_TRACKING_MISSED"
    DISK_IMAGE_SNAPSHOT_NONE = "DISK_IMAGE_SNAPSHOT_NONE"
    DISK_IMAGE_BITMAP_MISMATCH = "DISK_IMAGE_BITMAP_MISMATCH"
    DISK_IMAGE_FILES_SKIPPED = "DISK_IMAGE_FILES_SKIPPED"
    DISK_IMAGE_LAYOUT_MISMATCH = "DISK_IMAGE_LAYOUT_MISMATCH"
    # Windows: shadow copies and network shares
    VSS_SNAPSHOT_CREATED = "VSS_SNAPSHOT_CREATED"
    VSS_SNAPSHOT_FAILED = "VSS_SNAPSHOT_FAILED"
    VSS_SNAPSHOT_DELETE_FAILED = "VSS_SNAPSHOT_DELETE_FAILED"
    VSS_SNAPSHOTS_SWEPT = "VSS_SNAPSHOTS_SWEPT"
    VSS_WRITER_FAILED = "VSS_WRITER_FAILED"
    VSS_SNAPSHOT_RETRY = "VSS_SNAPSHOT_RETRY"
    VSS_CONSISTENCY_FALLBACK = "VSS_CONSISTENCY_FALLBACK"
    SHARE_CONNECT_FAILED = "SHARE_CONNECT_FAILED"
    DISK_IMAGE_STALLED = "DISK_IMAGE_STALLED"
    DISK_IMAGE_FINALIZING_SLOW = "DISK_IMAGE_FINALIZING_SLOW"
    DISK_IMAGE_FINALIZING_STALLED = "DISK_IMAGE_FINALIZING_STALLED"
    DISK_IMAGE_STREAM_COMPLETED = "DISK_IMAGE_STREAM_COMPLETED"
    DISK_IMAGE_FAILED = "DISK_IMAGE_FAILED"
    # sync engine (plain-file mirrors)
    SYNC_STARTED = "SYNC_STARTED"
    SYNC_SOURCE_MISSING = "SYNC_SOURCE_MISSING"
    SYNC_FILE_FAILED = "SYNC_FILE_FAILED"
    SYNC_FILES_FAILED = "SYNC_FILES_FAILED"
    SYNC_DELETE_REFUSED = "SYNC_DELETE_REFUSED"
    SYNC_COMPLETED = "SYNC_COMPLETED"
    SYNC_FAILED = "SYNC_FAILED"
    # hyperv engine
    HYPERV_VM_STARTED = "HYPERV_VM_STARTED"
    HYPERV_CHECKPOINT_CREATED = "HYPERV_CHECKPOINT_CREATED"
    HYPERV_CONSISTENCY_FALLBACK = "HYPERV_CONSISTENCY_FALLBACK"
    HYPERV_CHECKPOINT_LEFTOVER_REMOVED = "HYPERV_CHECKPOINT_LEFTOVER_REMOVED"
    HYPERV_CHECKPOINT_REMOVED = "HYPERV_CHECKPOINT_REMOVED"
    HYPERV_RCT_ENABLED = "HYPERV_RCT_ENABLED"
    HYPERV_RCT_CHAIN_BROKEN = "HYPERV_RCT_CHAIN_BROKEN"
    HYPERV_REFERENCE_POINT_CREATED = "HYPERV_REFERENCE_POINT_CREATED"
    HYPERV_VM_COMPLETED = "HYPERV_VM_COMPLETED"
    HYPERV_VM_FAILED = "HYPERV_VM_FAILED"
    # sources and retention (files engine, agent)
    SOURCE_MISSING = "SOURCE_MISSING"
    RETENTION_APPLIED = "RETENTION_APPLIED"
    RETENTION_FAILED = "RETENTION_FAILED"
    # proof of restore (agent, after a backup; docs/proof.md)
    PROOF_PASSED = "PROOF_PASSED"
    PROOF_FAILED = "PROOF_FAILED"
    PROOF_UNAVAILABLE = "PROOF_UNAVAILABLE"
    # agent
    ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"
    RUN_REFUSED = "RUN_REFUSED"
    RUN_ORPHANED = "RUN_ORPHANED"
    RUN_CANCELLED = "RUN_CANCELLED"
    # recovery console (bare-metal restore)
    RECOVERY_STARTED = "RECOVERY_STARTED"
    RECOVERY_REPOSITORY_UNREACHABLE = "RECOVERY_REPOSITORY_UNREACHABLE"
    RECOVERY_RESUMED = "RECOVERY_RESUMED"
    RECOVERY_GPT_MOVED = "RECOVERY_GPT_MOVED"
    RECOVERY_COMPLETED = "RECOVERY_COMPLETED"
    RECOVERY_FAILED = "RECOVERY_FAILED"
    # server
    EVENTS_CAPPED = "EVENTS_CAPPED"


@dataclass(frozen=True)
class CodeInfo:
    level: Level
    meaning: str


CODES: dict[EventCode, CodeInfo] = {
    EventCode.STORAGE_OK: CodeInfo(Level.INFO, "The storage endpoint answered."),
    EventCode.STORAGE_DNS_FAILED: CodeInfo(
        Level.ERROR,
        "The storage host name does not resolve. Check the endpoint URL spelling and the machine's DNS servers.",
    ),
    EventCode.STORAGE_TCP_REFUSED: CodeInfo(
        Level.ERROR,
        "The storage host refused the connection. Check the port in the endpoint URL and that "
        "the storage service is running.",
    ),
    EventCode.STORAGE_TCP_TIMEOUT: CodeInfo(
        Level.ERROR,
        "No answer from the storage host. A firewall or proxy is probably dropping traffic to that address and port.",
    ),
    EventCode.STORAGE_TLS_FAILED: CodeInfo(
        Level.ERROR,
        "The TLS handshake failed. Check the certificate (self-signed or expired?), the CA "
        "bundle, and whether something intercepts HTTPS on this network.",
    ),
    EventCode.STORAGE_HTTP_BLOCKED: CodeInfo(
        Level.ERROR,
        "Something between this machine and the storage answered with a block page. A web "
        "filter or proxy is blocking the endpoint: allow it there.",
    ),
    EventCode.STORAGE_ENDPOINT_UNREACHABLE: CodeInfo(
        Level.ERROR,
        "The storage endpoint could not be reached. Check the network route and the endpoint URL.",
    ),
    EventCode.REPOSITORY_OPENED: CodeInfo(Level.INFO, "The repository was opened."),
    EventCode.REPOSITORY_INITIALIZED: CodeInfo(Level.INFO, "A new repository was created."),
    EventCode.REPOSITORY_LOCKED: CodeInfo(
        Level.ERROR,
        "Another process holds the repository lock. Wait for it, or remove a stale lock.",
    ),
    EventCode.REPOSITORY_SNAPSHOT_STARTED: CodeInfo(Level.INFO, "Backup data is being written."),
    EventCode.REPOSITORY_INDEX_WRITTEN: CodeInfo(Level.INFO, "The index of new data was written."),
    EventCode.REPOSITORY_SNAPSHOT_SAVED: CodeInfo(Level.INFO, "The snapshot was saved."),
    EventCode.REPOSITORY_FAILED: CodeInfo(Level.ERROR, "A repository operation failed."),
    EventCode.DISK_IMAGE_STREAM_START: CodeInfo(Level.INFO, "Reading the disk started."),
    EventCode.DISK_IMAGE_READ_PLAN_FALLBACK: CodeInfo(
        Level.WARNING,
        "The used blocks could not be determined for part of the disk; that part is read in full "
        "(slower, but complete).",
    ),
    EventCode.DISK_IMAGE_READ_RECOVERED: CodeInfo(
        Level.WARNING,
        "A region of the disk could not be read and was stored as zeros. Check the disk's health "
        "(SMART); files in that region may be damaged in this backup.",
    ),
    EventCode.DISK_IMAGE_CHANGE_MAP_IGNORED: CodeInfo(
        Level.WARNING,
        "The change map could not be used (chain broken or disk changed): the disk was read in full this time.",
    ),
    EventCode.DISK_IMAGE_CHANGE_TRACKING: CodeInfo(
        Level.INFO, "How each partition was read: the change-tracking method, why, and the bytes to read."
    ),
    EventCode.DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE: CodeInfo(
        Level.WARNING,
        "Change tracking could not be used for a partition (see the reason); its used blocks were read in full.",
    ),
    EventCode.DISK_IMAGE_CHANGE_TRACKING_MISSED: CodeInfo(
        Level.ERROR,
        "The periodic verify read found blocks that changed without the file system recording it (a write "
        "that bypassed the file system). This backup is complete; earlier incrementals may hold old data there.",
    ),
    EventCode.HYPERV_VM_STARTED: CodeInfo(Level.INFO, "The backup of a virtual machine started."),
    EventCode.HYPERV_CHECKPOINT_CREATED: CodeInfo(
        Level.INFO, "A recovery checkpoint of the VM was taken; its disks are read while the VM runs on."
    ),
    EventCode.HYPERV_CONSISTENCY_FALLBACK: CodeInfo(
        Level.WARNING,
        "The guest could not freeze for an application-consistent checkpoint, so the backup is "
        "crash-consistent. Check the VSS integration service (Windows) or hv_vss_daemon (Linux guests).",
    ),
    EventCode.HYPERV_CHECKPOINT_LEFTOVER_REMOVED: CodeInfo(
        Level.WARNING, "A recovery checkpoint left by an interrupted backup was found and removed."
    ),
    EventCode.HYPERV_CHECKPOINT_REMOVED: CodeInfo(
        Level.INFO, "The backup's recovery checkpoint was removed without keeping a reference point."
    ),
    EventCode.HYPERV_RCT_ENABLED: CodeInfo(Level.INFO, "Resilient Change Tracking was turned on for the VM's disks."),
    EventCode.HYPERV_RCT_CHAIN_BROKEN: CodeInfo(
        Level.WARNING,
        "The disk's change tracking chain is broken (the reason says why), so this disk is backed "
        "up in full; the next backup is incremental again.",
    ),
    EventCode.HYPERV_REFERENCE_POINT_CREATED: CodeInfo(
        Level.INFO, "The checkpoint became a reference point: the next backup reads only what changed since."
    ),
    EventCode.HYPERV_VM_COMPLETED: CodeInfo(Level.INFO, "The virtual machine was backed up."),
    EventCode.HYPERV_VM_FAILED: CodeInfo(
        Level.ERROR, "The backup of this virtual machine failed; the others went on. The message says why."
    ),
    EventCode.DISK_IMAGE_SNAPSHOT_NONE: CodeInfo(
        Level.WARNING,
        "The disk was read live without a snapshot; the image may be inconsistent if it was being written.",
    ),
    EventCode.DISK_IMAGE_BITMAP_MISMATCH: CodeInfo(
        Level.WARNING,
        "Windows reported clusters in use that e3backup's own NTFS bitmap reader did not; they are "
        "read as well. Report it: the two should agree on a shadow copy.",
    ),
    EventCode.DISK_IMAGE_FILES_SKIPPED: CodeInfo(
        Level.INFO,
        "The page file and hibernation file are not imaged (Windows recreates them); their clusters "
        "are stored as zeros.",
    ),
    EventCode.DISK_IMAGE_LAYOUT_MISMATCH: CodeInfo(
        Level.WARNING,
        "Windows reports other partitions than e3backup read from the partition table; the image "
        "follows the table on disk. Report it with the event's details.",
    ),
    EventCode.VSS_SNAPSHOT_CREATED: CodeInfo(Level.INFO, "A shadow copy of the volume was created for this run."),
    EventCode.VSS_SNAPSHOT_FAILED: CodeInfo(
        Level.ERROR,
        "Windows could not create a shadow copy of the volume. The message names the reason (too many "
        "shadow copies, another snapshot in progress, a provider veto, no shadow storage...).",
    ),
    EventCode.VSS_SNAPSHOT_DELETE_FAILED: CodeInfo(
        Level.WARNING,
        "The run's shadow copy could not be deleted; the agent deletes it at its next start.",
    ),
    EventCode.VSS_SNAPSHOTS_SWEPT: CodeInfo(
        Level.WARNING,
        "Shadow copies left by an interrupted run were deleted at agent start.",
    ),
    EventCode.VSS_WRITER_FAILED: CodeInfo(
        Level.WARNING,
        "A VSS writer (an application such as SQL Server or Exchange) failed during the snapshot; the "
        "message names it and its state. Its data is only crash-consistent in this backup (or the run "
        "failed, with policy vss_writer_failure: fail). Check: vssadmin list writers.",
    ),
    EventCode.VSS_SNAPSHOT_RETRY: CodeInfo(
        Level.INFO, "Another snapshot set was being created (another backup?); the agent waits and tries again."
    ),
    EventCode.VSS_CONSISTENCY_FALLBACK: CodeInfo(
        Level.WARNING,
        "The application-consistent (VSS writers) snapshot could not be taken, so a crash-consistent "
        "shadow copy was used. The message says why.",
    ),
    EventCode.SHARE_CONNECT_FAILED: CodeInfo(
        Level.ERROR,
        "The network share could not be connected: the message says whether the share was not found "
        "or the credentials were refused.",
    ),
    EventCode.DISK_IMAGE_STALLED: CodeInfo(
        Level.WARNING,
        "Reading the disk made no progress for the policy's stall interval (before the final ~1 %); "
        "the run goes on, or fails if the policy says so.",
    ),
    EventCode.DISK_IMAGE_FINALIZING_SLOW: CodeInfo(
        Level.INFO, "Finishing the last part of the image is taking longer than usual."
    ),
    EventCode.DISK_IMAGE_FINALIZING_STALLED: CodeInfo(
        Level.WARNING, "No progress while finishing the image; storage may be slow or stalled."
    ),
    EventCode.DISK_IMAGE_STREAM_COMPLETED: CodeInfo(Level.INFO, "The disk image was stored."),
    EventCode.DISK_IMAGE_FAILED: CodeInfo(Level.ERROR, "The disk image backup failed."),
    EventCode.SYNC_STARTED: CodeInfo(
        Level.INFO, "The sync compared the source with the destination and started copying."
    ),
    EventCode.SYNC_SOURCE_MISSING: CodeInfo(
        Level.ERROR,
        "A source folder does not exist (unmounted drive, moved or deleted folder?). Nothing was "
        "deleted from its part of the destination.",
    ),
    EventCode.SYNC_FILE_FAILED: CodeInfo(
        Level.WARNING,
        "A file could not be synced (unreadable, locked, or in the way); its previous copy in the "
        "destination, if any, was kept. The other files were synced.",
    ),
    EventCode.SYNC_FILES_FAILED: CodeInfo(
        Level.WARNING, "More files could not be synced than are listed one by one; the count is given."
    ),
    EventCode.SYNC_DELETE_REFUSED: CodeInfo(
        Level.WARNING,
        "The sync would have deleted more of the destination than the max_delete guard allows, so it "
        "deleted nothing. Check that the source is complete (a vanished or emptied folder?), or raise "
        "the job's sync_max_delete if the deletions are intended.",
    ),
    EventCode.SYNC_COMPLETED: CodeInfo(Level.INFO, "The destination mirrors the source."),
    EventCode.SYNC_FAILED: CodeInfo(
        Level.ERROR,
        "The destination could not be written (unreachable after retries, access denied, full). What "
        "was copied stays; nothing was deleted. Check the bucket, its credentials and the network.",
    ),
    EventCode.SOURCE_MISSING: CodeInfo(
        Level.ERROR,
        "A source path does not exist (unmounted drive, moved or deleted folder?). The other paths "
        "were backed up; with none left, no snapshot was made and no repository created.",
    ),
    EventCode.RETENTION_APPLIED: CodeInfo(
        Level.INFO,
        "The job's retention policy was applied: snapshots it no longer keeps were forgotten (their "
        "data is freed by the repository's next prune).",
    ),
    EventCode.PROOF_PASSED: CodeInfo(
        Level.INFO,
        "Proof of restore passed: the new snapshot was booted (a sign of life and a screenshot), its file "
        "systems checked, or a sample of its files restored and hashed (policy verify_boot).",
    ),
    EventCode.PROOF_FAILED: CodeInfo(
        Level.ERROR,
        "Proof of restore failed: the snapshot did not boot, a file system check found errors, or its data "
        "could not be read back (the message names the partition, file or pack). The backup is kept and "
        "the run keeps its status; the proof-failed alert opens.",
    ),
    EventCode.PROOF_UNAVAILABLE: CodeInfo(
        Level.WARNING,
        "Proof of restore was due but did not run: this agent cannot run it (an image proof needs Linux), "
        "or the run was cancelled during the proof (the backup is kept).",
    ),
    EventCode.RETENTION_FAILED: CodeInfo(
        Level.WARNING,
        "The backup was saved, but the job's retention policy could not be applied; old snapshots "
        "stay until the next run or maintenance.",
    ),
    EventCode.ENGINE_UNAVAILABLE: CodeInfo(
        Level.ERROR, "This backup engine is not available on this machine's operating system."
    ),
    EventCode.RUN_REFUSED: CodeInfo(
        Level.ERROR, "The agent refused this run: its parameters were invalid or not allowed."
    ),
    EventCode.RUN_ORPHANED: CodeInfo(
        Level.ERROR, "The agent stopped while this run was in progress; it was marked failed."
    ),
    EventCode.RUN_CANCELLED: CodeInfo(Level.WARNING, "The run was cancelled."),
    EventCode.RECOVERY_STARTED: CodeInfo(
        Level.INFO, "The recovery console started writing the image to the target disk it was given."
    ),
    EventCode.RECOVERY_REPOSITORY_UNREACHABLE: CodeInfo(
        Level.WARNING,
        "The recovery console lost the repository. It keeps what it wrote and tries again; check the "
        "rescue machine's network and the storage endpoint if this repeats.",
    ),
    EventCode.RECOVERY_RESUMED: CodeInfo(
        Level.INFO, "The repository answers again; the restore continues with the segments not yet written."
    ),
    EventCode.RECOVERY_GPT_MOVED: CodeInfo(
        Level.INFO, "The target disk is larger than the source: the backup partition table was moved to its end."
    ),
    EventCode.RECOVERY_COMPLETED: CodeInfo(
        Level.INFO, "The disk was restored and every chunk verified; the machine can boot from it."
    ),
    EventCode.RECOVERY_FAILED: CodeInfo(
        Level.ERROR, "The bare-metal restore failed; the message says why. The target disk is incomplete."
    ),
    EventCode.EVENTS_CAPPED: CodeInfo(
        Level.WARNING,
        "The run sent more events than the server keeps for one run; the rest were counted "
        "(details: dropped, by level), and errors were still kept.",
    ),
}


@dataclass
class Event:
    """One event as engines emit it and the agent forwards it."""

    code: EventCode
    message: str
    level: Level | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def effective_level(self) -> Level:
        return self.level or CODES[self.code].level

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "level": self.effective_level().value,
            "message": self.message,
            "details": self.details,
        }


def meaning(code: str) -> str:
    """The human meaning of a code, or an empty string for codes we do not know."""
    try:
        return CODES[EventCode(code)].meaning
    except ValueError:
        return ""


__all__ = ["CODES", "CodeInfo", "Event", "EventCode", "Level", "meaning"]
