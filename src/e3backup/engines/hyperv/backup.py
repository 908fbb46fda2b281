"""``run_hyperv``: whole-VM backups from recovery checkpoints, RCT incrementals per disk.

Per VM (VMs in parallel, up to ``parallel_vms``; one failing VM does not stop the others):

    sweep our leftover recovery checkpoints (a killed run's) -> RCT on where it is off
    -> recovery checkpoint (application-consistent, else crash-consistent with an event)
    -> per disk: chain decision (previous RCT ID, reference point, parent snapshot, size)
       -> RCT ranges as the image engine's change map -> run_image_backup of the frozen VHDX
    -> the checkpoint's configuration files (files engine) -> convert the checkpoint to a
       reference point (only now: every snapshot is committed) -> drop the previous reference point
    the checkpoint is removed on every other exit path (error, cancel).

Snapshots are tagged ``hyperv``, ``vm:<id>``, ``vm-name:<name>``, ``checkpoint:<id>`` and, per
disk, ``disk:<identifier>``; the next incremental takes as parent the disk's snapshot of the
previous checkpoint, so the repository, not a position in a list, says which data an RCT ID
belongs to.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...contract import Cancel, OnEvent, check_cancel, emit
from ...errors import Cancelled, E3Error
from ...events import Event, EventCode
from ...progress import Progress
from ...repo.repository import Repository, warn_unreadable_snapshot
from ...repo.snapshot import Snapshot
from ...sources.hyperv.disk import CheckpointDiskProvider, VhdxDevice
from ...sources.hyperv.host import (
    CONSISTENCY_APPLICATION,
    CONSISTENCY_CRASH,
    Checkpoint,
    ConsistencyUnavailable,
    FrozenDisk,
    HyperVError,
    HyperVHost,
    RctError,
    VmInfo,
)
from ..disk_image import ImageBackupOptions, run_image_backup
from .chain import DiskPlan, plan_disk, removed_disks
from .options import CHECKPOINT_PREFIX, HyperVOptions, VmChain
from .result import DiskResult, HyperVResult, VmResult
from .tags import checkpoint_tag, disk_tag, vm_tags


def run_hyperv(
    repo: Repository,
    options: HyperVOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
) -> HyperVResult:
    """Back up ``options.vms`` from ``options.host``; ``Cancelled`` (every checkpoint removed)
    once ``cancel`` is set. VM failures are in the result, not raised."""
    cancel = cancel or threading.Event()
    progress = progress or Progress(mode="quiet")
    started = time.monotonic()
    host = options.host
    vms = _select(host.list_vms(), options.vms)
    progress.set_total(sum(d.size for vm in vms for d in vm.disks))
    lock = threading.Lock()
    sink = _locked(on_event, lock)
    result = HyperVResult()
    with ThreadPoolExecutor(max_workers=min(options.parallel_vms, len(vms)), thread_name_prefix="hyperv-vm") as ex:
        futures = [ex.submit(_VmBackup(repo, options, vm, progress, sink, cancel).run) for vm in vms]
        result.vms = [f.result() for f in futures]
    result.duration = time.monotonic() - started
    if cancel.is_set():
        done = [v.name for v in result.vms if not v.error]
        raise Cancelled(
            "Hyper-V backup cancelled; every checkpoint it took was removed"
            + (f"; backed up before the cancel: {', '.join(done)}" if done else "; no VM was backed up")
        )
    return result


def _select(vms: list[VmInfo], wanted: tuple[str, ...]) -> list[VmInfo]:
    by_key = {vm.name: vm for vm in vms} | {vm.id.lower(): vm for vm in vms}
    missing = [w for w in wanted if w not in by_key and w.lower() not in by_key]
    if missing:
        names = ", ".join(vm.name for vm in vms) or "none"
        raise HyperVError(f"no VM named {', '.join(map(repr, missing))} on this host (VMs: {names})")
    return [by_key.get(w) or by_key[w.lower()] for w in wanted]


def _locked(on_event: OnEvent | None, lock: threading.Lock) -> OnEvent:
    def sink(e: Event) -> None:
        if on_event is not None:
            with lock:
                on_event(e)

    return sink


class _DiskProgress(Progress):
    """One disk's counters (the image engine's stall detection reads them), added to the run's."""

    def __init__(self, parent: Progress) -> None:
        super().__init__(mode="quiet")
        self._parent = parent

    def add(self, files: int = 0, nbytes: int = 0, current: str | None = None) -> None:
        super().add(files, nbytes, current)
        self._parent.add(0, nbytes, current)


