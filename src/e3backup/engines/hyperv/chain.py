"""The chain-break matrix: may this disk be backed up from RCT ranges, and if not, why not.

A disk's incremental needs, in this order (the first that fails is the reason for a full backup,
given in ``HYPERV_RCT_CHAIN_BROKEN``):

    RCT on for the job                  else full, no event (the job asked for full reads)
    an RCT ID for this disk identifier  none while the VM has a chain: "disk added"; none at all:
                                        the VM's first backup (full, no event)
    a reference point holding that ID   "reference point missing on the host"
    the disk's snapshot of the previous checkpoint in the repository
                                        "no snapshot of the disk from checkpoint X"
    the same virtual size as that snapshot
                                        "disk resized"
    the host's changed ranges           RctError: ERROR_VHD_INVALID_CHANGE_TRACKING_ID,
                                        ..._CHANGE_TRACKING_DISABLED, ..._MISSING_..._INFORMATION
                                        (asked by the engine, after this plan)

A disk the chain knows and the checkpoint no longer has is reported as "disk removed".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...errors import E3Error
from ...repo.repository import Repository
from ...repo.snapshot import Snapshot
from ...sources.hyperv.host import FrozenDisk, ReferencePoint
from ...sources.stored_image import load_image_snapshot
from .options import VmChain


@dataclass(frozen=True)
class DiskPlan:
    rct_id: str | None = None  # ask the host for the ranges since this ID; None: full
    parent: Snapshot | None = None
    reason: str | None = None  # why a chain that should be there is not (None: nothing to report)


def plan_disk(
    repo: Repository,
    disk: FrozenDisk,
    chain: VmChain,
    enable_rct: bool,
    points: list[ReferencePoint],
    parent: Snapshot | None,
) -> DiskPlan:
    if not enable_rct:
        return DiskPlan()
    rct_id = chain.rct_ids.get(disk.identifier)
    if rct_id is None:
        return DiskPlan(reason="disk added since the last backup" if chain.rct_ids else None)
    if not any(p.rct_ids.get(disk.identifier) == rct_id for p in points):
        return DiskPlan(reason=f"reference point missing on the host (RCT ID {rct_id})")
    if parent is None:
        return DiskPlan(reason=f"no snapshot of the disk from checkpoint {chain.last_checkpoint_id} in the repository")
    try:
        size = load_image_snapshot(repo, parent).device_size
    except E3Error as e:
        return DiskPlan(reason=f"snapshot {parent.id[:8]} of the disk cannot be read: {e}")
    if size != disk.size:
        return DiskPlan(reason=f"disk resized ({size} -> {disk.size} bytes)")
    return DiskPlan(rct_id, parent)


def removed_disks(chain: VmChain, disks: Iterable[FrozenDisk]) -> list[str]:
    present = {d.identifier for d in disks}
    return [ident for ident in chain.rct_ids if ident not in present]


__all__ = ["DiskPlan", "plan_disk", "removed_disks"]
