"""The ``files`` engine (the original system's ``kopia``): directory trees into snapshots."""

from ...sources.excludes import Excluder
from .archiver import Archiver, run_backup
from .options import BackupOptions
from .result import BackupResult

__all__ = ["Archiver", "BackupOptions", "BackupResult", "Excluder", "run_backup"]
