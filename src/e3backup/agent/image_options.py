"""The agent's edge for disk images: a run's job policy resolved into the engine's typed options.

    policy field                     ImageBackupOptions / ImageRestoreOptions
    parallel_disk_reads              parallel (1-64, the engine's range too; default 2)
    disk_image_bitmap (true)         read_plan "auto" (used blocks); false: "full" (every byte)
    disk_image_strict_read_errors    strict_read_errors; unset: AGENT_DISK_IMAGE_STRICT_READ_ERRORS
                                     of the agent's environment, else false (the seeds' rule)
    disk_image_cbt (true)            change_tracking (alias disk_image_change_tracking)
    disk_image_verify_every          verify_every (default 10; 0: never)
    disk_image_stall_seconds         stall_seconds (default 300)
    disk_image_fail_on_stall         fail_on_stall
    restore_parallel_workers         workers of the image restore (default 8)
    restore_segment_size_mb          segment_size (default 32 MiB)
    max_memory_mb                    memory, backup and restore (default 256 MiB: ``budget``)
    vss_consistency_level (crash)    vss.consistency: application uses the VSS writers (Windows)
    vss_backup_type (copy)           vss.backup_type: VSS_BT_COPY or VSS_BT_FULL
    vss_writer_failure (warn)        vss.writer_failure: a failed writer warns or fails the run
    vss_exclude_writers              vss.exclude_writers: writer names or ids left out

Nothing below this reads a policy or the environment. A Windows volume form (``C:``...) on an
agent of another platform ends here with ``EngineUnavailable`` naming the platform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..api.agent import RunAssignment
from ..api.jobs import Policy
from ..api.requests import RestoreRequest
from ..api.volumes import parse_volume
from ..engines.disk_image import ImageBackupOptions
from ..engines.disk_image.options import DEFAULT_PARALLEL, DEFAULT_STALL_SECONDS, DEFAULT_VERIFY_EVERY
from ..errors import UsageError
from ..restore.image import DEFAULT_SEGMENT_MB, DEFAULT_WORKERS, ImageRestoreOptions, MiB
from ..restore.target import REQUEST_NAMES
from ..sources.reader import STRICT_POLICY_KEY, resolve_strict_read_errors
from ..sources.snapshot.appvss import VssSettings
from .memory import memory_budget


def backup_settings(policy: Policy, env: Mapping[str, str]) -> dict[str, Any]:
    """The ``ImageBackupOptions`` fields the policy (and, for strict mode, ``env``) decide."""
    value = policy.disk_image_strict_read_errors
    strict = {} if value is None else {STRICT_POLICY_KEY: value}  # unset stays unset: env is the fallback
    try:
        strict_read_errors = resolve_strict_read_errors(strict, env)
    except ValueError as e:
        raise UsageError(f"agent environment: {e}") from None
    return {
        "parallel": policy.parallel_disk_reads or DEFAULT_PARALLEL,
        "read_plan": "auto" if policy.disk_image_bitmap else "full",
        "strict_read_errors": strict_read_errors,
        "change_tracking": policy.disk_image_cbt,
        "verify_every": (
            DEFAULT_VERIFY_EVERY if policy.disk_image_verify_every is None else policy.disk_image_verify_every
        ),
        "stall_seconds": float(policy.disk_image_stall_seconds or DEFAULT_STALL_SECONDS),
        "fail_on_stall": policy.disk_image_fail_on_stall,
        "memory": memory_budget(policy),
        "vss": vss_settings(policy),
    }


def vss_settings(policy: Policy) -> VssSettings:
    """The policy's VSS flags (disk images and, on Windows, files runs)."""
    return VssSettings(
        consistency=policy.vss_consistency_level.value,
        backup_type=policy.vss_backup_type,
        writer_failure=policy.vss_writer_failure,
        exclude_writers=tuple(policy.vss_exclude_writers),
    )


def image_backup_options(
    run: RunAssignment, host: str, platform: str, env: Mapping[str, str] | None = None
) -> ImageBackupOptions:
    """The options of a disk image backup run on this agent."""
    volume = parse_volume(run.disk_source_volume or "")
    if volume.windows and not platform.startswith("win"):
        from .engines import EngineUnavailable

        raise EngineUnavailable(
            f"{volume.text} is a Windows volume; this agent runs on {platform} and images block devices "
            "(/dev/...): run the job on a Windows agent or name a device"
        )
    return ImageBackupOptions(
        source=volume.text,
        host=host,
        tags=(f"job:{run.job_id}",),
        run_id=f"run{run.run_id}",
        **backup_settings(run.policy, os.environ if env is None else env),
    )


def image_restore_options(run: RunAssignment, request: RestoreRequest) -> ImageRestoreOptions:
    """The options of a disk image restore run: the request's target and the policy's workers."""
    policy = run.policy
    target = str(request.target_disk or request.target_path)
    image_format = request.format or run.disk_image_format
    return ImageRestoreOptions(
        target=target,
        snapshot=request.snapshot_id,
        image_format="raw" if request.target_disk or image_format is None else image_format.value,
        workers=policy.restore_parallel_workers or DEFAULT_WORKERS,
        segment_size=(policy.restore_segment_size_mb or DEFAULT_SEGMENT_MB) * MiB,
        verify=request.verify,
        discard=request.discard,
        force=request.force,
        setting_names=REQUEST_NAMES,  # errors name the request's fields, not CLI flags
        memory=memory_budget(policy),
    )


__all__ = ["backup_settings", "image_backup_options", "image_restore_options", "vss_settings"]
