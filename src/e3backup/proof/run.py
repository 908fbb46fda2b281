"""``run_proof``: prove that a snapshot restores (the run contract; ``docs/proof.md``).

    files snapshot   a random sample restored to scratch and hashed         kind "files"
    image snapshot   restored raw to scratch (every blob read and verified), then
                     bootable (BIOS boot code, or GPT + ESP) and QEMU here: booted   kind "boot"
                     otherwise (a data disk, no QEMU): each partition checked      kind "fsck"
                     nothing to boot and nothing to check (sector 0 zeroed): failed

A damaged repository never gives a passed proof: every error reading it (a corrupt or missing
pack, named by the repository's message) ends the proof as failed with that message.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from ..contract import OnEvent
from ..errors import Cancelled, E3Error
from ..progress import Progress
from ..repo.repository import Repository
from ..repo.snapshot import Snapshot
from ..restore.image import ImageRestoreOptions, run_image_restore
from ..sources.device import open_device
from ..sources.layout import read_layout
from ..sources.stored_image import is_image_snapshot, load_image_snapshot
from .boot import boot_unavailable, prove_boot
from .disk import boot_sector, check_partitions
from .files import prove_files
from .options import ProofOptions
from .result import Check, ProofResult


def run_proof(
    repo: Repository,
    options: ProofOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
) -> ProofResult:
    """Prove ``options.snapshot``; a failed proof is a result (``verdict`` "failed"), not an error.
    Only ``Cancelled`` is raised. The scratch directory is removed whatever happens."""
    cancel = cancel or threading.Event()
    started = time.monotonic()
    Path(options.scratch_dir).mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="e3backup-proof-", dir=options.scratch_dir)
    local = ProofOptions(**{**options.__dict__, "scratch_dir": work})
    result: ProofResult
    try:
        with repo.lock(meanwhile=repo.load_index):
            snap = repo.find_snapshot(options.snapshot)
        result = _prove_image(repo, snap, local, cancel) if is_image_snapshot(snap) else prove_files(
            repo, snap, local, cancel)
    except Cancelled:
        raise
    except E3Error as e:
        result = ProofResult(options.snapshot, "files", failure=str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.duration = time.monotonic() - started
    return result


def _prove_image(repo: Repository, snap: Snapshot, options: ProofOptions, cancel: threading.Event) -> ProofResult:
    image = str(Path(options.scratch_dir) / "disk.img")
    try:
        need = load_image_snapshot(repo, snap).plan.total_bytes  # the sparse scratch image's data
        free = shutil.disk_usage(options.scratch_dir).free
        if need > free:
            return ProofResult(snap.id, "fsck", failure=f"not enough scratch space in {options.scratch_dir} to "
                               f"restore the image: it holds {need} bytes of data, {free} bytes are free (give "
                               "the job a disk_temp_dir with room)")
        restored = run_image_restore(repo, ImageRestoreOptions(target=image, snapshot=snap.id, workers=4),
                                     cancel=cancel)
    except Cancelled:
        raise
    except E3Error as e:
        return ProofResult(snap.id, "fsck", failure=f"the image could not be restored: {e}")
    read_back = Check("restore", True, f"{restored.device_size} bytes restored to scratch, every blob "
                                       f"({restored.chunks_total} chunks) read back and verified")
    dev = open_device(image)
    try:
        layout = read_layout(dev)
        boot = boot_sector(dev, layout)
        if boot.firmware is None and not layout.partitions:
            why = f"the disk cannot boot and holds no partition or file system to check: {boot.why}"
            return ProofResult(snap.id, "boot", [read_back, Check("boot sector", False, boot.why)], failure=why)
        missing = boot_unavailable() if boot.firmware is not None and options.boot else "boot not asked"
        if boot.firmware is not None and not missing:
            result = ProofResult(snap.id, "boot", [read_back, Check("boot sector", True, boot.why)])
            check, result.screenshot = prove_boot(repo, snap.id, options, cancel)
            result.checks.append(check)
            if not check.ok:  # what the file systems say helps to see why
                result.checks += check_partitions(image, dev, layout, options, cancel)
            return result
        result = ProofResult(snap.id, "fsck", [read_back])
        if boot.firmware is None:
            result.checks.append(Check("boot sector", True, f"a data disk, not booted: {boot.why}"))
        elif options.boot:
            result.checks.append(Check("boot", True, f"not tried ({missing}); file systems checked instead"))
        result.checks += check_partitions(image, dev, layout, options, cancel)
        return result
    finally:
        dev.close()


__all__ = ["run_proof"]
