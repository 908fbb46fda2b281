"""``run_hyperv_restore``: a VM backup (the snapshots of one checkpoint) back onto a host.

    target/Virtual Hard Disks/<disk>.vhdx   each disk, written by our VHDX writer (an AVHDX chain
                                            comes back as one dynamic VHDX), or raw (``.img``)
    target/Virtual Machines/<config files>  the checkpoint's configuration files

then, if asked, the host imports the folder: as a new VM (new ID) or in place of the original
(only with ``confirm_replace``). A single disk can be restored alone (``disk``). Any host: the
snapshots name the VM by ID and name, not by the machine that backed it up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

from ...contract import Cancel, OnEvent, check_cancel
from ...errors import E3Error, UsageError
from ...progress import Progress
from ...repo.repository import Repository, warn_unreadable_snapshot
from ...repo.snapshot import Snapshot
from ...restore.files import RestoreOptions, run_restore
from ...restore.image import ImageRestoreOptions, run_image_restore
from ...sources.hyperv.host import CONFIG_DIR, DISKS_DIR, restored_disk_name
from .backup import _fresh
from .options import HyperVRestoreOptions
from .result import HyperVRestoreResult
from .tags import CONFIG_TAG, HYPERV_TAG, tag_value


def run_hyperv_restore(
    repo: Repository,
    options: HyperVRestoreOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
) -> HyperVRestoreResult:
    cancel = cancel or threading.Event()
    started = time.monotonic()
    snaps = _vm_snapshots(repo, options)
    checkpoint = tag_value(snaps[0].tags, "checkpoint") or ""
    result = HyperVRestoreResult(vm=tag_value(snaps[0].tags, "vm-name") or options.vm, checkpoint_id=checkpoint,
                                 target=os.path.abspath(options.target))
    disks = [s for s in snaps if tag_value(s.tags, "disk")]
    config = [s for s in snaps if CONFIG_TAG in s.tags]
    if options.disk is not None:
        disks = [s for s in disks if options.disk in (tag_value(s.tags, "disk"), _disk_file(s))]
        if not disks:
            raise UsageError(f"VM {options.vm}: no disk {options.disk!r} in checkpoint {checkpoint}")
    ext = ".vhdx" if options.image_format == "vhdx" else ".img"
    os.makedirs(os.path.join(options.target, DISKS_DIR), exist_ok=True)
    for s in disks:
        check_cancel(cancel, "VM restore cancelled")
        path = os.path.join(options.target, DISKS_DIR, restored_disk_name(tag_value(s.tags, "source") or "disk", ext))
        r = run_image_restore(
            _fresh(repo),
            ImageRestoreOptions(target=path, snapshot=s.id, image_format=options.image_format,
                                workers=options.workers),
            progress, on_event, cancel,
        )
        result.disks.append({"identifier": tag_value(s.tags, "disk"), "file": path, "snapshot_id": s.id,
                             "device_size": r.device_size, "bytes_written": r.bytes_written})
    if config and options.disk is None:
        result.config_files = _restore_config(repo, config[-1], os.path.join(options.target, CONFIG_DIR), cancel)
    if options.register != "none":
        assert options.host is not None  # the options refuse it otherwise
        name = options.vm_name or (result.vm + "-restored" if options.register == "new" else result.vm)
        vm = options.host.import_vm(options.target, name, new_id=options.register == "new",
                                    replace=options.register == "replace")
        result.registered_vm = vm.to_json()
    result.duration = time.monotonic() - started
    return result


def _disk_file(s: Snapshot) -> str | None:
    source = tag_value(s.tags, "source")
    return os.path.basename(source.replace("\\", "/")) if source else None


def _vm_snapshots(repo: Repository, options: HyperVRestoreOptions) -> list[Snapshot]:
    """The snapshots of the asked checkpoint (or of the VM's latest), oldest first."""
    want, checkpoint = options.vm.lower(), options.checkpoint
    if options.snapshot and options.snapshot != "latest":
        snap = repo.find_snapshot(options.snapshot)
        if HYPERV_TAG not in snap.tags:
            raise UsageError(f"snapshot {snap.id[:8]} is not part of a Hyper-V backup")
        want, checkpoint = (tag_value(snap.tags, "vm") or "").lower(), tag_value(snap.tags, "checkpoint") or ""
    mine = [
        s for s in repo.snapshots(on_error=warn_unreadable_snapshot)
        if HYPERV_TAG in s.tags
        and want in ((tag_value(s.tags, "vm") or "").lower(), (tag_value(s.tags, "vm-name") or "").lower())
        and (options.hostname is None or s.hostname == options.hostname)
    ]
    if not mine:
        raise UsageError(f"no Hyper-V backup of VM {options.vm!r} in this repository")
    if checkpoint == "latest":
        checkpoint = tag_value(max(mine, key=lambda s: s.time).tags, "checkpoint") or ""
    picked = [s for s in mine if tag_value(s.tags, "checkpoint") == checkpoint]
    if not picked:
        raise UsageError(f"VM {options.vm!r}: no backup from checkpoint {checkpoint!r}")
    return sorted(picked, key=lambda s: s.time)


def _restore_config(repo: Repository, snap: Snapshot, folder: str, cancel: Cancel) -> list[str]:
    """The configuration files, flat in ``folder`` (they were backed up with their host paths)."""
    os.makedirs(folder, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="e3b-vmconfig-", dir=folder) as tmp:
        res = run_restore(_fresh(repo), RestoreOptions(target=tmp, snapshot=snap.id), None, None, cancel)
        if res.failed_files:
            raise E3Error(f"configuration files of snapshot {snap.id[:8]} could not be restored: {res.errors[0]}")
        for dirpath, _, names in os.walk(tmp):
            for name in names:
                dst = os.path.join(folder, name)
                shutil.move(os.path.join(dirpath, name), dst)
                out.append(dst)
    return sorted(out)


__all__ = ["run_hyperv_restore"]
