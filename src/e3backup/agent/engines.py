"""The dispatch table: which engine runs a run's kind and engine on this OS, with which options.

    kind         engine       run                                  options from
    backup       files        engines.files.run_backup             source paths, excludes
    backup       disk_image   engines.disk_image.run_image_backup  volume, policy (Linux)
    backup       hyperv       engines.hyperv.run_hyperv            hyperv_config, chain state, policy; a host
                                                                       (Windows, or hyperv_host: sim:DIR)
    backup       sync         engines.sync.run_sync (no repository) folders, excludes, sync_* policy
    restore      files        restore.files.run_restore            RestoreRequest, restore_kopia_parallel
    restore      disk_image   restore.image.run_image_restore      RestoreRequest, policy (Linux)
    restore      disk_image   restore.image_files.run_image_files_restore
                 + paths                                           RestoreRequest: picked files of its partitions
    restore      hyperv       engines.hyperv.run_hyperv_restore    RestoreRequest (hyperv_restore command)
    maintenance  any          maintenance.run_maintenance          MaintenanceRequest, retention

Every entry pairs a ``run_x`` that follows the run contract (``e3backup.contract``) with the
edge that resolves the run (its policy, request and this agent's settings) into the engine's
typed options, and with how its result becomes the run's ``Outcome``. A new engine (Hyper-V,
sync) is a new ``run_x`` plus an entry here; the executor, the reporting, cancel and the
server's engine list (``engines_for``) follow from the table.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..api.agent import RunAssignment, SyncRunResult
from ..api.common import BackupType, Engine, RunKind, RunStatus
from ..api.jobs import LocalDestination, Policy, S3Destination
from ..api.requests import MaintenanceRequest, RestoreRequest
from ..contract import Cancel, OnEvent, RunFn
from ..errors import UsageError
from ..progress import Progress
from .client import AgentError
from .config import AgentConfig
from .hyperv import host_spec, hyperv_options, hyperv_outcome, hyperv_restore_options, hyperv_restore_outcome
from .memory import memory_budget

if TYPE_CHECKING:  # the engines are imported at a run's first call (an idle agent holds none of them)
    from ..engines.files import BackupOptions, BackupResult
    from ..engines.files.shadows import ShareLogin, VolumeShadows
    from ..engines.sync import SyncOptions, SyncResult
    from ..maintenance import MaintenanceOptions
    from ..restore.files import RestoreOptions, RestoreResult
    from ..restore.image_files import ImageFilesResult

O = TypeVar("O")  # noqa: E741 - the options type, as in the contract
R = TypeVar("R")


class EngineUnavailable(AgentError):
    pass


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported at its first call: the table names every engine, but the idle
    daemon must not hold numpy, the repository and the engines' code (issue 29: under 60 MiB)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module, __package__), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"{module.lstrip('.')}.{name}"
    return call


@dataclass(frozen=True)
class JobContext:
    """What an entry's options resolver may read: the run, this agent's settings, the typed
    restore or maintenance request (``None`` for backups)."""

    run: RunAssignment
    config: AgentConfig
    host: str
    request: RestoreRequest | MaintenanceRequest | None = None
    platform: str = sys.platform

    @property
    def restore(self) -> RestoreRequest:
        assert isinstance(self.request, RestoreRequest), "a restore run carries a RestoreRequest"
        return self.request

    @property
    def maintenance(self) -> MaintenanceRequest:
        assert isinstance(self.request, MaintenanceRequest), "a maintenance run carries a MaintenanceRequest"
        return self.request


@dataclass
class Outcome:
    status: RunStatus
    snapshot_id: str | None = None
    backup_type: BackupType | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    totals: dict[str, Any] = field(default_factory=dict)  # final counters for update_run


DirectRunFn = Callable[[O, Progress, OnEvent, Cancel], R]
"""``run_x(options, progress, on_event, cancel)``: a run that writes no repository (sync)."""


@dataclass(frozen=True)
class EngineEntry(Generic[O, R]):
    run: RunFn[O, R] | None  # None: not in this build (``why_not`` says why)
    options: Callable[[JobContext], O] | None = None
    outcome: Callable[[R], Outcome] | None = None
    create_repo: bool = False  # a backup creates the repository on first use
    platforms: tuple[str, ...] = ()  # sys.platform prefixes; () = everywhere
    why_not: str = ""
    direct: DirectRunFn[O, R] | None = None  # instead of ``run``: no repository is opened
    precheck: Callable[[O], None] | None = None  # before the repository is opened (or created)

    def available(self, platform: str) -> bool:
        runnable = self.run is not None or self.direct is not None
        return runnable and (not self.platforms or platform.startswith(self.platforms))


# -- files ----------------------------------------------------------------------------------------


def _files_backup_options(ctx: JobContext) -> BackupOptions:
    from ..engines.files import BackupOptions, Excluder

    run = ctx.run
    paths = run.source_paths or [run.source_path]
    return BackupOptions(paths=paths, excluder=Excluder(run.exclude), host=ctx.host, tags=[f"job:{run.job_id}"],
                         shadows=_volume_shadows(run.policy), share_login=_share_login(run),
                         memory=memory_budget(run.policy))


def _share_login(run: RunAssignment) -> ShareLogin | None:
    """Windows: the job's share credentials (kept out of every log line and event)."""
    creds = run.share_credentials
    if sys.platform != "win32" or creds is None or not creds.username:
        return None
    from ..agent.logs import SECRETS
    from ..engines.files.shadows import ShareLogin
    from ..platform.windows.win32 import kernel32

    SECRETS.add(creds.password)
    return ShareLogin(kernel32(), creds.username, creds.password)


