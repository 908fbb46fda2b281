"""The agent's Hyper-V side: which host (``hyperv_host``; ``local`` on Windows), its VMs for the
disk report (discovery, with retries), and the ``hyperv`` engine's options and outcome.

Options come from the job (``hyperv_config``: VMs, ``enable_rct``, ``consistency_level``), its
policy (``parallel_vms``, ``parallel_disk_reads``, ``disk_image_bitmap``) and the server's chain
state (``hyperv_vms``: last checkpoint and RCT IDs per disk identifier); the outcome carries one
``HyperVVMResult`` per VM to ``update_run``, which advances the server's chain per VM.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..api.agent import HyperVVmInfo
from ..api.common import BackupType, RunStatus
from ..api.jobs import HyperVVMResult
from ..errors import E3Error
from .config import AgentConfig

log = logging.getLogger(__name__)
DISCOVERY_ATTEMPTS = 3
DISCOVERY_BACKOFF = 2.0


def host_spec(config: AgentConfig, platform: str) -> str | None:
    """The Hyper-V host this agent backs up, or None (no ``hyperv`` engine here)."""
    if config.hyperv_host:
        return config.hyperv_host
    return "local" if platform == "win32" else None


def open_agent_host(config: AgentConfig, platform: str) -> Any:
    from ..sources.hyperv.open import open_host
    from .engines import EngineUnavailable

    spec = host_spec(config, platform)
    if spec is None:
        raise EngineUnavailable("no Hyper-V host on this agent: Hyper-V needs Windows, or hyperv_host: sim:DIR "
                           "in the agent config")
    return open_host(spec)


def discover(config: AgentConfig, platform: str, sleep: Callable[[float], object] | None = None,
             ) -> tuple[list[HyperVVmInfo] | None, str | None]:
    """The host's VMs for the disk report: (None, None) without a host; (None, why) when listing
    failed ``DISCOVERY_ATTEMPTS`` times (a busy WMI service answers the next try)."""
    if host_spec(config, platform) is None:
        return None, None
    wait = sleep or threading.Event().wait
    error = ""
    for attempt in range(DISCOVERY_ATTEMPTS):
        try:
            vms = open_agent_host(config, platform).list_vms()
            return [HyperVVmInfo.model_validate(vm.to_json()) for vm in vms], None
        except E3Error as e:
            error = str(e)
            log.warning("listing Hyper-V VMs failed (attempt %d of %d): %s", attempt + 1, DISCOVERY_ATTEMPTS, e)
            if attempt + 1 < DISCOVERY_ATTEMPTS:
                wait(DISCOVERY_BACKOFF * (attempt + 1))
    return None, f"listing the Hyper-V VMs failed {DISCOVERY_ATTEMPTS} times: {error}"


def hyperv_options(ctx: Any) -> Any:
    """``JobContext`` -> ``HyperVOptions``."""
    from ..engines.hyperv import HyperVOptions, VmChain

    run = ctx.run
    cfg = run.hyperv_config
    if cfg is None:
        from .engines import EngineUnavailable

        raise EngineUnavailable("a hyperv job without hyperv_config")
    p = run.policy
    return HyperVOptions(
        host=open_agent_host(ctx.config, ctx.platform),
        vms=tuple(cfg.vms),
        enable_rct=cfg.enable_rct and p.disk_image_cbt,
        consistency=cfg.consistency_level.value,
        parallel_vms=p.parallel_vms or 2,
        read_parallel=p.parallel_disk_reads or 2,
        read_plan="auto" if p.disk_image_bitmap else "full",
        chain={v.vm_name: VmChain(v.vm_guid, v.last_checkpoint_id, dict(v.last_rct_ids), v.vm_id)
               for v in run.hyperv_vms},
        hostname=ctx.host,
        tags=(f"job:{run.job_id}",),
    )


def hyperv_outcome(result: Any) -> Any:
    """Every VM backed up: SUCCESS; some failed: WARNING (the others are good); all: FAILED."""
    from .engines import Outcome

    failed = result.failed
    status = RunStatus.SUCCESS if not failed else RunStatus.FAILED if len(failed) == len(result.vms) else \
        RunStatus.WARNING
    done = [v for v in result.vms if not v.error]
    full = any(v.backup_type == "full" for v in done)
    snapshot = next((d.snapshot_id for v in done for d in v.disks if d.snapshot_id), None)
    return Outcome(
        status,
        snapshot_id=snapshot,
        backup_type=(BackupType.FULL if full else BackupType.INCREMENTAL) if done else None,
        summary=result.summary_json(),
        error="; ".join(f"VM {v.name}: {v.error}" for v in failed) or None,
        totals={"hyperv_results": [HyperVVMResult.model_validate(v.api_json()) for v in result.vms]},
    )


def hyperv_restore_options(ctx: Any) -> Any:
    from ..engines.hyperv import HyperVRestoreOptions

    req = ctx.restore
    host = open_agent_host(ctx.config, ctx.platform) if req.register_vm != "none" else None
    return HyperVRestoreOptions(
        target=req.target_path, vm=req.vm or "", snapshot=None if req.vm else req.snapshot_id,
        checkpoint=req.checkpoint_id or "latest", disk=req.disk,
        image_format=req.format.value if req.format else "vhdx",
        register=req.register_vm, confirm_replace=req.confirm_replace, host=host, vm_name=req.vm_name,
        workers=ctx.run.policy.restore_parallel_workers or 8,
    )


def hyperv_restore_outcome(result: Any) -> Any:
    from .engines import Outcome

    return Outcome(RunStatus.SUCCESS, summary=result.summary_json())


__all__ = ["discover", "host_spec", "hyperv_options", "hyperv_outcome", "hyperv_restore_options",
           "hyperv_restore_outcome", "open_agent_host"]
