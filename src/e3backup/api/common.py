"""Enumerations shared by both sides of the agent <-> server protocol."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator


class Engine(StrEnum):
    """Backup engines. ``kopia`` (the seeds' name for file backups) is accepted as ``files``."""

    FILES = "files"
    DISK_IMAGE = "disk_image"
    HYPERV = "hyperv"
    SYNC = "sync"


ENGINE_ALIASES = {"kopia": Engine.FILES}


def _engine_alias(value: Any) -> Any:
    if isinstance(value, str):
        return ENGINE_ALIASES.get(value.strip().lower(), value.strip().lower())
    return value


EngineField = Annotated[Engine, BeforeValidator(_engine_alias)]
"""An :class:`Engine` that also accepts the seeds' alias ``kopia``."""


class RunKind(StrEnum):
    BACKUP = "backup"
    RESTORE = "restore"
    MAINTENANCE = "maintenance"


class RunStatus(StrEnum):
    """Life of a run: queued -> running -> one of the final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    WARNING = "warning"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_RUN_STATUSES


FINAL_RUN_STATUSES = frozenset({RunStatus.SUCCESS, RunStatus.WARNING, RunStatus.FAILED, RunStatus.CANCELLED})


class BackupType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class DiskImageFormat(StrEnum):
    VHDX = "vhdx"
    RAW = "raw"


class ConsistencyLevel(StrEnum):
    """Hyper-V checkpoint consistency, as the seeds name it."""

    APPLICATION = "application"
    CRASH = "crash"


class CommandType(StrEnum):
    """Work the server queues for an agent besides scheduled runs."""

    RESTORE = "restore"
    MAINTENANCE = "maintenance"
    CANCEL = "cancel"
    LIST_DISKS = "list_disks"
    HYPERV_RESTORE = "hyperv_restore"


class CommandStatus(StrEnum):
    """pending -> acknowledged (agent took it) -> completed | failed."""

    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    COMPLETED = "completed"
    FAILED = "failed"


class EventLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


__all__ = [
    "ENGINE_ALIASES",
    "FINAL_RUN_STATUSES",
    "BackupType",
    "CommandStatus",
    "CommandType",
    "ConsistencyLevel",
    "DiskImageFormat",
    "Engine",
    "EngineField",
    "EventLevel",
    "RunKind",
    "RunStatus",
]