def _volume_shadows(policy: Policy, platform: str = sys.platform) -> VolumeShadows | None:
    """Windows: a VSS shadow copy per volume a files run reads (docs/windows.md); with policy
    ``vss_consistency_level: application`` one set of them with the VSS writers."""
    if platform != "win32":
        return None
    from ..engines.files.shadows import VolumeShadows
    from ..platform.windows.vss import ShadowCopies, default_journal
    from ..sources.snapshot.appvss import AppConsistentVss
    from ..sources.snapshot.select import windows_seams
    from .image_options import vss_settings

    shell, _api, create = windows_seams()
    settings = vss_settings(policy)
    app = AppConsistentVss(create, settings) if settings.consistency == "application" else None
    return VolumeShadows(ShadowCopies(shell, default_journal()), app=app)


def _files_precheck(options: BackupOptions) -> None:
    """No path to back up: fail before a repository is opened or created (``SourceMissing``)."""
    from ..engines.files.archiver import SourceMissing, missing_sources

    missing = missing_sources(list(options.paths))
    if len(missing) == len(options.paths):
        raise SourceMissing(missing)


def _files_backup_outcome(result: BackupResult) -> Outcome:
    problems = [f"{len(result.errors)} path(s) or file(s) could not be read: {result.errors[0]}"] if result.errors \
        else []
    problems += result.warnings  # a failed VSS writer, a crash-consistent fallback (Windows)
    return Outcome(
        RunStatus.WARNING if problems else RunStatus.SUCCESS,
        snapshot_id=result.snapshot_id,
        backup_type=BackupType.INCREMENTAL if result.parent_id else BackupType.FULL,
        summary=result.summary_json(),
        error="; ".join(problems) or None,
        totals={"bytes_uploaded": result.bytes_stored},
    )


def files_restore_workers(run: RunAssignment) -> int:
    """The seeds' ``restore_kopia_parallel`` (1-32); it defaults to the restore workers
    (``restore_parallel_workers``, capped at 32), then to 8."""
    from ..restore.files import DEFAULT_WORKERS, MAX_WORKERS

    p = run.policy
    return min(p.restore_kopia_parallel or p.restore_parallel_workers or DEFAULT_WORKERS, MAX_WORKERS)


def _files_restore_options(ctx: JobContext) -> RestoreOptions:
    from ..restore.files import RestoreOptions

    req = ctx.restore
    assert req.target_path is not None  # validate_restore refused it otherwise
    return RestoreOptions(target=req.target_path, includes=list(req.paths), verify=req.verify,
                          workers=files_restore_workers(ctx.run), snapshot=req.snapshot_id, conflict=req.conflict,
                          memory=memory_budget(ctx.run.policy))


def _files_restore_outcome(result: RestoreResult | ImageFilesResult) -> Outcome:
    """Files that could not be restored (a corrupt or missing blob) fail the run, as they make
    the CLI exit 1; other problems (metadata) make it a warning."""
    if result.failed_files:
        first = next(e for e in result.errors if ": not restored: " in e)
        return Outcome(RunStatus.FAILED, snapshot_id=None, summary=result.summary_json(),
                       error=f"{len(result.failed_files)} file(s) could not be restored: {first}")
    status = RunStatus.WARNING if result.errors else RunStatus.SUCCESS
    return Outcome(status, snapshot_id=None, summary=result.summary_json(),
                   error=f"{len(result.errors)} error(s): {result.errors[0]}" if result.errors else None)


# -- disk_image ---------------------------------------------------------------------------------


def _image_backup_options(ctx: JobContext) -> Any:
    from .image_options import image_backup_options

    return image_backup_options(ctx.run, ctx.host, sys.platform)


