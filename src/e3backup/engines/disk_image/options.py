"""Options of a disk image backup: typed, resolved by the caller (the run contract).

The agent resolves the job's policy (``parallel_disk_reads``, ``disk_image_bitmap``,
``disk_image_strict_read_errors`` with ``AGENT_DISK_IMAGE_STRICT_READ_ERRORS`` as its fallback,
``disk_image_cbt``, the stall settings) and the CLI its flags into these fields; the engine reads
no policy and no environment. The defaults are what an unattended run should use. Errors name the
setting, not a command-line flag, because the agent is a caller too.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from ...budget import MemoryBudget
from ...errors import UsageError
from ...sources.snapshot.appvss import VssSettings

MiB = 1 << 20

# Measured (docs/disk-image.md): 1, 2 and 4 MiB back up a full disk within a few per cent of
# each other, and an incremental re-reads and re-stores a whole chunk per scattered change: with
# change tracking 1 MiB chunks read and add a third of what 4 MiB chunks do. A new chain gets the
# smallest of these sizes that keeps the disk within AUTO_MAX_CHUNKS chunks (the image's content
# IDs are one tree blob that restic loads whole: 512 Ki IDs are ~35 MB); a chain keeps its
# parent's chunk size unless one is asked for (another size makes a full read).
AUTO_CHUNK_SIZES = (1 * MiB, 2 * MiB, 4 * MiB)
AUTO_MAX_CHUNKS = 512 * 1024
DEFAULT_CHUNK_SIZE = AUTO_CHUNK_SIZES[-1]  # the largest: for disks beyond 1 TiB
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * MiB
CHUNK_ALIGN = 4096  # every logical sector size divides it

# Two readers keep one disk busy (queue depth 2) without thrashing a spinning disk.
DEFAULT_PARALLEL = 2
MAX_PARALLEL = 64  # the policy's range (``api.jobs.Policy.parallel_disk_reads``): the two agree
# A read stream silent this long (outside the tail) gives DISK_IMAGE_STALLED; policy
# ``disk_image_stall_seconds``. Five minutes: the seeds' "stalled" threshold of the tail.
DEFAULT_STALL_SECONDS = 300.0

# Every 10th incremental reads every used block and checks what change tracking would have reused
# (policy disk_image_verify_every; 0 = never): writes behind the file system's back show up there.
DEFAULT_VERIFY_EVERY = 10
MAX_VERIFY_EVERY = 1000

READ_PLANS = ("auto", "full")
SNAPSHOT_MODES = ("auto", "lvm", "vss", "none")


@dataclass(frozen=True)
class ImageBackupOptions:
    source: str
    parent: str | None = None  # snapshot ID/prefix; None = latest image of this host and source
    changed_extents: str | None = None  # change-map file: JSON list of [offset, length]
    read_plan: str = "auto"  # "auto": used blocks of known file systems (policy disk_image_bitmap); "full"
    parallel: int = DEFAULT_PARALLEL  # reader threads (policy parallel_disk_reads)
    strict_read_errors: bool = False  # fail on the first read error instead of storing zeros
    change_tracking: bool = True  # policy disk_image_cbt: use change tracking where there is one
    verify_every: int = DEFAULT_VERIFY_EVERY  # policy disk_image_verify_every; 0: never
    stall_seconds: float = DEFAULT_STALL_SECONDS  # no progress this long before the tail: DISK_IMAGE_STALLED
    fail_on_stall: bool = False  # policy disk_image_fail_on_stall: a stall fails the run
    snapshot: str = "auto"  # snapshot provider: auto, lvm, vss, none
    vss: VssSettings = field(default_factory=VssSettings)  # Windows volumes: policy vss_*
    chunk_size: int | None = None  # None: the parent's, or ``auto_chunk_size`` for a new chain
    tags: tuple[str, ...] = ()
    host: str | None = None
    # hash + zstd + AES run in these threads; one per core (they release the GIL).
    save_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    # Pack uploads in flight; each holds a ~16 MiB pack, so this bounds memory too.
    upload_connections: int = 2
    # Chunks waiting between readers and savers (each holds a chunk-sized buffer).
    queue_depth: int = 4
    # zstd level 1: ~1.5x the throughput of level 3 for a few per cent more bytes on disk data.
    compression_level: int = 1
    # --max-memory / policy max_memory_mb: may lower the queue, savers and readers, and keep packs
    # in temporary files (``sizing``)
    memory: MemoryBudget = field(default_factory=MemoryBudget)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    time_ns: int | None = None

    def __post_init__(self) -> None:
        if self.read_plan not in READ_PLANS:
            raise UsageError(f"read plan must be one of {', '.join(READ_PLANS)}, not {self.read_plan!r}")
        if self.snapshot not in SNAPSHOT_MODES:
            raise UsageError(f"snapshot mode must be one of {', '.join(SNAPSHOT_MODES)}, not {self.snapshot!r}")
        if self.chunk_size is not None:
            check_chunk_size(self.chunk_size)
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise UsageError(f"parallel disk reads must be between 1 and {MAX_PARALLEL}, not {self.parallel}")
        if not 0 <= self.verify_every <= MAX_VERIFY_EVERY:
            raise UsageError(f"verify_every must be between 0 and {MAX_VERIFY_EVERY}, not {self.verify_every}")
        if not self.stall_seconds > 0:
            raise UsageError(f"stall interval must be positive, not {self.stall_seconds}")


def auto_chunk_size(device_size: int) -> int:
    """The chunk size of a new chain on a device of ``device_size`` bytes (see AUTO_CHUNK_SIZES)."""
    for size in AUTO_CHUNK_SIZES:
        if device_size <= size * AUTO_MAX_CHUNKS:
            return size
    return DEFAULT_CHUNK_SIZE


def check_chunk_size(size: int) -> int:
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE or size % CHUNK_ALIGN:
        raise UsageError(
            f"chunk size {size} must be a multiple of {CHUNK_ALIGN} between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
        )
    return size


def parse_size(text: str) -> int:
    """``4M``, ``4MiB``, ``1024k``, ``2097152`` -> bytes (binary units)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    digits = t[:-1] if mult != 1 else t
    try:
        return int(digits) * mult
    except ValueError as e:
        raise UsageError(f"invalid size {text!r} (examples: 4M, 1024K, 2097152)") from e


__all__ = [
    "AUTO_CHUNK_SIZES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PARALLEL",
    "DEFAULT_STALL_SECONDS",
    "DEFAULT_VERIFY_EVERY",
    "MAX_PARALLEL",
    "ImageBackupOptions",
    "auto_chunk_size",
    "check_chunk_size",
    "parse_size",
]
