"""Engine dispatch: which code backs up (or restores) a run's engine on this OS.

    engine       backup                         restore
    files        engines.files.run_backup       restore.files.run_restore   (alias: kopia)
    disk_image   engines.disk_image (Linux)     restore.image.run_image_restore (file or device)
    hyperv       needs a Windows Hyper-V host   -> ENGINE_UNAVAILABLE
    sync         the seeds' legacy rclone sync; not built (use files) -> ENGINE_UNAVAILABLE

An engine that is not available fails the run with an ``ENGINE_UNAVAILABLE`` event; it never
raises out of the agent. Adding one is an entry in ``BACKUP`` / ``RESTORE``: a function from a
``JobContext`` to an ``Outcome``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api.agent import RunAssignment
from ..api.common import BackupType, Engine, RunStatus
from ..events import EventCode
from ..progress import Progress
from ..repo import Repository
from .client import AgentError
from .config import AgentConfig
from .reporter import RunReporter


class EngineUnavailable(AgentError):
    pass


@dataclass
class JobContext:
    run: RunAssignment
    config: AgentConfig
    reporter: RunReporter
    open_repo: Callable[[bool], Repository]  # create: init the repository if missing
    progress: Progress
    host: str = field(default_factory=socket.gethostname)
    options: dict[str, Any] = field(default_factory=dict)  # validated restore/maintenance options


@dataclass
class Outcome:
    status: RunStatus
    snapshot_id: str | None = None
    backup_type: BackupType | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    totals: dict[str, Any] = field(default_factory=dict)  # final counters for update_run


EngineFn = Callable[[JobContext], Outcome]


# -- files ----------------------------------------------------------------------------------------


def backup_files(ctx: JobContext) -> Outcome:
    from ..engines.files import BackupOptions, Excluder, run_backup

    run = ctx.run
    paths = run.source_paths or [run.source_path]
    opts = BackupOptions(paths=paths, excluder=Excluder(run.exclude), host=ctx.host, tags=[f"job:{run.job_id}"])
    repo = ctx.open_repo(True)
    try:
        ctx.reporter.event(EventCode.REPOSITORY_SNAPSHOT_STARTED, f"backing up {', '.join(paths)}", paths=paths)
        result = run_backup(repo, opts, ctx.progress, cancel=ctx.reporter.cancel)
    finally:
        repo.close()
    ctx.reporter.event(
        EventCode.REPOSITORY_SNAPSHOT_SAVED,
        f"snapshot {result.snapshot_id[:8]} saved: {result.total_files_processed} files, "
        f"{result.bytes_added} new bytes",
        snapshot_id=result.snapshot_id, parent_id=result.parent_id or None, files_new=result.files_new,
        files_changed=result.files_changed, files_unmodified=result.files_unmodified,
        bytes_added=result.bytes_added, errors=len(result.errors),
    )
    status = RunStatus.WARNING if result.errors else RunStatus.SUCCESS
    return Outcome(
        status,
        snapshot_id=result.snapshot_id,
        backup_type=BackupType.INCREMENTAL if result.parent_id else BackupType.FULL,
        summary=result.summary_json(),
        error=f"{len(result.errors)} file(s) could not be read: {result.errors[0]}" if result.errors else None,
    )


def restore_files(ctx: JobContext) -> Outcome:
    from ..restore.files import RestoreOptions, run_restore

    o = ctx.options
    workers = ctx.run.policy.restore_kopia_parallel or ctx.run.policy.restore_parallel_workers or 8
    opts = RestoreOptions(target=o["target_path"], includes=list(o.get("paths") or []),
                          verify=bool(o.get("verify", True)), workers=workers)
    repo = ctx.open_repo(False)
    try:
        result = run_restore(repo, o["snapshot_id"], opts, ctx.progress)
    finally:
        repo.close()
    status = RunStatus.WARNING if result.errors else RunStatus.SUCCESS
    return Outcome(status, snapshot_id=None, summary=result.summary_json(),
                   error=f"{len(result.errors)} error(s): {result.errors[0]}" if result.errors else None)


# -- disk_image ---------------------------------------------------------------------------------


def backup_disk_image(ctx: JobContext) -> Outcome:
    from ..engines.disk_image import ImageBackupOptions, run_image_backup

    run = ctx.run
    assert run.disk_source_volume is not None
    opts = ImageBackupOptions(
        source=run.disk_source_volume,
        policy=run.policy.model_dump(exclude_none=True),
        host=ctx.host,
        tags=(f"job:{run.job_id}",),
        run_id=f"run{run.run_id}",
    )
    repo = ctx.open_repo(True)
    try:
        result = run_image_backup(repo, opts, ctx.progress, ctx.reporter.on_engine_event, ctx.reporter.cancel)
    finally:
        repo.close()
    status = RunStatus.WARNING if result.recovered_bytes else RunStatus.SUCCESS
    return Outcome(
        status,
        snapshot_id=result.snapshot_id,
        backup_type=BackupType.FULL if result.full else BackupType.INCREMENTAL,
        summary=result.summary_json(),
        error=f"{result.recovered_bytes} unreadable bytes stored as zeros" if result.recovered_bytes else None,
    )


def restore_disk_image(ctx: JobContext) -> Outcome:
    """A disk image to a file (raw or VHDX, under the restore roots) or to an allowed device."""
    from ..restore.image import ImageRestoreOptions, run_image_restore

    o = ctx.options
    target = str(o.get("target_disk") or o["target_path"])
    image_format = str(o.get("format") or ctx.run.disk_image_format or "raw")
    opts = ImageRestoreOptions.from_policy(
        target,
        ctx.run.policy.model_dump(exclude_none=True),
        image_format="raw" if o.get("target_disk") else image_format,
        verify=bool(o.get("verify", True)),
        discard=bool(o.get("discard", False)),
        force=bool(o.get("force", False)),
    )
    repo = ctx.open_repo(False)
    try:
        result = run_image_restore(repo, o["snapshot_id"], opts, ctx.progress, cancel=ctx.reporter.cancel)
    finally:
        repo.close()
    return Outcome(RunStatus.SUCCESS, summary=result.summary_json())


# -- maintenance ----------------------------------------------------------------------------------


def maintain(ctx: JobContext) -> Outcome:
    """Forget by the job's retention (this host's snapshots only), then prune; ``full`` checks too."""
    from ..maintenance import MaintenanceOptions, run_maintenance
    from ..repo.forget import ForgetPolicy

    keep = ctx.run.retention.model_dump(exclude_none=True)
    opts = MaintenanceOptions(mode=ctx.options.get("mode", "quick"), policy=ForgetPolicy(**keep), hosts=(ctx.host,))
    repo = ctx.open_repo(False)
    try:
        summary = run_maintenance(repo, opts, ctx.progress)
    finally:
        repo.close()
    if not summary.get("ok", True):
        return Outcome(RunStatus.FAILED, summary=summary, error="repository check found errors")
    return Outcome(RunStatus.SUCCESS, summary=summary)


# -- the tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSpec:
    fn: EngineFn | None
    platforms: tuple[str, ...] = ()  # sys.platform prefixes; () = everywhere
    why_not: str = ""


BACKUP: dict[Engine, EngineSpec] = {
    Engine.FILES: EngineSpec(backup_files),
    Engine.DISK_IMAGE: EngineSpec(backup_disk_image, ("linux",),
                                  "disk image backups need Linux in this build (VSS on Windows is not wired)"),
    Engine.HYPERV: EngineSpec(None, why_not="Hyper-V backups need a Windows Hyper-V host and are not in this build"),
    Engine.SYNC: EngineSpec(
        None, why_not="the legacy rclone sync engine is not part of e3backup; use the files engine"
    ),
}

RESTORE: dict[Engine, EngineSpec] = {
    Engine.FILES: EngineSpec(restore_files),
    Engine.DISK_IMAGE: EngineSpec(restore_disk_image, ("linux",), "disk image restores need Linux in this build"),
    Engine.HYPERV: EngineSpec(None, why_not="Hyper-V restore needs a Windows Hyper-V host"),
    Engine.SYNC: EngineSpec(None, why_not="sync jobs cannot be restored by the agent"),
}


def pick(table: dict[Engine, EngineSpec], engine: Engine, platform: str = sys.platform) -> EngineFn:
    spec = table.get(engine)
    if spec is None or spec.fn is None:
        raise EngineUnavailable(spec.why_not if spec else f"unknown engine {engine}")
    if spec.platforms and not platform.startswith(spec.platforms):
        raise EngineUnavailable(f"{spec.why_not} (this machine: {platform})")
    return spec.fn


__all__ = ["BACKUP", "RESTORE", "EngineUnavailable", "JobContext", "Outcome", "maintain", "pick"]