def _image_backup_outcome(result: Any) -> Outcome:
    problems = [f"{result.recovered_bytes} unreadable bytes stored as zeros"] if result.recovered_bytes else []
    problems += result.warnings  # a failed VSS writer, a crash-consistent fallback
    return Outcome(
        RunStatus.WARNING if problems else RunStatus.SUCCESS,
        snapshot_id=result.snapshot_id,
        backup_type=BackupType.FULL if result.full else BackupType.INCREMENTAL,
        summary=result.summary_json(),
        error="; ".join(problems) or None,
        totals={"bytes_uploaded": result.bytes_stored},
    )


def _image_restore_options(ctx: JobContext) -> Any:
    """A disk image to a file (raw or VHDX, under the restore roots) or to an allowed device."""
    from .image_options import image_restore_options

    return image_restore_options(ctx.run, ctx.restore)


def _image_restore_outcome(result: Any) -> Outcome:
    return Outcome(RunStatus.SUCCESS, summary=result.summary_json())


def _image_files_options(ctx: JobContext) -> Any:
    """Picked files and folders of the image's partitions, into a folder under the restore roots."""
    from ..restore.image_files import ImageFilesOptions

    req = ctx.restore
    assert req.target_path is not None  # validate_restore refused it otherwise
    return ImageFilesOptions(target=req.target_path, paths=list(req.paths), snapshot=req.snapshot_id,
                             conflict=req.conflict, verify=req.verify)


_run_image_files_restore = _lazy("..restore.image_files", "run_image_files_restore")


# -- hyperv ---------------------------------------------------------------------------------------


# -- maintenance ----------------------------------------------------------------------------------


def _maintenance_options(ctx: JobContext) -> MaintenanceOptions:
    """Forget by the job's retention (this host's snapshots only), then prune; ``full`` checks too.
    Direct mode only: a gateway-mode repository is maintained by the server's maintenance worker."""
    if ctx.run.destination.type == "gateway":
        raise UsageError("this job's repository is behind the repository gateway: its forget, prune and check "
                         "run in the server's maintenance worker, not on the agent")
    from ..maintenance import MaintenanceOptions
    from ..repo.forget import ForgetPolicy

    keep = ctx.run.retention.model_dump(exclude_none=True) if ctx.maintenance.forget else {}
    return MaintenanceOptions(mode=ctx.maintenance.mode, policy=ForgetPolicy(**keep), hosts=(ctx.host,))


def _maintenance_outcome(summary: dict[str, Any]) -> Outcome:
    removed = {"snapshots_removed": list(summary.get("snapshots_removed") or [])}
    if not summary.get("ok", True):
        return Outcome(RunStatus.FAILED, summary=summary, error="repository check found errors", totals=removed)
    return Outcome(RunStatus.SUCCESS, summary=summary, totals=removed)


# -- sync ------------------------------------------------------------------------------------------


def _sync_options(ctx: JobContext) -> SyncOptions:
    """The job's folders, excludes, destination (the bucket and prefix as they are: the files
    land there as plain objects) and ``sync_*`` policy flags."""
    from ..engines.files import Excluder
    from ..engines.sync import Compare, LocalTarget, S3Target, SyncOptions

    run, p = ctx.run, ctx.run.policy
    dest = run.destination
    target: S3Target | LocalTarget
    if isinstance(dest, S3Destination):
        target = S3Target(dest.endpoint, dest.bucket, dest.prefix.strip("/"), access_key=dest.access_key_id,
                          secret_key=dest.secret_access_key, region=dest.region or None)
    elif isinstance(dest, LocalDestination):
        target = LocalTarget(dest.path)
    else:
        raise UsageError("a sync job copies plain files and cannot write through the repository gateway; "
                         "give the job storage_mode direct")
    return SyncOptions(
        sources=tuple(run.source_paths or [run.source_path]),
        target=target,
        excluder=Excluder(run.exclude),
        compare=Compare(p.sync_compare),
        delete=p.sync_delete,
        max_delete_percent=p.sync_max_delete,
        dry_run=p.sync_dry_run,
        limit_upload=p.limit_upload,
        state_dir=Path(ctx.config.state_dir),
    )


def _sync_outcome(result: SyncResult) -> Outcome:
    """WARNING when a file failed or the guard refused deletions; the counters go to update_run."""
    problems = []
    if result.errors:
        problems.append(f"{len(result.errors)} file(s) could not be synced: {result.errors[0]}")
    if result.deletes_refused:
        problems.append(f"{result.deletes_refused} deletion(s) refused by the max_delete guard")
    return Outcome(
        RunStatus.WARNING if problems else RunStatus.SUCCESS,
        backup_type=BackupType.INCREMENTAL if result.files_unchanged or result.files_changed else BackupType.FULL,
        summary=result.summary_json(),
        error="; ".join(problems) or None,
        totals={"sync_result": SyncRunResult.model_validate(result.summary_json())},
    )


