"""Options of a Hyper-V backup (``run_hyperv``) and restore: typed, resolved by the caller.

The agent resolves the job's ``hyperv_config`` (VMs, ``enable_rct``, ``consistency_level``), the
policy (``parallel_vms``, ``parallel_disk_reads``, ``disk_image_bitmap``) and the server's chain
state (``hyperv_vms``); the CLI its flags and its state file. The engine reads no policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import UsageError
from ...sources.hyperv.host import CONSISTENCY_APPLICATION, CONSISTENCY_CRASH, HyperVHost
from ..disk_image.options import DEFAULT_PARALLEL, MAX_PARALLEL, check_chunk_size

DEFAULT_PARALLEL_VMS = 2
MAX_PARALLEL_VMS = 16
CHECKPOINT_PREFIX = "e3backup-"  # our recovery checkpoints' names: the start-of-run sweep removes only these


@dataclass(frozen=True)
class VmChain:
    """What the previous successful backup of a VM left: the checkpoint whose snapshots hold its
    disks, and the RCT ID of each disk (by disk identifier) at that checkpoint."""

    vm_guid: str = ""
    last_checkpoint_id: str = ""
    rct_ids: Mapping[str, str] = field(default_factory=dict)
    server_id: int | None = None  # the server's hyperv_vms row (agent runs)


@dataclass(frozen=True)
class HyperVOptions:
    host: HyperVHost
    vms: tuple[str, ...]  # names or IDs on the host
    enable_rct: bool = True  # hyperv_config.enable_rct: incrementals from RCT; off: every disk read whole
    consistency: str = CONSISTENCY_APPLICATION  # hyperv_config.consistency_level
    parallel_vms: int = DEFAULT_PARALLEL_VMS  # policy parallel_vms
    read_parallel: int = DEFAULT_PARALLEL  # readers per disk (policy parallel_disk_reads)
    read_plan: str = "auto"  # "auto": the guest file systems' used blocks; "full": every byte
    chain: Mapping[str, VmChain] = field(default_factory=dict)  # by VM name
    hostname: str | None = None  # recorded in the snapshots (default: this machine's)
    tags: tuple[str, ...] = ()
    chunk_size: int | None = None  # None: each disk's parent's, or the image engine's choice
    upload_connections: int = 2
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if not self.vms:
            raise UsageError("no virtual machines to back up")
        if len(set(self.vms)) != len(self.vms):
            raise UsageError("a virtual machine is named twice")
        if self.consistency not in (CONSISTENCY_APPLICATION, CONSISTENCY_CRASH):
            raise UsageError(f"consistency level must be application or crash, not {self.consistency!r}")
        if not 1 <= self.parallel_vms <= MAX_PARALLEL_VMS:
            raise UsageError(f"parallel VMs must be between 1 and {MAX_PARALLEL_VMS}, not {self.parallel_vms}")
        if not 1 <= self.read_parallel <= MAX_PARALLEL:
            raise UsageError(f"parallel disk reads must be between 1 and {MAX_PARALLEL}, not {self.read_parallel}")
        if self.read_plan not in ("auto", "full"):
            raise UsageError(f"read plan must be auto or full, not {self.read_plan!r}")
        if self.chunk_size is not None:
            check_chunk_size(self.chunk_size)


@dataclass(frozen=True)
class HyperVRestoreOptions:
    """Restore one VM backup (the snapshots of one checkpoint) into ``target`` (a folder on the
    host): every disk, or ``disk`` only, as ``image_format`` (vhdx or raw), with the VM's
    configuration; ``register`` then imports it (``new`` ID or ``replace`` the original)."""

    target: str
    vm: str = ""  # VM name or ID as backed up ("": the VM of ``snapshot``)
    checkpoint: str = "latest"  # the checkpoint ID the snapshots are tagged with, or latest
    snapshot: str | None = None  # any snapshot of the VM backup: picks VM and checkpoint
    disk: str | None = None  # one disk identifier (or its file name); None: all
    image_format: str = "vhdx"
    register: str = "none"  # none, new, replace
    confirm_replace: bool = False
    host: HyperVHost | None = None  # where to register (needed unless register is none)
    vm_name: str | None = None  # the registered VM's name (default: the original's, "-restored" for new)
    hostname: str | None = None  # only snapshots of this machine (default: any)
    workers: int = 8

    def __post_init__(self) -> None:
        if not self.vm and not self.snapshot:
            raise UsageError("which VM backup to restore: give a VM or a snapshot of it")
        if self.image_format not in ("vhdx", "raw"):
            raise UsageError(f"disk format must be vhdx or raw, not {self.image_format!r}")
        if self.register not in ("none", "new", "replace"):
            raise UsageError(f"register must be none, new or replace, not {self.register!r}")
        if self.register == "replace" and not self.confirm_replace:
            raise UsageError("replacing the original VM needs confirmation (confirm_replace)")
        if self.register != "none" and self.host is None:
            raise UsageError("registering the restored VM needs a Hyper-V host")
        if self.register != "none" and (self.disk is not None or self.image_format != "vhdx"):
            raise UsageError("only a whole VM restored as VHDX can be registered")


__all__ = [
    "CHECKPOINT_PREFIX",
    "DEFAULT_PARALLEL_VMS",
    "MAX_PARALLEL_VMS",
    "HyperVOptions",
    "HyperVRestoreOptions",
    "VmChain",
]
