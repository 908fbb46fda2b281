"""What a Hyper-V backup reports: one result per VM (``HyperVVMResult`` on the server) with its disks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DiskResult:
    identifier: str
    vm_path: str
    size: int = 0
    backup_type: str = "full"  # full or incremental
    snapshot_id: str = ""
    changed_bytes: int = 0  # RCT ranges (incremental) or the disk size (full)
    bytes_read: int = 0  # what the image engine read from the frozen disk
    bytes_added: int = 0
    chain_broken: str | None = None  # why a chain was not used (HYPERV_RCT_CHAIN_BROKEN)


@dataclass
class VmResult:
    name: str
    id: str = ""
    server_id: int | None = None
    backup_type: str = "full"  # incremental only when every disk was
    checkpoint_id: str = ""
    consistency: str = ""
    rct_ids: dict[str, str] = field(default_factory=dict)
    config_snapshot_id: str = ""
    disks: list[DiskResult] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0

    @property
    def changed_bytes(self) -> int:
        return sum(d.changed_bytes for d in self.disks)

    @property
    def bytes_read(self) -> int:
        return sum(d.bytes_read for d in self.disks)

    def api_json(self) -> dict[str, Any]:
        """The server's ``HyperVVMResult``."""
        doc: dict[str, Any] = {
            "vm_name": self.name,
            "vm_guid": self.id or None,
            "backup_type": self.backup_type,
            "checkpoint_id": self.checkpoint_id,
            "rct_ids": dict(self.rct_ids),
            "changed_bytes": self.changed_bytes,
            "consistency_level": self.consistency or None,
            "error": self.error,
        }
        if self.server_id is not None:
            doc["vm_id"] = self.server_id
        return doc


@dataclass
class HyperVResult:
    vms: list[VmResult] = field(default_factory=list)
    duration: float = 0.0

    @property
    def failed(self) -> list[VmResult]:
        return [v for v in self.vms if v.error]

    @property
    def bytes_read(self) -> int:
        return sum(v.bytes_read for v in self.vms)

    def summary_json(self) -> dict[str, Any]:
        vms = []
        for v in self.vms:
            d = asdict(v)
            d["changed_bytes"], d["bytes_read"], d["duration"] = v.changed_bytes, v.bytes_read, round(v.duration, 3)
            vms.append(d)
        return {
            "message_type": "summary",
            "vms": vms,
            "vms_failed": len(self.failed),
            "bytes_read": self.bytes_read,
            "changed_bytes": sum(v.changed_bytes for v in self.vms),
            "duration": round(self.duration, 3),
        }


@dataclass
class HyperVRestoreResult:
    vm: str = ""
    checkpoint_id: str = ""
    target: str = ""
    disks: list[dict[str, Any]] = field(default_factory=list)  # {identifier, file, snapshot_id, bytes_written}
    config_files: list[str] = field(default_factory=list)
    registered_vm: dict[str, Any] | None = None
    duration: float = 0.0

    def summary_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration"] = round(self.duration, 3)
        return {"message_type": "summary", **d}


__all__ = ["DiskResult", "HyperVRestoreResult", "HyperVResult", "VmResult"]
