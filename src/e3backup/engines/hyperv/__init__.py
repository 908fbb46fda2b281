"""The ``hyperv`` engine: whole VMs from recovery checkpoints, RCT incrementals, VM restore.

options.py  HyperVOptions, HyperVRestoreOptions, VmChain (the previous run's checkpoint and RCT IDs)
backup.py   run_hyperv: per VM checkpoint -> image snapshot per disk + config -> reference point
chain.py    the chain-break matrix (why a disk is read in full)
restore.py  run_hyperv_restore: a VM's disks as VHDX (or raw) with its configuration, or registered
result.py   HyperVResult / VmResult / DiskResult, HyperVRestoreResult
tags.py     the snapshots' tags

The host (real or simulated) is ``sources.hyperv``; the disks go through ``engines.disk_image``.
"""

from .backup import run_hyperv
from .options import HyperVOptions, HyperVRestoreOptions, VmChain
from .restore import run_hyperv_restore
from .result import DiskResult, HyperVRestoreResult, HyperVResult, VmResult

__all__ = [
    "DiskResult",
    "HyperVOptions",
    "HyperVRestoreOptions",
    "HyperVRestoreResult",
    "HyperVResult",
    "VmChain",
    "VmResult",
    "run_hyperv",
    "run_hyperv_restore",
]
