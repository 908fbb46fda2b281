"""What an image backup reports at the end (the ``summary`` JSON line)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ImageBackupResult:
    snapshot_id: str = ""
    parent_id: str = ""
    source: str = ""
    device: str = ""  # what was read: the snapshot device, or the source itself
    snapshot_provider: str = ""
    file_name: str = ""  # the disk's name in the snapshot tree
    device_size: int = 0
    chunk_size: int = 0
    plan_bytes: int = 0  # bytes the read plan covers
    bytes_read: int = 0  # bytes actually read from the device into chunks
    tracking_bytes_read: int = 0  # read by change tracking before that (MFT, inode tables, metadata digests)
    bytes_added: int = 0  # plaintext bytes of new blobs
    bytes_stored: int = 0  # encrypted bytes of new blobs
    chunks_total: int = 0
    chunks_read: int = 0  # chunks read from the device
    chunks_reused: int = 0  # parent's blob taken without reading (change map)
    chunks_zero: int = 0  # all zero: known-zero by the plan, or read as zeros
    chunks_known: int = 0  # read, but already in the repository (deduplicated)
    chunks_new: int = 0  # read and stored now
    full: bool = True  # no usable parent: every planned chunk was read and judged on its own
    change_map_used: bool = False
    # per partition: {"partition", "method", "reason", "bytes_planned"} (engines/disk_image/tracking.py)
    change_tracking: list[dict[str, Any]] = field(default_factory=list)
    # the disk's partitions as imaged: {"index", "name", "filesystem", "start", "size"} (restore points)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    recovered_bytes: int = 0  # unreadable bytes stored as zeros (best effort)
    consistency: str = ""  # VSS: "application" or "crash"
    warnings: list[str] = field(default_factory=list)  # e.g. a failed VSS writer: the run is a warning
    duration: float = 0.0
    event_counts: dict[str, int] = field(default_factory=dict)

    def summary_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration"] = round(self.duration, 3)
        return {"message_type": "summary", **d}


__all__ = ["ImageBackupResult"]
