"""Snapshot providers: a point-in-time device to read, removed on every exit path."""

from e3backup.sources.snapshot.base import (
    CommandResult,
    CommandRunner,
    Snapshot,
    SnapshotProvider,
    SubprocessRunner,
)
from e3backup.sources.snapshot.lvm import LvmSnapshotProvider
from e3backup.sources.snapshot.none import NoSnapshotProvider
from e3backup.sources.snapshot.select import select_provider

__all__ = [
    "CommandResult",
    "CommandRunner",
    "LvmSnapshotProvider",
    "NoSnapshotProvider",
    "Snapshot",
    "SnapshotProvider",
    "SubprocessRunner",
    "select_provider",
]
