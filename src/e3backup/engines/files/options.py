"""Options of a files backup; the defaults are what an unattended agent run should use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...budget import MemoryBudget
from ...platform.windows.filemeta import FileMetaApi, native_file_meta
from ...sources.excludes import Excluder
from .shadows import ShareLogin, VolumeShadows
from .targets import PathStyle, native_style

MIN_CHUNK = 512 * 1024
AVG_CHUNK = 1024 * 1024
MAX_CHUNK = 8 * 1024 * 1024


@dataclass
class BackupOptions:
    paths: list[str]
    tags: list[str] = field(default_factory=list)
    host: str | None = None
    excluder: Excluder = field(default_factory=Excluder)
    one_file_system: bool = False
    parent: str | None = None  # a snapshot ID/prefix; None picks the latest of the same host and paths
    force_full: bool = False  # read every file even if a parent says it is unchanged
    # Two readers keep the disk busy without thrashing a spinning disk (restic's default too).
    read_workers: int = 2
    # zstd and AES run here; one per core.
    save_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    upload_connections: int = 4
    with_atime: bool = False
    time_ns: int | None = None
    # how targets map to the tree and to where they are read (Windows: restic's /C/... layout and
    # long paths); tests give the Windows style with a folder standing in for the drive
    path_style: PathStyle = field(default_factory=native_style)
    # Windows: a VSS shadow copy per volume read (engines.files.shadows); None reads live
    shadows: VolumeShadows | None = None
    # Windows: connect the UNC shares among ``paths`` as this user for the run; None: as the agent
    share_login: ShareLogin | None = None
    # --max-memory / policy max_memory_mb: may lower the workers, chunks in flight, the chunking
    # window, and keep packs in temporary files (``sizing``)
    memory: MemoryBudget = field(default_factory=MemoryBudget)
    # Windows: file attributes, creation time and security descriptor of every file and folder
    # (restic's generic_attributes); None elsewhere. Tests give a double.
    windows_meta: FileMetaApi | None = field(default_factory=native_file_meta)


__all__ = ["AVG_CHUNK", "MAX_CHUNK", "MIN_CHUNK", "BackupOptions"]
