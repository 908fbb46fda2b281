"""Options and result of an image restore (``run_image_restore``): typed, resolved by the caller.

The agent takes ``workers`` and ``segment_size`` from the job policy (``restore_parallel_workers``,
``restore_segment_size_mb``), the CLI from ``--workers`` / ``--segment-size-mb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...budget import MemoryBudget
from ...errors import UsageError
from ...formats.factory import FORMATS
from ...formats.vhdx.layout import VhdxOptions
from ...repo.snapshot_filter import SnapshotFilter
from ..target import CLI_NAMES, SettingNames

MiB = 1 << 20
DEFAULT_WORKERS = 8
DEFAULT_SEGMENT_MB = 32
MAX_WORKERS = 64  # the policy's range of ``restore_parallel_workers``


@dataclass(frozen=True)
class ImageRestoreOptions:
    target: str
    snapshot: str = "latest"
    """Snapshot ID, unique prefix or ``latest``: the newest image snapshot that ``select`` accepts."""
    select: SnapshotFilter | None = None
    """What narrows ``latest`` (``--host``, ``--tag``, ``--path``); image snapshots only, always."""
    image_format: str = "raw"
    workers: int = DEFAULT_WORKERS
    """Policy ``restore_parallel_workers``."""
    segment_size: int = DEFAULT_SEGMENT_MB * MiB
    """Policy ``restore_segment_size_mb``; rounded to whole chunks."""
    verify: bool = False
    discard: bool = False
    """Block devices: discard zero ranges instead of writing zeros (the device must read discarded
    sectors as zero — true for loop devices and most SSDs with deterministic TRIM)."""
    force: bool = False
    size_limit: int | None = None
    """Block devices: restore only the first ``size_limit`` bytes, a whole number of chunks (a disk
    smaller than the source that still holds every partition: the recovery console). The chunks
    past it are not written; the caller makes sure they hold nothing but zeros and the backup GPT,
    which it rewrites at the smaller disk's end."""
    vhdx_options: VhdxOptions | None = None
    setting_names: SettingNames = CLI_NAMES
    """How errors name the settings: the CLI's flags (default) or the agent's request fields."""
    memory: MemoryBudget = field(default_factory=MemoryBudget)
    """``--max-memory`` / policy ``max_memory_mb``: bounds the ranges, scratch and decode buffers
    held at once (``sizing``)."""

    def __post_init__(self) -> None:
        if self.image_format not in FORMATS:
            raise UsageError(f"unknown image format {self.image_format!r}, expected one of {', '.join(FORMATS)}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise UsageError(f"restore workers must be between 1 and {MAX_WORKERS}, not {self.workers}")
        if self.segment_size < 1:
            raise UsageError("the restore segment size must be positive")
        if self.size_limit is not None and (self.size_limit < 1 or self.image_format != "raw"):
            raise UsageError("a restore size limit must be positive and needs the raw format")


@dataclass
class ImageRestoreResult:
    snapshot_id: str = ""
    target: str = ""
    image_format: str = "raw"
    block_device: bool = False
    file_name: str = ""
    device_size: int = 0
    chunk_size: int = 0
    plan_bytes: int = 0
    chunks_total: int = 0
    chunks_written: int = 0
    chunks_zero: int = 0
    bytes_written: int = 0
    bytes_zeroed: int = 0
    bytes_fetched: int = 0
    pack_reads: int = 0
    workers: int = 0
    segment_size: int = 0
    verified: bool = False
    chunks_verified: int = 0
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary_json(self) -> dict[str, object]:
        return {
            "message_type": "summary",
            "snapshot_id": self.snapshot_id,
            "target": self.target,
            "format": self.image_format,
            "block_device": self.block_device,
            "file_name": self.file_name,
            "device_size": self.device_size,
            "chunk_size": self.chunk_size,
            "plan_bytes": self.plan_bytes,
            "chunks_total": self.chunks_total,
            "chunks_written": self.chunks_written,
            "chunks_zero": self.chunks_zero,
            "bytes_written": self.bytes_written,
            "bytes_zeroed": self.bytes_zeroed,
            "bytes_fetched": self.bytes_fetched,
            "pack_reads": self.pack_reads,
            "workers": self.workers,
            "segment_size": self.segment_size,
            "verified": self.verified,
            "chunks_verified": self.chunks_verified,
            "duration": round(self.duration, 3),
        }


__all__ = ["DEFAULT_SEGMENT_MB", "DEFAULT_WORKERS", "MAX_WORKERS", "ImageRestoreOptions", "ImageRestoreResult", "MiB"]
