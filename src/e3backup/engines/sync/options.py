"""Options of a sync run: what to mirror where, how to compare, what may be deleted.

The agent builds them from the job (sources, excludes, destination, policy) and the CLI from its
flags; the engine never reads a policy dict or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ...errors import UsageError
from ...sources.excludes import Excluder
from ...store.retry import RetryPolicy

#: The guard's default: refuse a run that would delete more than half the destination's files.
DEFAULT_MAX_DELETE_PERCENT = 50
#: Parallel transfers; SeaweedFS and AWS both reward parallel small PUTs, 8 fills 2 cores.
DEFAULT_TRANSFERS = 8


class Compare(StrEnum):
    """How a file that exists on both sides is judged unchanged."""

    MTIME = "mtime"  # same size and modification time (rclone's and rsync's default)
    CHECKSUM = "checksum"  # same size and MD5 of the content: every source file is read


@dataclass(frozen=True)
class S3Target:
    """A bucket and key prefix; the credentials stay in memory (never in a URL or a log)."""

    endpoint: str
    bucket: str
    prefix: str = ""
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None
    ca_bundle: str | None = None
    insecure_tls: bool = False

    def __repr__(self) -> str:
        return f"S3Target({self.url!r})"

    @property
    def url(self) -> str:
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"s3:{self.endpoint}/{self.bucket}{tail}"


@dataclass(frozen=True)
class LocalTarget:
    """A folder on this machine."""

    path: str

    @property
    def url(self) -> str:
        return self.path


@dataclass(frozen=True)
class SyncOptions:
    sources: tuple[str, ...]
    target: S3Target | LocalTarget
    excluder: Excluder = field(default_factory=Excluder)
    compare: Compare = Compare.MTIME
    delete: bool = True  # False: files gone from the source are kept in the destination
    max_delete_percent: int = DEFAULT_MAX_DELETE_PERCENT  # 100 disables the guard
    dry_run: bool = False
    transfers: int = DEFAULT_TRANSFERS
    limit_upload: float | None = None  # KiB/s, shared by all transfers (as --limit-upload)
    state_dir: Path | None = None  # where the S3 listing cache lives; None: no cache
    retry: RetryPolicy | None = None  # S3 retries; None: the store's default (rides out restarts)

    def __post_init__(self) -> None:
        if not self.sources:
            raise UsageError("sync: give at least one source folder")
        if not 0 <= self.max_delete_percent <= 100:
            raise UsageError(f"max_delete must be a percentage 0-100, not {self.max_delete_percent}")
        if self.transfers < 1:
            raise UsageError(f"transfers must be at least 1, not {self.transfers}")
        if self.limit_upload is not None and self.limit_upload <= 0:
            raise UsageError(f"limit_upload must be positive (KiB/s), not {self.limit_upload}")


__all__ = [
    "DEFAULT_MAX_DELETE_PERCENT",
    "DEFAULT_TRANSFERS",
    "Compare",
    "LocalTarget",
    "S3Target",
    "SyncOptions",
]
