"""What a files backup reports at the end (the ``summary`` JSON line)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BackupResult:
    snapshot_id: str = ""
    parent_id: str = ""
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # not about a file: a failed VSS writer, a fallback

    def summary_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["error_count"] = len(self.errors)
        d["errors"] = self.errors[:100]
        d["duration"] = round(self.duration, 3)
        return {"message_type": "summary", **d}


__all__ = ["BackupResult"]
