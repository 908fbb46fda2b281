"""Enumerations shared by both sides of the agent <-> server protocol."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator, BeforeValidator, Field

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

Id = Annotated[int, Ge(0), Le(INT32_MAX)]
"""A database ID (and an event ``seq``): INTEGER columns on PostgreSQL, so at most 2^31 - 1.
Bounded at the edge, a too-large ID is a 422 naming the field, not an overflow deep inside."""

Int32 = Annotated[int, Ge(0), Le(INT32_MAX)]
"""A non-negative count stored in an INTEGER column (``eta_seconds``)."""

Int64 = Annotated[int, Ge(0), Le(INT64_MAX)]
"""A non-negative size or count stored in a BIGINT column (bytes, files)."""


def max_encoded(max_bytes: int) -> AfterValidator:
    """A free-form JSON object bounded by its encoded size, so no single field can carry
    megabytes into the database (the request body limit bounds the whole request)."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), default=str))
        if size > max_bytes:
            raise ValueError(f"larger than {max_bytes} bytes encoded ({size})")
        return value

    return AfterValidator(check)


EVENT_DETAILS_KEYS = 64
EVENT_DETAILS_BYTES = 32 * 1024
EventDetails = Annotated[dict[str, Any], Field(max_length=EVENT_DETAILS_KEYS), max_encoded(EVENT_DETAILS_BYTES)]


def fit_event_details(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` if within the bounds of :data:`EventDetails`, else a small stand-in saying what
    was cut (the agent sends events it did not write itself: an engine's long list of files must
    not get its whole batch refused)."""
    size = len(json.dumps(details, separators=(",", ":"), default=str))
    if len(details) <= EVENT_DETAILS_KEYS and size <= EVENT_DETAILS_BYTES:
        return details
    keys = [str(k)[:64] for k in list(details)[:32]]
    return {"truncated": True, "encoded_bytes": size, "keys": keys}
CommandPayload = Annotated[dict[str, Any], Field(max_length=32), max_encoded(256 * 1024)]
CommandResult = Annotated[dict[str, Any], Field(max_length=64), max_encoded(4 * 1024 * 1024)]


ShortText = Annotated[str, Field(max_length=1024)]


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
    LIST_FOLDER = "list_folder"


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
    "EVENT_DETAILS_BYTES",
    "EVENT_DETAILS_KEYS",
    "FINAL_RUN_STATUSES",
    "INT32_MAX",
    "INT64_MAX",
    "BackupType",
    "CommandPayload",
    "CommandResult",
    "CommandStatus",
    "CommandType",
    "ConsistencyLevel",
    "DiskImageFormat",
    "Engine",
    "EngineField",
    "EventDetails",
    "EventLevel",
    "Id",
    "Int32",
    "Int64",
    "RunKind",
    "RunStatus",
    "ShortText",
    "fit_event_details",
    "max_encoded",
]