class _VmBackup:
    def __init__(self, repo: Repository, opts: HyperVOptions, vm: VmInfo, progress: Progress, sink: OnEvent,
                 cancel: Cancel) -> None:
        self.repo, self.opts, self.vm, self.progress, self.sink, self.cancel = repo, opts, vm, progress, sink, cancel
        self.host: HyperVHost = opts.host
        self.chain = opts.chain.get(vm.name) or VmChain()
        self.hostname = opts.hostname or socket.gethostname()
        self.result = VmResult(vm.name, vm.id, self.chain.server_id)

    def emit(self, code: EventCode, message: str, **details: Any) -> None:
        emit(self.sink, code, f"VM {self.vm.name}: {message}", None, vm=self.vm.name, vm_id=self.vm.id, **details)

    def run(self) -> VmResult:
        started = time.monotonic()
        try:
            check_cancel(self.cancel, "cancelled")
            self.emit(EventCode.HYPERV_VM_STARTED, f"backup started ({len(self.vm.disks)} disk(s))")
            self._sweep()
            if self.opts.enable_rct and not self.vm.change_tracking:
                self.host.enable_change_tracking(self.vm.id)
                self.emit(EventCode.HYPERV_RCT_ENABLED, "Resilient Change Tracking turned on")
            checkpoint = self._checkpoint()
            converted = False
            try:
                self._backup(checkpoint)
                check_cancel(self.cancel, "cancelled")
                point = self.host.convert_to_reference_point(checkpoint)
                converted = True
                self.result.rct_ids = dict(point.rct_ids)
                self.emit(EventCode.HYPERV_REFERENCE_POINT_CREATED, f"reference point {point.id} kept for the "
                          "next incremental", reference_point=point.id, rct_ids=point.rct_ids)
                self._drop_previous_points(point.id)
            finally:
                if not converted:
                    self._remove(checkpoint)
        except (Cancelled, KeyboardInterrupt):
            self.result.error = "cancelled"
            self.cancel.set()
        except Exception as e:
            self.result.error = str(e) or type(e).__name__
            self.emit(EventCode.HYPERV_VM_FAILED, f"backup failed: {self.result.error}", error=self.result.error)
        else:
            r = self.result
            self.emit(EventCode.HYPERV_VM_COMPLETED,
                      f"{r.backup_type} backup done: {len(r.disks)} disk(s), {r.changed_bytes} changed bytes, "
                      f"{r.bytes_read} bytes read", backup_type=r.backup_type, changed_bytes=r.changed_bytes,
                      bytes_read=r.bytes_read)
        self.result.duration = time.monotonic() - started
        return self.result

    def _sweep(self) -> None:
        """Our recovery checkpoints still there belong to a killed run: remove them (newest first)."""
        for c in reversed(self.host.recovery_checkpoints(self.vm.id)):
            if c.name.startswith(CHECKPOINT_PREFIX):
                self.host.remove_checkpoint(c)
                self.emit(EventCode.HYPERV_CHECKPOINT_LEFTOVER_REMOVED,
                          f"leftover recovery checkpoint {c.name} of an interrupted backup removed", checkpoint=c.id)

    def _checkpoint(self) -> Checkpoint:
        name = f"{CHECKPOINT_PREFIX}{self.opts.run_id}"
        level = self.opts.consistency
        try:
            c = self.host.create_checkpoint(self.vm.id, level, name)
        except ConsistencyUnavailable as e:
            self.emit(EventCode.HYPERV_CONSISTENCY_FALLBACK, f"{e}; taking a crash-consistent checkpoint instead",
                      reason=str(e), guest_os=self.vm.guest_os)
            level = CONSISTENCY_CRASH
            c = self.host.create_checkpoint(self.vm.id, level, name)
        self.result.checkpoint_id = c.id
        self.result.consistency = c.consistency
        self.emit(EventCode.HYPERV_CHECKPOINT_CREATED, f"{c.consistency}-consistent recovery checkpoint {c.id}",
                  checkpoint=c.id, consistency=c.consistency)
        return c

    def _remove(self, checkpoint: Checkpoint) -> None:
        try:
            self.host.remove_checkpoint(checkpoint)
        except Exception as e:
            self.emit(EventCode.HYPERV_VM_FAILED, f"could not remove checkpoint {checkpoint.id} ({e}); the next "
                      "backup removes it", checkpoint=checkpoint.id)
            return
        self.emit(EventCode.HYPERV_CHECKPOINT_REMOVED, f"checkpoint {checkpoint.id} removed", checkpoint=checkpoint.id)

    def _drop_previous_points(self, keep: str) -> None:
        """The reference point of the previous backup is no longer needed (ours: it holds our
        previous RCT IDs); other products' reference points are left alone."""
        previous = set(self.chain.rct_ids.values())
        if not previous:
            return
        for p in self.host.reference_points(self.vm.id):
            if p.id != keep and previous & set(p.rct_ids.values()):
                self.host.remove_reference_point(p)

    def _backup(self, checkpoint: Checkpoint) -> None:
        files = self.host.checkpoint_files(checkpoint)
        points = self.host.reference_points(self.vm.id) if self.opts.enable_rct else []
        for ident in removed_disks(self.chain, files.disks):
            self.emit(EventCode.HYPERV_RCT_CHAIN_BROKEN, f"disk {ident} was removed since the last backup",
                      disk=ident, reason="disk removed")
        parents = self._parents()
        lookup = self.repo
        if parents:  # the parents' image documents are read through the index
            lookup = _fresh(self.repo)
            lookup.load_index()
        for disk in files.disks:
            check_cancel(self.cancel, "cancelled")
            plan = plan_disk(lookup, disk, self.chain, self.opts.enable_rct, points, parents.get(disk.identifier))
            self.result.disks.append(self._disk(checkpoint, disk, plan))
        if files.config:
            self.result.config_snapshot_id = self._config(checkpoint, list(files.config))
        incremental = bool(self.result.disks) and all(d.backup_type == "incremental" for d in self.result.disks)
        self.result.backup_type = "incremental" if incremental else "full"

    def _parents(self) -> dict[str, Snapshot]:
        """The previous checkpoint's disk snapshots, by disk identifier."""
        if not self.chain.last_checkpoint_id:
            return {}
        want = {checkpoint_tag(self.chain.last_checkpoint_id), f"vm:{self.vm.id}"}
        out: dict[str, Snapshot] = {}
        for s in self.repo.snapshots(on_error=warn_unreadable_snapshot):
            if want <= set(s.tags) and s.hostname == self.hostname:
                for t in s.tags:
                    if t.startswith("disk:"):
                        out[t[5:]] = s
        return out

    def _disk(self, checkpoint: Checkpoint, disk: FrozenDisk, plan: DiskPlan) -> DiskResult:
        r = DiskResult(disk.identifier, disk.vm_path, disk.size)
        ranges: list[tuple[int, int]] | None = None
        reason = plan.reason
        if plan.rct_id is not None and plan.parent is not None:
            try:
                ranges = self.host.changed_ranges(checkpoint, disk, plan.rct_id)
            except RctError as e:
                reason = f"{e.reason}: {e}"
        if reason:
            r.chain_broken = reason
            self.emit(EventCode.HYPERV_RCT_CHAIN_BROKEN, f"disk {disk.vm_path}: full backup, the RCT chain is "
                      f"broken: {reason}", disk=disk.identifier, path=disk.vm_path, reason=reason)
        r.backup_type = "incremental" if ranges is not None else "full"
        r.changed_bytes = sum(n for _, n in ranges) if ranges is not None else disk.size
        tags = (*vm_tags(self.vm.id, self.vm.name), checkpoint_tag(checkpoint.id), disk_tag(disk.identifier),
                f"hyperv-type:{r.backup_type}", *self.opts.tags)
        with tempfile.TemporaryDirectory(prefix="e3b-rct-") as tmp:
            change_map = None
            if ranges is not None:
                change_map = os.path.join(tmp, "changes.json")
                with open(change_map, "w", encoding="utf-8") as f:
                    json.dump([[o, n] for o, n in ranges], f)
            opts = ImageBackupOptions(
                source=disk.vm_path,
                parent=plan.parent.id if ranges is not None and plan.parent is not None else None,
                changed_extents=change_map,
                change_tracking=False,  # RCT is this disk's change tracking
                read_plan=self.opts.read_plan,
                parallel=self.opts.read_parallel,
                chunk_size=self.opts.chunk_size,
                tags=tags,
                host=self.hostname,
                upload_connections=self.opts.upload_connections,
                run_id=self.opts.run_id,
            )
            image = run_image_backup(
                _fresh(self.repo), opts, _DiskProgress(self.progress), self.sink, self.cancel,
                provider=CheckpointDiskProvider(disk.path, checkpoint.id), opener=_open_frozen,
            )
        r.snapshot_id, r.bytes_read, r.bytes_added = image.snapshot_id, image.bytes_read, image.bytes_added
        return r

    def _config(self, checkpoint: Checkpoint, paths: list[str]) -> str:
        from ..files import BackupOptions, run_backup

        tags = [*vm_tags(self.vm.id, self.vm.name), checkpoint_tag(checkpoint.id), "hyperv-config", *self.opts.tags]
        res = run_backup(_fresh(self.repo), BackupOptions(paths=paths, tags=tags, host=self.hostname),
                         None, self.sink, self.cancel)
        return res.snapshot_id


def _open_frozen(path: str) -> VhdxDevice:
    try:
        return VhdxDevice(path)
    except E3Error as e:
        raise ValueError(str(e)) from e


def _fresh(repo: Repository) -> Repository:
    """A repository object of its own for one engine call: each loads the index and takes its
    own lock, and two must not load one index twice at once (VMs run in parallel)."""
    other = Repository(repo.store, repo.key, repo.config, repo.key_id)
    other.cache, other.pack_size = repo.cache, repo.pack_size
    return other


OpenFrozen = Callable[[str], VhdxDevice]

__all__ = ["CONSISTENCY_APPLICATION", "run_hyperv"]
