"""What every snapshot provider offers, and the command-runner seam for OS tools."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Snapshot:
    """The device to read (``device_path``) and where it came from."""

    device_path: str
    origin: str
    provider: str
    name: str | None = None
    # what the OS says about the snapshot's volume (VSS), in bytes from its start: the clusters
    # in use (cross-checked with our own bitmap reader) and extents not worth imaging (page file)
    used_extents: tuple[tuple[int, int], ...] | None = None
    skip_extents: tuple[tuple[int, int], ...] = ()
    skipped_files: tuple[str, ...] = ()
    consistency: str = ""  # VSS: "application" (writers took part) or "crash"; "" elsewhere
    warnings: tuple[str, ...] = ()  # what makes the run a warning (a failed VSS writer)


class SnapshotProvider(Protocol):
    name: str

    def snapshot(self, source: str) -> AbstractContextManager[Snapshot]:
        """A point-in-time view of ``source``, removed when the context exits (any way)."""
        ...


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str]) -> CommandResult: ...


class SubprocessRunner:
    """Runs real commands; lvm2 complains about inherited descriptors, so that is silenced."""

    def __init__(self, timeout: float = 300.0) -> None:
        self.timeout = timeout

    def run(self, argv: Sequence[str]) -> CommandResult:
        p = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
            env={"LVM_SUPPRESS_FD_WARNINGS": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        )
        return CommandResult(p.returncode, p.stdout, p.stderr)


__all__ = ["CommandResult", "CommandRunner", "Snapshot", "SnapshotProvider", "SubprocessRunner"]
