"""Options of a disk image backup; the defaults are what an unattended agent run should use.

Policy flags (the job's policy JSON, names from the seeds) fill what the command line leaves
unset: ``parallel_disk_reads`` (reader threads) and ``disk_image_strict_read_errors`` (with the
``AGENT_DISK_IMAGE_STRICT_READ_ERRORS`` environment variable as the fallback).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import UsageError
from ...sources.reader import resolve_strict_read_errors

MiB = 1 << 20

# Measured (docs/disk-image.md): 1, 2 and 4 MiB run within a few per cent of each other on a
# mixed image; 4 MiB halves the per-chunk work of 2 MiB (hash calls, index entries, content IDs
# in the tree) and an incremental re-reads at most 4 MiB per scattered change. See the doc.
DEFAULT_CHUNK_SIZE = 4 * MiB
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * MiB
CHUNK_ALIGN = 4096  # every logical sector size divides it

PARALLEL_POLICY_KEY = "parallel_disk_reads"
# Two readers keep one disk busy (queue depth 2) without thrashing a spinning disk.
DEFAULT_PARALLEL = 2
MAX_PARALLEL = 32

READ_PLANS = ("auto", "full")
SNAPSHOT_MODES = ("auto", "lvm", "none")


@dataclass(frozen=True)
class ImageBackupOptions:
    source: str
    parent: str | None = None  # snapshot ID/prefix; None = latest image of this host and source
    changed_extents: str | None = None  # change-map file: JSON list of [offset, length]
    read_plan: str = "auto"  # "auto": used extents of known file systems; "full": every byte
    parallel: int | None = None  # reader threads; None: policy parallel_disk_reads, else 2
    strict_read_errors: bool | None = None  # None: policy, then the environment variable
    snapshot: str = "auto"  # snapshot provider: auto, lvm, none
    chunk_size: int = DEFAULT_CHUNK_SIZE
    tags: tuple[str, ...] = ()
    host: str | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)
    # hash + zstd + AES run in these threads; one per core (they release the GIL).
    save_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    # Pack uploads in flight; each holds a ~16 MiB pack, so this bounds memory too.
    upload_connections: int = 2
    # Chunks waiting between readers and savers (each holds a chunk-sized buffer).
    queue_depth: int = 4
    # zstd level 1: ~1.5x the throughput of level 3 for a few per cent more bytes on disk data.
    compression_level: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    time_ns: int | None = None

    def __post_init__(self) -> None:
        if self.read_plan not in READ_PLANS:
            raise UsageError(f"--read-plan must be one of {', '.join(READ_PLANS)}, not {self.read_plan!r}")
        if self.snapshot not in SNAPSHOT_MODES:
            raise UsageError(f"--snapshot must be one of {', '.join(SNAPSHOT_MODES)}, not {self.snapshot!r}")
        check_chunk_size(self.chunk_size)
        if self.parallel is not None and not 1 <= self.parallel <= MAX_PARALLEL:
            raise UsageError(f"--parallel must be between 1 and {MAX_PARALLEL}")

    def readers(self) -> int:
        if self.parallel is not None:
            return self.parallel
        value = self.policy.get(PARALLEL_POLICY_KEY)
        if value is None:
            return DEFAULT_PARALLEL
        try:
            n = int(value)
        except (TypeError, ValueError) as e:
            raise UsageError(f"policy {PARALLEL_POLICY_KEY}: expected an integer, got {value!r}") from e
        return min(max(n, 1), MAX_PARALLEL)

    def strict(self, env: Mapping[str, str] | None = None) -> bool:
        if self.strict_read_errors is not None:
            return self.strict_read_errors
        try:
            return resolve_strict_read_errors(self.policy, env)
        except ValueError as e:
            raise UsageError(str(e)) from e


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
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PARALLEL",
    "PARALLEL_POLICY_KEY",
    "ImageBackupOptions",
    "check_chunk_size",
    "parse_size",
]