# -- the tables -----------------------------------------------------------------------------------

_files_backup = _lazy("..engines.files", "run_backup")
_image_backup = _lazy("..engines.disk_image", "run_image_backup")
_hyperv_backup = _lazy("..engines.hyperv", "run_hyperv")
_sync = _lazy("..engines.sync", "run_sync")
_files_restore = _lazy("..restore.files", "run_restore")
_image_restore = _lazy("..restore.image", "run_image_restore")
_hyperv_restore = _lazy("..engines.hyperv", "run_hyperv_restore")
_maintenance = _lazy("..maintenance", "run_maintenance")

BACKUP: dict[Engine, EngineEntry[Any, Any]] = {
    Engine.FILES: EngineEntry["BackupOptions", "BackupResult"](
        _files_backup, _files_backup_options, _files_backup_outcome, create_repo=True, precheck=_files_precheck
    ),
    Engine.DISK_IMAGE: EngineEntry(
        _image_backup, _image_backup_options, _image_backup_outcome, create_repo=True,
        platforms=("linux", "win32"), why_not="disk image backups need Linux or Windows (VSS)",
    ),
    Engine.HYPERV: EngineEntry(_hyperv_backup, hyperv_options, hyperv_outcome, create_repo=True,
                               why_not="Hyper-V backups need a Hyper-V host: Windows, or hyperv_host: sim:DIR"),
    Engine.SYNC: EngineEntry["SyncOptions", "SyncResult"](None, _sync_options, _sync_outcome, direct=_sync),
}

RESTORE: dict[Engine, EngineEntry[Any, Any]] = {
    Engine.FILES: EngineEntry["RestoreOptions", "RestoreResult"](
        _files_restore, _files_restore_options, _files_restore_outcome
    ),
    Engine.DISK_IMAGE: EngineEntry(_image_restore, _image_restore_options, _image_restore_outcome,
                                   platforms=("linux",),
                                   why_not="disk image restores need Linux in this build (the recovery console "
                                   "restores Windows disks)"),
    Engine.HYPERV: EngineEntry(_hyperv_restore, hyperv_restore_options, hyperv_restore_outcome),
    Engine.SYNC: EngineEntry(None, why_not="a sync job keeps no snapshots: its files are plain objects in the "
                             "job's bucket under its prefix (or in its folder); copy them back with any S3 tool"),
}

IMAGE_FILES_RESTORE: EngineEntry[Any, Any] = EngineEntry(
    _run_image_files_restore, _image_files_options, _files_restore_outcome
)
"""A disk image restore request with ``paths``: those files, read from the partitions' file
systems (any platform: nothing is written to a device)."""

MAINTENANCE: EngineEntry[Any, Any] = EngineEntry["MaintenanceOptions", dict[str, Any]](
    _maintenance, _maintenance_options, _maintenance_outcome
)


def pick(kind: RunKind, engine: Engine, platform: str = sys.platform,
         request: RestoreRequest | MaintenanceRequest | None = None) -> EngineEntry[Any, Any]:
    """The entry for a run, or ``EngineUnavailable`` saying why not."""
    if kind is RunKind.MAINTENANCE:
        return MAINTENANCE
    picked = isinstance(request, RestoreRequest) and bool(request.paths)
    if kind is RunKind.RESTORE and engine is Engine.DISK_IMAGE and picked:
        return IMAGE_FILES_RESTORE
    table = BACKUP if kind is RunKind.BACKUP else RESTORE
    entry = table.get(engine)
    if entry is None or (entry.run is None and entry.direct is None):
        raise EngineUnavailable(entry.why_not if entry else f"unknown engine {engine}")
    if not entry.available(platform):
        raise EngineUnavailable(f"{entry.why_not} (this machine: {platform})")
    return entry


def engines_for(platform: str = sys.platform, config: AgentConfig | None = None) -> list[Engine]:
    """The engines this agent can back up with on ``platform`` (reported to the server);
    ``hyperv`` only with a Hyper-V host (Windows, or the config's ``hyperv_host``)."""
    return [
        engine for engine, entry in BACKUP.items()
        if entry.available(platform)
        and (engine is not Engine.HYPERV or (host_spec(config, platform) if config else platform == "win32"))
    ]


__all__ = [
    "BACKUP",
    "IMAGE_FILES_RESTORE",
    "MAINTENANCE",
    "RESTORE",
    "EngineEntry",
    "EngineUnavailable",
    "JobContext",
    "Outcome",
    "engines_for",
    "files_restore_workers",
    "pick",
]
