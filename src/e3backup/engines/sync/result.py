"""What a sync run reports at the end (the agent's ``update_run`` and the CLI's summary line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_LISTED_ERRORS = 100


@dataclass
class SyncResult:
    destination: str = ""
    dry_run: bool = False
    files_new: int = 0
    files_changed: int = 0
    files_transferred: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_kept: int = 0  # gone from the source, kept by policy (delete off)
    deletes_refused: int = 0  # gone from the source, kept by the max_delete guard
    files_skipped: int = 0  # symlinks and special files
    bytes_transferred: int = 0
    source_files: int = 0
    source_bytes: int = 0
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)  # "path: reason", one per file

    @property
    def ok(self) -> bool:
        return not self.errors and not self.deletes_refused

    def summary_json(self) -> dict[str, Any]:
        return {
            "message_type": "summary",
            "destination": self.destination,
            "dry_run": self.dry_run,
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_transferred": self.files_transferred,
            "files_unchanged": self.files_unchanged,
            "files_deleted": self.files_deleted,
            "files_kept": self.files_kept,
            "deletes_refused": self.deletes_refused,
            "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "source_files": self.source_files,
            "source_bytes": self.source_bytes,
            "duration": round(self.duration, 3),
            "error_count": len(self.errors),
            "errors": self.errors[:MAX_LISTED_ERRORS],
        }


__all__ = ["SyncResult"]
